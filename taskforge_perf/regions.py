"""Regions: a user group's traffic behind simulated network conditions.

``Region(rtt=0.05, jitter=0.005, loss=0.0, bandwidth=None)`` is configuration. When a run starts,
each region becomes a path the group's load traffic takes to the target (auth and set-up go
direct). Two ways to build it (``mode``):

- ``"netem"`` (Linux, root, a kernel with ``sch_netem``): a network namespace ``tfp-<id>`` and a
  veth pair (``10.213.x.1/30`` in the tester's namespace, ``10.213.x.2/30`` in the new one) with
  ``tc qdisc ... netem`` on both ends (half the RTT and jitter each way, the loss on the way in, the
  bandwidth both ways). A listening socket is created *inside* the namespace (a short-lived thread
  enters it with ``setns``) and relays each connection to the target on 127.0.0.1: every packet
  of the group crosses the veth pair and its netem queues, as a far-away user's would.
- ``"relay"`` (anywhere): a TCP relay on 127.0.0.1 that holds each chunk of bytes for half the
  RTT (plus jitter) in each direction and paces them to the bandwidth. Packet loss cannot be
  emulated above TCP, so a relay region refuses ``loss``.

``"auto"`` (the default) uses netem where a real attempt to build it works, else the relay; the
run's ``meta["groups"][i]["region_mode"]`` says which. Relays run as their own process
(``region_relay``) with the listening socket handed over, so neither the tester's loop nor its GIL
delays them. Everything stays on 127.0.0.1 and on addresses of namespaces the tester created
itself, and is torn down at the end of the run.
"""

from __future__ import annotations

import asyncio
import ctypes
import math
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from taskforge_perf.errors import ConfigError, RunError

CLONE_NEWNET = 0x40000000


