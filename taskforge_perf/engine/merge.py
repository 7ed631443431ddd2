"""Merging shards: their live Snapshots into one (for the dashboard and the progress line) and
their metas into the meta of one run (counters summed, the generator per worker and overall)."""

from __future__ import annotations

from typing import Any

from taskforge_perf.engine.monitor import Snapshot
from taskforge_perf.error_samples import merge_samples

#: Meta keys whose numbers add up across shards (counts); other keys come from shard 0 or the parent.
SUMMED = ("counters", "phases", "auth", "client_errors", "retry_after", "pauses", "ws")
#: Figures that are not counts: the largest (or smallest) shard's, not the sum.
MAXED = {"max_backoff_s", "conns_per_user_max", "waited_s", "asked_s"}
MINNED = {"conns_per_user_min"}
#: Settings repeated in every shard's meta: kept as they are.
KEPT = {"options", "honored", "limits"}


def aggregate(snaps: dict[int, Snapshot]) -> Snapshot:
    """One Snapshot of the whole run from each shard's latest: counts and rates add up; latency
    percentiles (approximate anyway) are the worst shard's; lag the worst; CPU the sum."""
    items = [snaps[k] for k in sorted(snaps)]
    first = items[0]
    errors: dict[str, int] = {}
    for s in items:
        for k, v in s.errors.items():
            errors[k] = errors.get(k, 0) + v

    def worst(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return max(known) if known else None

    endpoints: dict[str, tuple[int, int, float | None]] = {}
    for s in items:
        for name, (n, errs, p95) in s.endpoints.items():
            m, e, q = endpoints.get(name, (0, 0, None))
            endpoints[name] = (m + n, e + errs, worst([q, p95]))
    cpus = [s.cpu for s in items if s.cpu is not None]
    saturated = [f"worker {k}: {snaps[k].saturated}" for k in sorted(snaps) if snaps[k].saturated]
    return Snapshot(
        elapsed_s=max(s.elapsed_s for s in items),
        planned_s=first.planned_s,
        phase=first.phase,
        phase_remaining_s=first.phase_remaining_s,
        rps=sum(s.rps for s in items),
        requests=sum(s.requests for s in items),
        in_flight=sum(s.in_flight for s in items),
        errors=errors,
        approx_p50_ms=worst([s.approx_p50_ms for s in items]),
        approx_p95_ms=worst([s.approx_p95_ms for s in items]),
        approx_p99_ms=worst([s.approx_p99_ms for s in items]),
        tasks_created=sum(s.tasks_created for s in items),
        ws_open=sum(s.ws_open for s in items),
        ws_completed=sum(s.ws_completed for s in items),
        late=sum(s.late for s in items),
        extra={"workers": len(items)},
        draining=sum(s.draining for s in items),
        lag_p99_ms=worst([s.lag_p99_ms for s in items]),
        cpu=sum(cpus) if cpus else None,
        saturated="; ".join(saturated) or None,
        approx_resp_p95_ms=worst([s.approx_resp_p95_ms for s in items]),
        endpoints=dict(sorted(endpoints.items())),
    )


def add_up(a: Any, b: Any) -> Any:
    """Sum two JSON-like values: numbers add, dicts merge key by key, lists concatenate; anything
    else keeps the first (booleans: either)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) or bool(b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a + b
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            if k not in out or out[k] is None:
                out[k] = v
            elif k in KEPT or v is None:
                continue
            elif k in MAXED and isinstance(v, int | float):
                out[k] = max(out[k], v)
            elif k in MINNED and isinstance(v, int | float):
                out[k] = min(out[k], v)
            else:
                out[k] = add_up(out[k], v)
        return out
    if isinstance(a, list) and isinstance(b, list):
        return a + b
    return a if a is not None else b


def merge_generator(gens: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """``meta["generator"]`` of the whole run: the worst shard's figures, saturated when any shard
    was (reasons name the worker), and each shard's own summary under ``workers``."""
    items = [gens[k] for k in sorted(gens)]
    if not items:
        return {"saturated": False, "causes": [], "reasons": [], "workers": {}}

    def worst(key: str) -> Any:
        known: list[float] = [g[key] for g in items if g.get(key) is not None]
        return max(known) if known else None

    means = [g["cpu_mean"] for g in items if g.get("cpu_mean") is not None]
    return {
        "lag_p99_ms": worst("lag_p99_ms"),
        "lag_max_ms": worst("lag_max_ms"),
        "own_lag_p99_ms": worst("own_lag_p99_ms"),
        "cpu_wait_max": worst("cpu_wait_max"),
        "cpu_max": worst("cpu_max"),
        "cpu_mean": sum(means) / len(means) if means else None,
        "lateness_p99_ms": worst("lateness_p99_ms"),
        "starts": sum(g.get("starts") or 0 for g in items),
        "ticks": sum(g.get("ticks") or 0 for g in items),
        "saturated": any(g.get("saturated") for g in items),
        "causes": sorted({c for g in items for c in g.get("causes", [])}),
        "reasons": [f"worker {k}: {r}" for k in sorted(gens) for r in gens[k].get("reasons", [])],
        "limits": items[0].get("limits"),
        "workers": {str(k): gens[k] for k in sorted(gens)},
    }


def merge_metas(
    base: dict[str, Any],
    metas: dict[int, dict[str, Any]],
    *,
    workers: int,
    load_start_ns: int,
    shards: list[dict[str, Any]],
    stopped: str | None,
) -> dict[str, Any]:
    """The meta of one run from its shards' (``base``: the parent's starting meta)."""
    done = [metas[k] for k in sorted(metas)]
    meta: dict[str, Any] = dict(done[0]) if done else {}
    meta.update({k: base[k] for k in ("run_id", "name", "wall_start_ns", "users") if k in base})
    for key in SUMMED:
        values = [m.get(key) for m in done if m.get(key) is not None]
        if values:
            total = values[0]
            for v in values[1:]:
                total = add_up(total, v)
            meta[key] = total
    if done:
        meta["error_samples"] = merge_samples(m.get("error_samples") for m in done)
        meta["load_end_ns"] = max(m["load_end_ns"] for m in done)
        meta["wall_end_ns"] = max(m["wall_end_ns"] for m in done)
        meta["setup_s"] = max(m["setup_s"] for m in done)
        meta["target_metrics"] = next((m["target_metrics"] for m in done if "target_metrics" in m), None)
        if meta["target_metrics"] is None:
            meta.pop("target_metrics")
        meta["warnings"] = [f"worker {k}: {w}" for k in sorted(metas) for w in metas[k].get("warnings", [])]
        users = dict(meta.get("users") or {})
        users["ready"] = sum((m.get("users") or {}).get("ready", 0) for m in done)
        meta["users"] = users
    meta["load_start_ns"] = load_start_ns
    meta["duration_s"] = (meta.get("load_end_ns", load_start_ns) - load_start_ns) / 1e9
    meta["workers"] = workers
    meta["generator"] = merge_generator({k: m["generator"] for k, m in metas.items() if "generator" in m})
    meta["shards"] = shards
    failed = [s for s in shards if s["status"] == "failed"]
    if failed:
        meta.setdefault("warnings", []).extend(
            f"worker {s['worker']} failed: {s['error']} (its rows so far are kept)" for s in failed
        )
    if stopped is not None:
        meta["stopped"] = stopped
    else:
        aborted = [m["stopped"] for m in done if str(m.get("stopped", "")).startswith("aborted")]
        meta["stopped"] = aborted[0] if aborted else (done[0]["stopped"] if done else "failed")
    return meta
