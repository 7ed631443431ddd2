"""Deciding whether a subscription was lost, from what every socket of its user received.

A subscription that got nothing for ``resubscribe_after`` is resubscribed. The gateway answers a
subscribe at once with its cached status, if it has one, on the resubscribing socket only; a live
update instead goes to every socket of every subscribed user (DESIGN.md section 4). So the first
message on the resubscribing socket (the *answer*) reveals a lost subscription only when it is
the cached status: nobody else of that user gets a copy, and the resubscribing socket gets it
once. If any other socket of the user receives the same update (task, status, progress) within the
confirmation window of the answer, or the resubscribing socket receives it twice, the update was
live: the first subscription was alive, the task had merely had no status yet.

``LostTracker`` holds one ``LostCheck`` per resubscribe until it is resolved; the driver feeds it
every message about a watched task and asks it for confirmed losses a few times a second.
"""

from __future__ import annotations

#: Identity of one update: (status, progress). A live update and the gateway's cached copy of it
#: are the same JSON text, so they share this key.
Key = tuple["str | None", "float | None"]

#: With a single open socket there is no other socket to compare with: the answer must then come
#: this soon after the resubscribe (the cached status is sent at once) to count as a loss.
SOLO_ANSWER_NS = 250_000_000


class LostCheck:
    """One resubscribe being watched: who sent it, when, and what its user's sockets received."""

    __slots__ = ("conn", "user", "task_id", "t_resub", "solo", "key", "t_answer", "copies", "seen")

    def __init__(self, conn: int, user: str, task_id: str, t_resub: int, solo: bool) -> None:
        self.conn = conn
        self.user = user
        self.task_id = task_id
        self.t_resub = t_resub
        self.solo = solo  # the user had no other open socket when the resubscribe was sent
        self.key: Key | None = None  # the answer's update, once it came
        self.t_answer = 0
        self.copies = 0  # further receptions of the answer's update by any socket of the user
        self.seen: list[Key] = []  # updates other sockets of the user got before the answer


class LostTracker:
    """Open ``LostCheck``s by task id; ``due`` returns the confirmed losses."""

    def __init__(self, window_ns: int) -> None:
        self.window_ns = window_ns
        self.checks: dict[str, list[LostCheck]] = {}
        self.open = 0

    def watch(self, conn: int, user: str, task_id: str, t_resub: int, *, solo: bool) -> None:
        """Start watching a resubscribe sent at ``t_resub`` on connection ``conn`` of ``user``."""
        self.checks.setdefault(task_id, []).append(LostCheck(conn, user, task_id, t_resub, solo))
        self.open += 1

    def on_message(self, conn: int, user: str, task_id: str, key: Key, t: int) -> None:
        """A socket of ``user`` received ``key`` about a watched task at ``t``."""
        checks = self.checks.get(task_id)
        if not checks:
            return
        for ch in checks:
            if ch.user != user or t < ch.t_resub:
                continue
            if ch.key is None:
                if ch.conn == conn:
                    ch.key, ch.t_answer = key, t
                    ch.copies = ch.seen.count(key)
                else:
                    ch.seen.append(key)
            elif key == ch.key:
                ch.copies += 1

    def due(self, now: int) -> list[LostCheck]:
        """Resolve the checks whose windows have passed; return those that prove a loss."""
        lost: list[LostCheck] = []
        w = self.window_ns
        for tid in list(self.checks):
            keep = []
            for ch in self.checks[tid]:
                if ch.key is None:
                    if now - ch.t_resub <= w:
                        keep.append(ch)  # no answer yet
                elif now - ch.t_answer <= w:
                    keep.append(ch)  # still looking for copies
                elif ch.copies == 0 and (not ch.solo or ch.t_answer - ch.t_resub <= SOLO_ANSWER_NS):
                    lost.append(ch)
            self.open -= len(self.checks[tid]) - len(keep)
            if keep:
                self.checks[tid] = keep
            else:
                del self.checks[tid]
        return lost
