"""The lost-subscription rule of ``engine.ws_lost`` as pure logic (no sockets)."""

from __future__ import annotations

from taskforge_perf.engine.ws_lost import SOLO_ANSWER_NS, LostTracker

MS = 1_000_000
W = 1000 * MS  # confirmation window
PROC = ("processing", 10.0)


def tracker() -> LostTracker:
    return LostTracker(W)


def test_cached_answer_seen_by_no_other_socket_is_lost() -> None:
    t = tracker()
    t.watch(1, "u", "task", 0, solo=False)
    t.on_message(1, "u", "task", PROC, 3 * MS)  # the answer, on the resubscribing socket only
    assert t.due(3 * MS + W - 1) == []  # still within the window: not judged yet
    lost = t.due(3 * MS + W + 1)
    assert [(c.conn, c.task_id, c.t_answer) for c in lost] == [(1, "task", 3 * MS)]
    assert t.open == 0 and t.checks == {}


def test_live_update_on_another_socket_of_the_user_is_not_lost() -> None:
    t = tracker()
    t.watch(1, "u", "task", 0, solo=False)
    t.on_message(1, "u", "task", PROC, 5 * MS)
    t.on_message(2, "u", "task", PROC, 25 * MS)  # the same update, 20 ms later, another socket
    assert t.due(5 * MS + W + 1) == []


def test_copy_before_the_answer_and_a_second_copy_on_the_same_socket_count() -> None:
    t = tracker()
    t.watch(1, "u", "a", 0, solo=False)
    t.on_message(2, "u", "a", PROC, 1 * MS)  # another socket got it first
    t.on_message(1, "u", "a", PROC, 2 * MS)
    t.watch(1, "u", "b", 0, solo=True)
    t.on_message(1, "u", "b", PROC, 2 * MS)  # live, then the cached copy: twice on one socket
    t.on_message(1, "u", "b", PROC, 3 * MS)
    assert t.due(10 * W) == []


def test_other_users_and_other_updates_are_not_copies() -> None:
    t = tracker()
    t.watch(1, "u", "task", 0, solo=False)
    t.on_message(7, "someone-else", "task", PROC, 1 * MS)  # leak to another user: not the user's copy
    t.on_message(1, "u", "task", PROC, 2 * MS)
    t.on_message(2, "u", "task", ("processing", 50.0), 30 * MS)  # a later update, not a copy
    assert len(t.due(2 * MS + W + 1)) == 1


def test_no_answer_within_the_window_is_not_lost() -> None:
    t = tracker()
    t.watch(1, "u", "task", 0, solo=False)
    assert t.due(W + 1) == [] and t.open == 0
    t.on_message(1, "u", "task", PROC, W + 2)  # too late: nothing watches any more
    assert t.due(10 * W) == []


def test_a_single_socket_needs_an_answer_at_once() -> None:
    t = tracker()
    t.watch(1, "u", "quick", 0, solo=True)
    t.on_message(1, "u", "quick", PROC, SOLO_ANSWER_NS)
    t.watch(1, "u", "slow", 0, solo=True)
    t.on_message(1, "u", "slow", PROC, SOLO_ANSWER_NS + 1)  # may be a fresh update: not judged lost
    assert [c.task_id for c in t.due(10 * W)] == ["quick"]


def test_checks_are_resolved_as_their_windows_pass_in_any_mix() -> None:
    """Resubscribes every half window, some answered: each is judged a window after its answer, or
    dropped a window after its resubscribe; the rest stay open (what ``due`` walks is what is due)."""
    t = tracker()
    for i in range(5):
        t.watch(1, "u", f"t{i}", i * W // 2, solo=False)
    t.on_message(1, "u", "t0", PROC, 1 * MS)
    t.on_message(1, "u", "t3", PROC, 3 * W // 2 + 1)  # answered after t1's window ended
    assert [c.task_id for c in t.due(W + 2 * MS)] == ["t0"] and t.open == 4
    assert t.due(3 * W // 2 + 2) == [] and t.open == 3  # t1 dropped unanswered
    assert [c.task_id for c in t.due(5 * W // 2 + 2)] == ["t3"] and t.open == 1  # t2 dropped
    assert set(t.checks) == {"t4"}
    assert t.due(10 * W) == [] and t.open == 0 and t.checks == {}
