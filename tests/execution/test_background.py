"""Work run in a thread while the caller goes on."""

import threading

import pytest

from hiddenjax.execution import background


def test_the_caller_goes_on_while_the_task_runs_and_wait_gives_its_value():
    release = threading.Event()
    names = []

    def work():
        names.append(threading.current_thread().name)
        assert release.wait(timeout=30)
        return 42

    task = background.start(work, "hiddenjax-test")
    assert not task.outcome  # still blocked on the event: start did not wait for it
    release.set()
    assert background.wait(task) == 42
    assert names == ["hiddenjax-test"]
    assert background.wait(task) == 42  # waiting again gives the same value


def test_an_exception_in_the_task_is_raised_by_wait():
    def fail():
        raise RuntimeError("compile failed")

    task = background.start(fail, "hiddenjax-test")
    with pytest.raises(RuntimeError, match="compile failed"):
        background.wait(task)


def test_a_finished_task_is_no_longer_waited_for_at_exit():
    task = background.start(lambda: None, "hiddenjax-test")
    background.wait(task)
    assert task.thread not in background._LIVE
