"""Baseline and candidate run in turns (A B A B ...), then compared with runs as replicates.

Interleaving spreads slow drifts of the machine (other jobs, thermal state, caches) over both
sides instead of loading one side with them (Kalibera & Jones 2013). Each side is a factory that
returns a fresh ``LoadTester`` per run, so each run sets up its own users and connections.

Example (in a notebook cell, or inside ``asyncio.run`` in a script)::

    async with tfp.ReferenceTarget() as a, tfp.ReferenceTarget(profile="candidate") as b:
        mk = lambda t: (lambda: tfp.LoadTester(t, tfp.UserPool(5), tfp.RequestMix.taskforge()))
        cmp = await tfp.compare_interleaved(mk(a), mk(b), tfp.StressPlan.preset("dev"), runs=3)
    print(cmp.verdict)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from taskforge_perf.compare import Comparison, compare

if TYPE_CHECKING:
    from taskforge_perf.engine.tester import LoadTester
    from taskforge_perf.plan import StressPlan
    from taskforge_perf.results import Run

__all__ = ["compare_interleaved", "run_interleaved"]

TesterFactory = Callable[[], "LoadTester"]


async def run_interleaved(
    baseline: TesterFactory,
    candidate: TesterFactory,
    plan: StressPlan,
    *,
    runs: int = 3,
    names: tuple[str, str] = ("baseline", "candidate"),
) -> tuple[list[Run], list[Run]]:
    """``runs`` runs of each side in the order A B A B ...; returns (baseline runs, candidate runs).

    Each run is named ``{name}-{i}`` and its meta records ``interleave`` = {side, index, order}.
    """
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ValueError(f"runs must be an integer >= 1 (got {runs!r}); 3-5 per side is recommended")
    out: tuple[list[Run], list[Run]] = ([], [])
    order = 0
    for i in range(1, runs + 1):
        for side, factory in enumerate((baseline, candidate)):
            tester = factory()
            run = await tester.run(plan, name=f"{names[side]}-{i}")
            run.meta["interleave"] = {"side": names[side], "index": i, "order": order}
            out[side].append(run)
            order += 1
    return out


async def compare_interleaved(
    baseline: TesterFactory,
    candidate: TesterFactory,
    plan: StressPlan,
    *,
    runs: int = 3,
    **compare_kw: Any,
) -> Comparison:
    """``run_interleaved`` then ``compare`` of the runs as replicates (keywords go to ``compare``)."""
    base, cand = await run_interleaved(baseline, candidate, plan, runs=runs)
    return compare(base, cand, **compare_kw)
