"""Loading the likely chunk program in the background while the model is read."""

import threading
from functools import partial

import numpy as np
import pytest

from hiddenjax.execution import prefetch
from hiddenjax.execution.prefetch import PrefetchStats
from hiddenjax.execution.runner import Runner, prefetch_program, run_chains
from tests.execution.test_program_cache import PLAN, POSITIONS
from tests.execution.test_runner import _fns, metropolis_program

DEVICES = ("cpu:0",)


@pytest.fixture(autouse=True)
def cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HIDDENJAX_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(prefetch, "_SEEN", set())
    monkeypatch.setattr(prefetch, "_PENDING", {})
    return tmp_path / "programs"


def _fresh_process_view():
    """Forget which programs this process compiled, as a new process would not know."""
    prefetch._SEEN.clear()


def test_a_remembered_key_is_loaded_in_a_thread_and_taken_once():
    prefetch.remember("call A", "key-1")
    _fresh_process_view()
    threads = []

    def load(key, devices):
        threads.append(threading.current_thread().name)
        return (key, devices)

    taken = PrefetchStats.taken
    prefetch.start("call A", DEVICES, load)
    assert prefetch.take("key-1", DEVICES) == ("key-1", DEVICES)
    assert threads == ["hiddenjax-prefetch"]
    assert PrefetchStats.taken == taken + 1
    assert prefetch.take("key-1", DEVICES) is None  # taken already


def test_nothing_starts_without_a_hint_or_for_a_program_compiled_here():
    calls = []
    started = PrefetchStats.started
    prefetch.start("never seen", DEVICES, lambda key, devices: calls.append(key))
    prefetch.remember("call B", "key-2")  # this process compiled key-2
    prefetch.start("call B", DEVICES, lambda key, devices: calls.append(key))
    assert PrefetchStats.started == started
    assert calls == []


def test_a_wrong_guess_other_devices_or_a_failed_load_give_nothing():
    prefetch.remember("call C", "key-3")
    _fresh_process_view()
    prefetch.start("call C", DEVICES, lambda key, devices: "program")
    assert prefetch.take("key-4", DEVICES) is None  # the model changed: its real key differs
    prefetch.start("call C", DEVICES, lambda key, devices: "program")
    assert prefetch.take("key-3", ("cpu:0", "cpu:1")) is None

    def broken(key, devices):
        raise RuntimeError("unreadable")

    prefetch.start("call C", DEVICES, broken)
    assert prefetch.take("key-3", DEVICES) is None


def _runner():
    return Runner(partial(metropolis_program, tune=5), _fns(), 5, 8, 4)


def test_a_runner_takes_the_prefetched_program_and_draws_the_same():
    data = (np.ones(3),)
    first = _runner()
    first.compile(POSITIONS, data, hint="metropolis run")
    expected = run_chains(first, data, POSITIONS, PLAN)

    _fresh_process_view()
    taken = PrefetchStats.taken
    prefetch_program("metropolis run", chains=4)
    second = _runner()
    second.compile(POSITIONS, data, hint="metropolis run")
    assert PrefetchStats.taken == taken + 1
    got = run_chains(second, data, POSITIONS, PLAN)
    for a, b in zip(expected.outputs, got.outputs):
        np.testing.assert_array_equal(a, b)
    for name in expected.stats:
        np.testing.assert_array_equal(expected.stats[name], got.stats[name])
