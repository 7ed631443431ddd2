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
every message about a watched task and asks it for confirmed losses a few times a second. Each ask
costs what is due, not what is open: at 10,000 sockets thousands of checks are open at once (a
resubscribe to a task still queued on the target is never answered), and walking all of them four
times a second took up to ~10 ms of the event loop per ask.
"""

from __future__ import annotations

from collections import deque

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
        # Updates other sockets of the user got before the answer (None: none yet; a list only when
        # needed, as every young object lengthens the collector's passes at 10,000 sockets).
        self.seen: list[Key] | None = None


class LostTracker:
    """Open ``LostCheck``s by task id; ``due`` returns the confirmed losses."""

    def __init__(self, window_ns: int) -> None:
        self.window_ns = window_ns
        self.checks: dict[str, list[LostCheck]] = {}
        self.open = 0
        # Checks in the order of their resubscribes, and the answered ones in the order of their
        # answers (both times only grow): what is due is at the left ends.
        self._sent: deque[LostCheck] = deque()
        self._answered: deque[LostCheck] = deque()

    def watch(self, conn: int, user: str, task_id: str, t_resub: int, *, solo: bool) -> None:
        """Start watching a resubscribe sent at ``t_resub`` on connection ``conn`` of ``user``."""
        ch = LostCheck(conn, user, task_id, t_resub, solo)
        self.checks.setdefault(task_id, []).append(ch)
        self._sent.append(ch)
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
                    ch.copies = ch.seen.count(key) if ch.seen else 0
                    self._answered.append(ch)
                elif ch.seen is None:
                    ch.seen = [key]
                else:
                    ch.seen.append(key)
            elif key == ch.key:
                ch.copies += 1

    def due(self, now: int) -> list[LostCheck]:
        """Resolve the checks whose windows have passed; return those that prove a loss.

        A check with no answer ``window_ns`` after its resubscribe is dropped (not lost); an answered
        one is judged ``window_ns`` after its answer.
        """
        lost: list[LostCheck] = []
        w, sent, answered = self.window_ns, self._sent, self._answered
        while sent and now - sent[0].t_resub > w:
            ch = sent.popleft()
            if ch.key is None:
                self._drop(ch)  # no answer in time: not judged
        while answered and now - answered[0].t_answer > w:
            ch = answered.popleft()
            if ch.copies == 0 and (not ch.solo or ch.t_answer - ch.t_resub <= SOLO_ANSWER_NS):
                lost.append(ch)
            self._drop(ch)
        return lost

    def _drop(self, ch: LostCheck) -> None:
        same = self.checks[ch.task_id]
        same.remove(ch)
        if not same:
            del self.checks[ch.task_id]
        self.open -= 1