@dataclass(frozen=True, kw_only=True)
class Region:
    """Simulated network conditions for a ``UserGroup`` (see the module docstring).

    >>> Region(name="eu", rtt=0.08, jitter=0.004)
    Region(name='eu', rtt=80ms, jitter=4ms)

    ``rtt`` and ``jitter`` in seconds (added round-trip time; jitter is the spread of the delay),
    ``loss`` a fraction of packets dropped on the way to the target (0..1; TCP retransmits them,
    so it shows as latency spikes), ``bandwidth`` in Mbit/s each way (None: unlimited).
    """

    name: str = "region"
    rtt: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    bandwidth: float | None = None
    mode: str = "auto"

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "netem", "relay"):
            raise ConfigError(f"Region.mode must be 'auto', 'netem' or 'relay' (got {self.mode!r})")
        if self.mode == "relay" and self.loss:
            raise ConfigError(
                "Region.loss needs mode='netem' (a relay above TCP cannot drop packets); set loss=0"
            )
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"Region.name must be a non-empty name such as 'eu' (got {self.name!r})")
        for fld in ("rtt", "jitter"):
            v = getattr(self, fld)
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < 60:
                raise ConfigError(
                    f"Region.{fld} must be seconds, 0 <= {fld} < 60 (got {v!r}); e.g. 0.05 for 50 ms"
                )
        loss = self.loss
        if isinstance(loss, bool) or not isinstance(loss, int | float) or not 0 <= loss < 1:
            raise ConfigError(
                f"Region.loss must be a fraction 0 <= loss < 1 (got {loss!r}); e.g. 0.01 for 1%"
            )
        bw = self.bandwidth
        if bw is not None and (
            isinstance(bw, bool) or not isinstance(bw, int | float) or not 0 < bw < math.inf
        ):
            raise ConfigError(f"Region.bandwidth must be Mbit/s > 0, or None for unlimited (got {bw!r})")

    def __repr__(self) -> str:
        parts = [f"name={self.name!r}", f"rtt={self.rtt * 1e3:g}ms"]
        if self.jitter:
            parts.append(f"jitter={self.jitter * 1e3:g}ms")
        if self.loss:
            parts.append(f"loss={self.loss:.2%}")
        if self.bandwidth is not None:
            parts.append(f"bandwidth={self.bandwidth:g}Mbit")
        if self.mode != "auto":
            parts.append(f"mode={self.mode!r}")
        return f"Region({', '.join(parts)})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description for run metadata."""
        return {
            "name": self.name,
            "rtt": self.rtt,
            "jitter": self.jitter,
            "loss": self.loss,
            "bandwidth": self.bandwidth,
            "mode": self.mode,
        }

    def _netem(self, *, inbound: bool) -> list[str]:
        """netem arguments of one direction (half the RTT and jitter; loss on the way in)."""
        args = ["delay", f"{self.rtt * 1e6 / 2:.0f}us"]
        if self.jitter:
            args.append(f"{self.jitter * 1e6 / 2:.0f}us")
        if inbound and self.loss:
            args += ["loss", f"{self.loss * 100:g}%"]
        if self.bandwidth is not None:
            args += ["rate", f"{self.bandwidth * 1000:g}kbit"]
        return args

    async def open(self, base_url: str) -> RegionPath:
        """Build the namespace, veth pair, netem queues and relay to ``base_url``'s host and port."""
        path = RegionPath(self, base_url)
        await path.start()
        return path

    @staticmethod
    def netem_available() -> str | None:
        """None when netem regions can be built here (checked with a real attempt: a namespace
        with a netem queue is created and removed), else why not."""
        if not sys.platform.startswith("linux"):
            return f"regions need Linux network namespaces (this is {sys.platform})"
        if os.geteuid() != 0:
            return "regions need root (CAP_NET_ADMIN) to create network namespaces and netem queues"
        for tool in ("ip", "tc"):
            if shutil.which(tool) is None:
                return f"regions need the '{tool}' tool (iproute2)"
        name = f"tfp-probe-{secrets.token_hex(3)}"
        probe = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, check=False)
        if probe.returncode != 0:
            return f"cannot create a network namespace: {probe.stderr.strip()}"
        try:
            q = subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    name,
                    "tc",
                    "qdisc",
                    "add",
                    "dev",
                    "lo",
                    "root",
                    "netem",
                    "delay",
                    "1ms",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if q.returncode != 0:
                return f"cannot add a netem queue (is sch_netem in this kernel?): {q.stderr.strip()}"
        finally:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        return None


