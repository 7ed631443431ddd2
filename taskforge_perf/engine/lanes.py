"""The engine side of user groups: one lane per group in the HTTP driver, and its region.

``GroupSetup`` is made once per run. After the users logged in, ``start`` gives the driver one
``GroupLane`` per group (its mix, a picker over its logged-in users, its think time) and opens the
network region of each group that has one; ``close`` tears the regions down.
"""

from __future__ import annotations

import random
import ssl
from collections.abc import Sequence
from typing import Any

from taskforge_perf.config import Target
from taskforge_perf.engine.fastclient import FastClient
from taskforge_perf.engine.http import GroupLane, HttpDriver
from taskforge_perf.errors import ConfigError, TargetError
from taskforge_perf.groups import GroupPicker, ThinkTime, UserGroup
from taskforge_perf.users import Strategy, User


class GroupSetup:
    """Lanes and regions of one run's groups (nothing to do without groups)."""

    def __init__(
        self,
        groups: Sequence[UserGroup],
        target: Target,
        http_client: str,
        ssl_context: ssl.SSLContext | bool | None,
    ) -> None:
        self.groups = tuple(groups)
        self.target = target
        self.ssl_context = ssl_context
        if any(g.region is not None for g in self.groups) and http_client != "fast":
            raise ConfigError("a UserGroup with a region needs http_client='fast' (the default)")
        self._regions: list[Any] = []  # open region handles
        self._modes: dict[str, str] = {}  # group -> how its region was built
        self._clients: list[FastClient] = []

    async def start(
        self, driver: HttpDriver, logged_in: Sequence[User], assignment: Strategy, rng: random.Random
    ) -> None:
        """Give the driver its lanes; open the groups' regions."""
        if not self.groups:
            return
        lanes = []
        for g in self.groups:
            users = [u for u in logged_in if u.group == g.name]
            if not users:
                raise TargetError(
                    f"no user of group {g.name!r} could sign up or log in at "
                    f"{self.target.display_base_url}; check its UserPool"
                )
            tt = g.think_time
            think = tt.sample if isinstance(tt, ThinkTime) else None
            assert g.mix is not None
            lanes.append(GroupLane(g.name, g.mix, assignment(users, random.Random(rng.random())), think))
            if g.region is not None:
                handle = await g.region.open(self.target.base_url)
                self._regions.append(handle)
                self._modes[g.name] = handle.mode
                client = FastClient(
                    handle.base_url,
                    timeout=self.target.request_timeout,
                    connect_timeout=self.target.connect_timeout,
                    ssl_context=self.ssl_context,
                )
                self._clients.append(client)
                for u in users:
                    u.via = client
        driver.picker = GroupPicker([g.weight for g in self.groups])
        driver.lanes = tuple(lanes)

    async def close(self) -> None:
        """Close the regions' clients and tear the regions down (never raises)."""
        for c in self._clients:
            c.close()
        self._clients.clear()
        for handle in self._regions:
            try:
                await handle.close()
            except Exception:  # noqa: BLE001 - teardown never hides the run's result
                pass
        self._regions.clear()

    def meta(self, sessions: Any) -> dict[str, Any]:
        """Run metadata: the groups and the sessions' summary."""
        out: dict[str, Any] = {}
        if self.groups:
            out["groups"] = [{**g.to_dict(), "region_mode": self._modes.get(g.name)} for g in self.groups]
        if sessions is not None:
            out["sessions"] = sessions.summary()
        return out
