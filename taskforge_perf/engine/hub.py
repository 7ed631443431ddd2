"""The messages between a sharded run's parent and its shards: one TCP connection per shard.

The parent listens (``Hub``) on an address the workers can reach (127.0.0.1 for local processes and
a local Dask cluster), with a random key: each shard connects back (``SocketChannel``), says hello
with its index, then sends "ready", Snapshots and "done"/"failed", and hears "start"/"stop". Messages
are small tuples (pickled by ``multiprocessing.connection``); rows never travel this way.
"""

from __future__ import annotations

import os
import socket
import threading
from multiprocessing.connection import Client, Connection, Listener, wait
from typing import Any


class SocketChannel:
    """A shard's end (picklable: it connects on first use, in the worker)."""

    def __init__(self, address: tuple[str, int], key: bytes, index: int) -> None:
        self.address, self.key, self.index = address, key, index
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"address": self.address, "key": self.key, "index": self.index}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["address"], state["key"], state["index"])  # type: ignore[misc]

    def _connected(self) -> Connection:
        with self._lock:
            if self._conn is None:
                self._conn = Client(self.address, authkey=self.key)
                self._conn.send(("hello", self.index))
            return self._conn

    def send(self, msg: tuple[Any, ...]) -> None:
        conn = self._connected()
        with self._lock:
            conn.send(msg)

    def recv(self, timeout: float) -> tuple[Any, ...] | None:
        conn = self._connected()
        if not conn.poll(timeout):
            return None
        msg: tuple[Any, ...] = conn.recv()
        return msg


def reachable_host(peer: str | None) -> str:
    """This machine's address as seen from ``peer`` (a host name or IP); 127.0.0.1 for loopback."""
    if not peer or peer in ("localhost", "127.0.0.1", "::1") or peer.startswith("127."):
        return "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((peer, 9))  # no packet is sent: this only picks the route's source address
        return str(s.getsockname()[0])


class Hub:
    """The parent's end: accepts the shards' connections, reads and sends their messages."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.key = os.urandom(16)
        self._listener = Listener((host, 0), authkey=self.key)
        self.address: tuple[str, int] = self._listener.address  # type: ignore[assignment]
        self.conns: dict[int, Connection] = {}
        self._pending: dict[int, list[tuple[Any, ...]]] = {}
        self._inbox: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name="taskforge-perf-hub", daemon=True).start()

    def channel(self, index: int) -> SocketChannel:
        return SocketChannel(self.address, self.key, index)

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn = self._listener.accept()
                hello = conn.recv()
            except Exception:  # noqa: BLE001 - a bad key (AuthenticationError), a broken hello
                if self._closed:
                    return
                continue
            if not (isinstance(hello, tuple) and hello and hello[0] == "hello"):
                conn.close()
                continue
            k = int(hello[1])
            with self._lock:
                self.conns[k] = conn
                for msg in self._pending.pop(k, []):
                    self._send(conn, msg)

    @staticmethod
    def _send(conn: Connection, msg: tuple[Any, ...]) -> None:
        try:
            conn.send(msg)
        except (OSError, EOFError, ValueError):
            pass  # the shard is gone; its end is noticed by the runner

    def send(self, k: int, msg: tuple[Any, ...]) -> None:
        with self._lock:
            conn = self.conns.get(k)
            if conn is None:  # not connected yet: delivered at its hello
                self._pending.setdefault(k, []).append(msg)
                return
        self._send(conn, msg)

    def recv_all(self, timeout: float) -> list[tuple[Any, ...]]:
        """Every message available within ``timeout`` seconds (possibly none)."""
        with self._lock:
            conns = dict(self.conns)
        if not conns:
            threading.Event().wait(timeout)
            return []
        out: list[tuple[Any, ...]] = []
        for conn in wait(list(conns.values()), timeout):
            assert isinstance(conn, Connection)
            try:
                while conn.poll(0):
                    out.append(conn.recv())
            except (OSError, EOFError):
                with self._lock:
                    for k, c in list(self.conns.items()):
                        if c is conn:
                            del self.conns[k]
                conn.close()
        return out

    def close(self) -> None:
        self._closed = True
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            for conn in self.conns.values():
                conn.close()
            self.conns.clear()
