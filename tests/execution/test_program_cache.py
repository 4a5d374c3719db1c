"""Chunk programs kept on disk: a new runner (or process) with the same model skips tracing."""

import os
import subprocess
import sys
import textwrap
from functools import partial

import jax.numpy as jnp
import numpy as np
import pytest

from hiddenjax.execution import program_cache
from hiddenjax.execution.runner import ChainFunctions, RunPlan, Runner, run_chains
from tests.execution.test_runner import _fns, metropolis_program

PLAN = RunPlan(tune=5, draws=10, seed=3, chunk_size=8, keep_warmup=False)
POSITIONS = np.zeros((4, 3))


@pytest.fixture
def cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HIDDENJAX_CACHE_DIR", str(tmp_path))
    return tmp_path / "programs"


def _runner(fns=None, factory=None):
    return Runner(factory or partial(metropolis_program, tune=5), fns or _fns(), 5, 8, 4)


def _shifted_fns(shift):
    def logdensity(theta, data):
        (mean,) = data
        return -0.5 * jnp.sum((theta - mean - shift) ** 2)

    return ChainFunctions(logdensity, lambda theta, data: (theta, theta.sum()), None)


def test_a_new_runner_loads_the_stored_program_and_draws_the_same(cache_folder):
    stored, loaded = program_cache.CacheStats.stored, program_cache.CacheStats.loaded
    first = run_chains(_runner(), (np.ones(3),), POSITIONS, PLAN)
    assert program_cache.CacheStats.stored == stored + 2  # the chunk program and its init
    assert len(list(cache_folder.iterdir())) == 2
    second = run_chains(_runner(), (np.ones(3),), POSITIONS, PLAN)
    assert program_cache.CacheStats.loaded == loaded + 2
    for a, b in zip(first.outputs, second.outputs):
        np.testing.assert_array_equal(a, b)


def test_a_stored_program_missing_its_init_gets_it_stored_again(cache_folder):
    run_chains(_runner(), (np.ones(3),), POSITIONS, PLAN)
    (init_file,) = cache_folder.glob("*-init")
    init_file.unlink()
    stored = program_cache.CacheStats.stored
    run_chains(_runner(), (np.ones(3),), POSITIONS, PLAN)
    assert program_cache.CacheStats.stored == stored + 1
    assert init_file.exists()


def test_the_key_ignores_data_values_but_not_the_model_or_settings(cache_folder):
    def key(runner, data=(np.ones(3),)):
        return runner._program_key(POSITIONS, data)

    base = key(_runner())
    assert base is not None
    assert key(_runner(), (np.full(3, 7.0),)) == base  # pm.set_data: same shapes, same program
    assert key(_runner(), (np.ones(4),)) != base
    assert key(_runner(_shifted_fns(1.0))) != key(_runner(_shifted_fns(2.0)))
    assert key(_runner(factory=partial(metropolis_program, tune=6))) != base
    assert key(Runner(partial(metropolis_program, tune=5), _fns(), 5, 16, 4)) != base


def test_closures_and_unreadable_entries_fall_back_to_tracing(cache_folder):
    assert _runner(factory=lambda ld: metropolis_program(ld, 5))._program_key(
        POSITIONS, (np.ones(3),)) is None
    runner = _runner()
    key = runner._program_key(POSITIONS, (np.ones(3),))
    cache_folder.mkdir(parents=True)
    (cache_folder / key).write_bytes(b"hiddenjax-program-1\n" + b"\x00" * 40)
    assert program_cache.load(key) is None
    expected = run_chains(_runner(), (np.ones(3),), POSITIONS, PLAN)
    assert expected.outputs[0].shape == (4, 10, 3)


_SCRIPT = textwrap.dedent("""
    import numpy as np
    import hiddenjax as hj
    from hiddenjax.compile.model_functions import LoweringStats
    from hiddenjax.execution import program_cache
    from hiddenjax.execution.prefetch import PrefetchStats

    with hj.Model() as model:
        x = hj.Data("x", np.linspace(-1, 1, 20))
        slope = hj.Normal("slope", 0, 1)
        sigma = hj.HalfNormal("sigma", 1)
        hj.Normal("y", slope * x, sigma, observed=np.sin(x.get_value()))
        idata = hj.sample(draws=30, tune=30, chains=2, random_seed=4, progressbar=False,
                          compute_convergence_checks=False)
    print("LOADED", program_cache.CacheStats.loaded, LoweringStats.lowered,
          PrefetchStats.taken, float(idata.posterior.slope.sum()))
""")


def test_a_second_process_loads_the_program(tmp_path):
    env = {**os.environ, "HIDDENJAX_CACHE_DIR": str(tmp_path)}
    env.pop("XLA_FLAGS", None)
    runs = [
        subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True,
                       timeout=300, check=True).stdout.split()
        for _ in range(2)
    ]
    assert runs[0][:2] == ["LOADED", "0"]
    assert runs[0][2] != "0"  # the first process lowered the model's graphs
    assert runs[0][3] == "0"  # and had nothing to load in the background
    # The second loads the start check, the chunk program and its init, and so
    # never rewrites or lowers a PyTensor graph; the chunk program was loaded
    # in the background while the model was read.
    assert runs[1][:4] == ["LOADED", "3", "0", "1"]
    assert runs[0][4] == runs[1][4]  # same seed, same draws


def test_functions_with_a_digest_are_keyed_without_tracing(cache_folder):
    def untraceable(theta, data):
        raise AssertionError("keying must not trace the model's functions")

    def keyed(digest):
        fns = ChainFunctions(untraceable, untraceable, None, digest=digest)
        return _runner(fns)._program_key(POSITIONS, (np.ones(3),))

    assert keyed("graphs-a") is not None
    assert keyed("graphs-a") == keyed("graphs-a") != keyed("graphs-b")
    assert _runner(ChainFunctions(untraceable, untraceable, None))._program_key(
        POSITIONS, (np.ones(3),)) is None  # no digest: traced, which fails, so uncached


def test_the_start_check_is_the_model_value_and_gradient_and_is_cached(cache_folder):
    data = (np.full(3, 0.5),)
    stored = program_cache.CacheStats.stored
    check = _runner().check(POSITIONS, data)
    assert program_cache.CacheStats.stored == stored + 1
    value, grad = check(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(value, -0.5 * np.sum((np.array([1.0, 2.0, 3.0]) - 0.5) ** 2))
    np.testing.assert_allclose(grad, -(np.array([1.0, 2.0, 3.0]) - 0.5))
    loaded = program_cache.CacheStats.loaded
    runner = _runner()
    again = runner.check(POSITIONS, data)
    assert program_cache.CacheStats.loaded == loaded + 1
    assert again(np.array([1.0, 2.0, 3.0]))[0] == value
    # The same runner keeps its check for these shapes; new data values are used.
    moved = runner.check(POSITIONS, (np.full(3, 1.5),))
    assert program_cache.CacheStats.loaded == loaded + 1
    np.testing.assert_allclose(moved(np.array([1.0, 2.0, 3.0]))[1], -(np.array([1.0, 2.0, 3.0]) - 1.5))
