"""Requests that cannot be built become ``client`` rows; the virtual user goes on (issue 12.3)."""

from __future__ import annotations

import random
from typing import Any

import polars as pl
import pytest

import taskforge_perf as tfp
from taskforge_perf.mix import Endpoint
from tests.engine.fault_server import FaultServer

CLIENTS = ("fast", "aiohttp")


def _raising(user: str, token: str | None, rng: random.Random) -> dict[str, Any]:
    raise ValueError("builder is broken")


def _unserialisable(user: str, token: str | None, rng: random.Random) -> dict[str, Any]:
    return {"when": object()}


def _bad_header() -> Endpoint:
    headers: dict[str, Any] = {}
    ep = Endpoint("GET /ok bad-header", "GET", "/ok", auth=False, headers=headers)
    headers["X-Count"] = 5  # not a str: set after construction, as a mutated mapping would be
    return ep


def _broken(kind: str) -> Endpoint:
    if kind == "raises":
        return Endpoint("POST /ok broken", "POST", "/ok", auth=False, build=_raising)
    if kind == "unserialisable":
        return Endpoint("POST /ok broken", "POST", "/ok", auth=False, build=_unserialisable)
    return _bad_header()


EXPECTED = {
    "raises": "ValueError: builder is broken",
    "unserialisable": "TypeError: Object of type object is not JSON serializable",
    "header": "TypeError",
}


def _mix(kind: str) -> tfp.RequestMix:
    return tfp.RequestMix([_broken(kind), Endpoint("GET /ok", "GET", "/ok", auth=False)])


def _check_meta(run: tfp.Run, kind: str) -> str:
    broken = _broken(kind).name
    msg = run.meta["client_errors"][broken]
    assert msg.startswith(EXPECTED[kind]), msg
    assert any(broken in w and "could not be built" in w for w in run.meta["warnings"]), run.meta
    return broken


@pytest.mark.parametrize("kind", ["raises", "unserialisable", "header"])
@pytest.mark.parametrize("client", CLIENTS)
async def test_closed_model_records_client_rows_and_goes_on(client: str, kind: str) -> None:
    async with FaultServer() as server:
        tester = tfp.LoadTester(server.url, tfp.UserPool(count=1), _mix(kind), seed=1, http_client=client)
        run = await tester.run(duration=1.0, concurrency=1)
    assert run.meta["stopped"] == "completed"
    broken = _check_meta(run, kind)
    load = run.load_events()
    bad = load.filter(pl.col("endpoint") == broken)
    good = load.filter(pl.col("endpoint") == "GET /ok")
    assert bad.height >= 2 and (bad["error"] == "client").all() and (bad["status"] == 0).all()
    # The one virtual user went on after its broken requests: good rows follow the first bad one.
    assert good.filter(pl.col("t_start") > bad["t_start"].min()).height > 2
    assert good["error"].null_count() == good.height
    assert server.hits["/ok"] == good.height  # a client row never reached the server


@pytest.mark.parametrize("client", CLIENTS)
async def test_open_model_keeps_a_row_per_planned_request(client: str) -> None:
    async with FaultServer() as server:
        mix = tfp.RequestMix([_broken("raises")])
        tester = tfp.LoadTester(server.url, tfp.UserPool(count=1), mix, seed=2, http_client=client)
        run = await tester.run(duration=1.0, rate=100)
    planned = sum(p["planned"] for p in run.meta["phases"].values())
    load = run.load_events()
    assert planned == 100 and load.height == planned
    # Every request started is a client row. An arrival the tester reaches only after the plan's
    # end (a loaded machine) is recorded "dropped" instead, by design: only those, at the end.
    late = load.filter(pl.col("error") != "client")
    assert (late["error"] == "dropped").all() and late.height < planned / 2, late
    assert late.is_empty() or late["t_start"].min() > load["t_intended"].max(), late
    assert run.meta["stopped"] == "completed"
    _check_meta(run, "raises")
    assert server.hits["/ok"] == 0


async def test_client_error_message_never_keeps_a_secret() -> None:
    seen: list[str] = []

    def leaky(user: str, token: str | None, rng: random.Random) -> dict[str, Any]:
        assert token is not None
        seen.append(token)
        raise RuntimeError(f"cannot use token {token} with password pw-secret-42")

    mix = tfp.RequestMix([Endpoint("POST /ok leaky", "POST", "/ok", build=leaky)])
    async with FaultServer() as server:
        pool = tfp.UserPool(count=1, password="pw-secret-42")
        run = await tfp.LoadTester(server.url, pool, mix, seed=3).run(duration=0.3, concurrency=1)
    msg = run.meta["client_errors"]["POST /ok leaky"]
    assert seen and msg == "RuntimeError: cannot use token *** with password ***"
    assert all(tok not in str(run.meta) for tok in seen)
