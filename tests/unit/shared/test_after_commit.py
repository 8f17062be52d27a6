"""Callbacks deferred to the commit of the surrounding transaction, and dropped when it is dropped."""

from __future__ import annotations

from homework_shared import after_commit


def test_callbacks_registered_inside_run_only_when_the_caller_runs_them() -> None:
    calls: list[str] = []
    with after_commit.collecting() as hooks:
        assert after_commit.after_commit(lambda: calls.append("a"))
        after_commit.now_or_after_commit(lambda: calls.append("b"))
        assert calls == []
    after_commit.run(hooks)
    assert calls == ["a", "b"]
    after_commit.run(hooks)  # run once: the list is emptied
    assert calls == ["a", "b"]


def test_a_dropped_transaction_drops_its_callbacks() -> None:
    calls: list[str] = []
    try:
        with after_commit.collecting():
            after_commit.after_commit(lambda: calls.append("never"))
            raise RuntimeError("abort")
    except RuntimeError:
        pass
    assert calls == []


def test_outside_a_transaction_nothing_is_registered_and_now_or_after_commit_runs_at_once() -> None:
    calls: list[str] = []
    assert not after_commit.after_commit(lambda: calls.append("lost"))
    after_commit.now_or_after_commit(lambda: calls.append("now"))
    assert calls == ["now"]