class RegionPath:
    """One live region: its relay (and, in netem mode, namespace and veth pair); ``base_url``."""

    def __init__(self, region: Region, target_url: str) -> None:
        self.region = region
        parts = urlsplit(target_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ConfigError(f"a Region relays plain http:// targets (got {target_url!r})")
        self._upstream = (parts.hostname, parts.port or 80)
        tag = secrets.token_hex(3)
        self.netns = f"tfp-{tag}"
        self._veth = (f"tf{tag}a", f"tf{tag}b")
        third = int(tag, 16) % 16384 * 4  # a /30 inside 10.213.0.0/16
        self._near = f"10.213.{third // 256}.{third % 256 + 1}"
        self._far = f"10.213.{third // 256}.{third % 256 + 2}"
        self.base_url = ""
        #: "netem" or "relay": how this region was built.
        self.mode = ""
        self._relay: _Relay | None = None
        self._built = False

    async def _ip(self, *args: str, ns: bool = False) -> None:
        cmd = (["ip", "netns", "exec", self.netns] if ns else []) + list(args)
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise RunError(f"region {self.region.name!r}: `{' '.join(cmd)}` failed: {err.decode().strip()}")

    async def start(self) -> None:
        """Build the path (netem where possible and asked for, else the relay)."""
        r = self.region
        why = await asyncio.to_thread(Region.netem_available) if r.mode != "relay" else "relay asked for"
        if why is not None and r.mode == "netem":
            raise RunError(f"region {r.name!r}: {why}; use Region(mode='relay') to emulate it in-process")
        if why is not None and r.loss:
            raise RunError(
                f"region {r.name!r}: loss needs netem, and {why}; set loss=0 or run as root on Linux"
            )
        try:
            if why is None:
                self.mode = "netem"
                sock = await self._build_netem()
                self._relay = _Relay(self._upstream, sock, 0.0, 0.0, None)
            else:
                self.mode = "relay"
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", 0))
                sock.listen(1024)
                sock.setblocking(False)
                bw = r.bandwidth * 125_000 if r.bandwidth is not None else None  # Mbit/s -> bytes/s
                self._relay = _Relay(self._upstream, sock, r.rtt / 2, r.jitter / 2, bw)
            host, port = sock.getsockname()[:2]
            await asyncio.to_thread(self._relay.start)
        except BaseException:
            await self.close()
            raise
        self.base_url = f"http://{host}:{port}"

    async def _build_netem(self) -> socket.socket:
        near, far = self._veth
        self._built = True
        await self._ip("ip", "netns", "add", self.netns)
        await self._ip("ip", "link", "add", near, "type", "veth", "peer", "name", far)
        await self._ip("ip", "link", "set", far, "netns", self.netns)
        await self._ip("ip", "addr", "add", f"{self._near}/30", "dev", near)
        await self._ip("ip", "link", "set", near, "up")
        await self._ip("ip", "addr", "add", f"{self._far}/30", "dev", far, ns=True)
        await self._ip("ip", "link", "set", far, "up", ns=True)
        await self._ip("ip", "link", "set", "lo", "up", ns=True)
        await self._ip("tc", "qdisc", "add", "dev", near, "root", "netem", *self.region._netem(inbound=True))
        await self._ip(
            "tc", "qdisc", "add", "dev", far, "root", "netem", *self.region._netem(inbound=False), ns=True
        )
        return await asyncio.to_thread(_listen_in_netns, self.netns, self._far)

    async def close(self) -> None:
        """Stop the relay and delete the namespace (its veth pair goes with it)."""
        if self._relay is not None:
            await asyncio.to_thread(self._relay.stop)
            self._relay = None
        if self._built:
            self._built = False
            for cmd in (["ip", "netns", "del", self.netns], ["ip", "link", "del", self._veth[0]]):
                proc = await asyncio.create_subprocess_exec(
                    *cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
                )
                await proc.wait()


class _Relay:
    """The relay process (``python -m taskforge_perf.region_relay``) serving one listening socket:
    its own interpreter, so neither the tester's loop nor its GIL delays a delivery."""

    def __init__(
        self,
        upstream: tuple[str, int],
        sock: socket.socket,
        delay: float,
        jitter: float,
        bw: float | None,
    ) -> None:
        self.args = [
            sys.executable,
            "-m",
            "taskforge_perf.region_relay",
            "--fd",
            str(sock.fileno()),
            "--upstream",
            f"{upstream[0]}:{upstream[1]}",
            "--delay",
            repr(delay),
            "--jitter",
            repr(jitter),
        ] + (["--bandwidth", repr(bw)] if bw is not None else [])
        self.sock = sock
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.args, pass_fds=(self.sock.fileno(),), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "ready" once it serves
        if line.strip() != b"ready":
            self.stop()
            raise RunError(f"the region relay did not start (exit code {self.proc.poll()})")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.sock.close()


def _listen_in_netns(netns: str, host: str) -> socket.socket:
    """A listening TCP socket created inside ``netns`` (a socket keeps the namespace it was
    made in). A fresh thread enters the namespace, so the tester's own threads never change."""
    out: list[socket.socket | BaseException] = []

    def work() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"/var/run/netns/{netns}") as f:
                if libc.setns(f.fileno(), CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({netns}): {os.strerror(err)}")
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, 0))
            s.listen(1024)
            s.setblocking(False)
            out.append(s)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            out.append(exc)

    t = threading.Thread(target=work, name=f"netns-{netns}")
    t.start()
    t.join()
    got = out[0]
    if isinstance(got, BaseException):
        raise RunError(f"cannot listen inside network namespace {netns}: {got}")
    return got
