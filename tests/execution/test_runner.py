"""The execution layer with a stand-in sampler program, so it is tested alone."""

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hiddenjax.execution.runner import (
    ChainFunctions,
    RunPlan,
    Runner,
    _Collector,
    DEFAULT_CHUNK,
    TIMED_CHUNK,
    TIMED_CHUNK_BYTES,
    VECTORIZE_SHARED_DATA,
    chain_keys,
    chunk_steps,
    chain_mesh,
    next_call_steps,
    next_stop,
    run_chains,
    runs_vectorized,
    timed_chunk_steps,
)


class State(NamedTuple):
    position: jax.Array
    logdensity: jax.Array
    scale: jax.Array


class Info(NamedTuple):
    lp: jax.Array
    acceptance_rate: jax.Array
    diverging: jax.Array
    step_size: jax.Array


class Program(NamedTuple):
    init: object
    step: object
    position: object
    window_ends: tuple = ()
    end_window: object = None


def metropolis_program(logdensity_fn, tune):
    """Random-walk Metropolis whose ``tune`` warmup steps grow or shrink the proposal scale."""

    def init(position):
        return State(position, logdensity_fn(position), jnp.asarray(1.0))

    def sample_step(key, state):
        k1, k2 = jax.random.split(key)
        proposal = state.position + state.scale * jax.random.normal(k1, state.position.shape)
        new_lp = logdensity_fn(proposal)
        accept_prob = jnp.minimum(1.0, jnp.exp(new_lp - state.logdensity))
        accept = jax.random.uniform(k2) < accept_prob
        position = jnp.where(accept, proposal, state.position)
        lp = jnp.where(accept, new_lp, state.logdensity)
        new = State(position, lp, state.scale)
        return new, Info(lp, accept_prob, jnp.asarray(False), state.scale)

    def step(key, state, step_index):
        new, info = sample_step(key, state)
        scale = jnp.where(info.acceptance_rate > 0.3, state.scale * 1.1, state.scale * 0.9)
        return new._replace(scale=jnp.where(step_index < tune, scale, state.scale)), info

    return Program(init, step, lambda s: s.position)


def _fns():
    def logdensity(theta, data):
        (mean,) = data
        return -0.5 * jnp.sum((theta - mean) ** 2)

    return ChainFunctions(logdensity, lambda theta, data: (theta, theta.sum()), None)


def _run(chunk_size, chains=4, tune=30, draws=50, keep_warmup=False, chain_method="auto",
         chunk_seconds=None, progress=None):
    positions = np.zeros((chains, 3))
    plan = RunPlan(tune=tune, draws=draws, seed=5, chunk_size=chunk_size, keep_warmup=keep_warmup,
                   chunk_seconds=chunk_seconds)
    runner = Runner(partial(metropolis_program, tune=tune), _fns(), tune, chunk_size, chains,
                    chain_method=chain_method)
    return run_chains(runner, (np.arange(3.0),), positions, plan, progress=progress)


def test_shapes_and_stats_chain_first():
    result = _run(chunk_size=16, keep_warmup=True)
    assert result.outputs[0].shape == (4, 50, 3)
    assert result.outputs[1].shape == (4, 50)
    assert result.stats["lp"].shape == (4, 50)
    assert result.warmup_outputs[0].shape == (4, 30, 3)
    assert result.steps_done == 80 and not result.interrupted


@pytest.mark.parametrize("chunk_size", [1, 7, 80, 200])
def test_draws_do_not_depend_on_chunk_size(chunk_size):
    reference = _run(chunk_size=13)
    other = _run(chunk_size=chunk_size)
    np.testing.assert_array_equal(reference.outputs[0], other.outputs[0])
    np.testing.assert_array_equal(reference.stats["step_size"], other.stats["step_size"])


def test_chunk_steps_fit_the_memory_budget():
    assert chunk_steps(2000, 1000, 4, budget=1 << 30) == DEFAULT_CHUNK
    assert chunk_steps(50, 1000, 4, budget=1 << 30) == 50  # a short run: one chunk
    assert chunk_steps(2000, 1000, 4, budget=4000 * 37 + 1) == 37
    assert chunk_steps(2000, 1000, 4, budget=10) == 1  # one step always runs
    assert chunk_steps(2000, None, 4, budget=10) == DEFAULT_CHUNK  # sizes unknown


def test_timed_chunks_hold_more_steps_while_their_draws_stay_small():
    assert timed_chunk_steps(5000, 1000, 4, budget=1 << 30) == TIMED_CHUNK
    assert timed_chunk_steps(900, 1000, 4, budget=1 << 30) == 900  # the whole run
    big = TIMED_CHUNK_BYTES // (4 * 250)  # draws of 250 steps fill the timed bytes
    assert timed_chunk_steps(5000, big, 4, budget=1 << 30) == 250
    assert timed_chunk_steps(5000, 10 * big, 4, budget=1 << 30) == DEFAULT_CHUNK
    assert timed_chunk_steps(5000, 1000, 4, budget=4000 * 37 + 1) == 37  # memory first


def test_timed_calls_run_about_chunk_seconds_between_default_and_chunk_steps():
    plan = RunPlan(tune=10, draws=10, seed=0, chunk_size=1500, keep_warmup=False,
                   chunk_seconds=1.0)
    assert next_call_steps(plan, 200, 0.1) == 1500  # fast: the whole chunk
    assert next_call_steps(plan, 200, 0.4) == 500
    assert next_call_steps(plan, 200, 8.0) == DEFAULT_CHUNK  # slow: never below the default
    assert next_call_steps(plan._replace(chunk_size=50), 50, 8.0) == 50
    assert next_call_steps(plan._replace(chunk_seconds=None), 200, 0.1) == 1500


def test_timed_calls_of_varying_length_give_the_same_draws(monkeypatch):
    import hiddenjax.execution.runner as runner

    lengths = iter([3, 11, 1, 40, 7] + [5] * 100)
    monkeypatch.setattr(runner, "next_call_steps", lambda plan, steps, seconds: next(lengths))
    calls = []
    timed = _run(chunk_size=40, chunk_seconds=1.0, keep_warmup=True,
                 progress=lambda start, done, stats: calls.append((start, done)))
    # The first call runs FIRST_TIMED_CALL steps (25), the next ones what the clock
    # says (at most the chunk's 40 rows), the last one cut at the run's end (80 steps).
    assert calls == [(0, 25), (25, 28), (28, 39), (39, 40), (40, 80)]
    reference = _run(chunk_size=13, keep_warmup=True)
    np.testing.assert_array_equal(reference.outputs[0], timed.outputs[0])
    np.testing.assert_array_equal(reference.warmup_outputs[0], timed.warmup_outputs[0])
    np.testing.assert_array_equal(reference.stats["step_size"], timed.stats["step_size"])


@pytest.mark.parametrize("keep_warmup", [False, True])
def test_collector_writes_chunks_into_one_chains_first_array_per_output(keep_warmup):
    tune, draws, chains = 5, 4, 2
    plan = RunPlan(tune=tune, draws=draws, seed=0, chunk_size=3, keep_warmup=keep_warmup)
    collector = _Collector(plan, first=0 if keep_warmup else tune)
    values = np.arange((tune + draws) * chains * 3.0).reshape(tune + draws, chains, 3)
    lp = -values[..., 0]
    for start in range(0, tune + draws, 3):
        stop = start + 3
        out = ((values[start:stop],), (), Info(lp[start:stop], lp[start:stop],
                                                lp[start:stop] > 0, lp[start:stop]))
        collector.add(start, stop, out)
    # Warmup nobody asked for is not stored: the arrays hold the kept draws only.
    assert collector.buffers[0][0].shape == (chains, (tune if keep_warmup else 0) + draws, 3)
    result = collector.result(tune + draws, False, 0.0)
    np.testing.assert_array_equal(result.outputs[0], np.swapaxes(values[tune:], 0, 1))
    np.testing.assert_array_equal(result.stats["lp"], np.swapaxes(lp[tune:], 0, 1))
    if keep_warmup:
        np.testing.assert_array_equal(result.warmup_outputs[0], np.swapaxes(values[:tune], 0, 1))
    else:
        assert result.warmup_outputs is None
    # An interrupt after 7 steps: the finished draws, a prefix.
    early = collector.result(7, True, 0.0)
    np.testing.assert_array_equal(early.outputs[0], np.swapaxes(values[tune:7], 0, 1))


def test_vectorized_and_sequential_chains_give_the_same_draws():
    vectorized = _run(chunk_size=16, chain_method="vectorized", keep_warmup=True)
    sequential = _run(chunk_size=16, chain_method="sequential", keep_warmup=True)
    for a, b in [(vectorized.outputs[0], sequential.outputs[0]),
                 (vectorized.warmup_outputs[0], sequential.warmup_outputs[0]),
                 (vectorized.stats["lp"], sequential.stats["lp"])]:
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_auto_vectorizes_only_for_per_chain_or_large_shared_data():
    small = (jax.ShapeDtypeStruct((100, 3), np.float64),)
    large = (jax.ShapeDtypeStruct((VECTORIZE_SHARED_DATA // 2, 2), np.float64),)
    assert not runs_vectorized("auto", small, data_per_chain=False)
    assert not runs_vectorized("auto", (), data_per_chain=False)
    assert runs_vectorized("auto", large, data_per_chain=False)
    assert runs_vectorized("auto", small, data_per_chain=True)
    assert runs_vectorized("vectorized", small, data_per_chain=False)
    assert not runs_vectorized("sequential", large, data_per_chain=True)


def test_an_unknown_chain_method_is_refused():
    with pytest.raises(ValueError, match="chain_method='parallel'.*'sequential'"):
        Runner(partial(metropolis_program, tune=5), _fns(), 5, 8, 2, chain_method="parallel")


def test_chains_are_independent_streams():
    result = _run(chunk_size=20)
    draws = result.outputs[0]
    assert not np.array_equal(draws[0], draws[1])


def test_progress_is_told_about_every_chunk():
    calls = []
    plan = RunPlan(tune=10, draws=25, seed=1, chunk_size=10, keep_warmup=False)
    runner = Runner(partial(metropolis_program, tune=10), _fns(), 10, 10, 2)
    run_chains(runner, (np.zeros(3),), np.zeros((2, 3)), plan,
               progress=lambda start, done, stats: calls.append((start, done)))
    assert calls == [(0, 10), (10, 20), (20, 30), (30, 35)]


def test_calls_stop_after_each_window_end():
    assert next_stop(0, 25, 100, (4, 20)) == 5
    assert next_stop(5, 25, 100, (4, 20)) == 21
    assert next_stop(21, 25, 100, (4, 20)) == 46
    assert next_stop(90, 25, 100, (4, 20)) == 100
    assert next_stop(0, 4, 100, (4, 20)) == 4  # the end's own step is not reached yet


def _windowed_program(logdensity_fn, tune, ends, seen):
    """The Metropolis program, whose host ``end_window`` sets the proposal scale to 7."""

    def end_window(states):
        seen.append(np.asarray(states.position).shape)
        return states._replace(scale=np.full_like(np.asarray(states.scale), 7.0))

    return metropolis_program(logdensity_fn, tune)._replace(window_ends=ends,
                                                            end_window=end_window)


@pytest.mark.parametrize("chunk_size", [16, 7])
def test_end_window_runs_on_the_host_once_after_each_window_end(chunk_size):
    seen, calls = [], []
    factory = partial(_windowed_program, tune=30, ends=(4, 20), seen=seen)
    runner = Runner(factory, _fns(), 30, chunk_size, 4)
    plan = RunPlan(tune=30, draws=10, seed=3, chunk_size=chunk_size, keep_warmup=True)
    result = run_chains(runner, (np.zeros(3),), np.zeros((4, 3)), plan,
                        progress=lambda start, done, stats: calls.append(done))
    assert seen == [(4, 3), (4, 3)]  # every chain's state at once, chain axis first
    assert 5 in calls and 21 in calls
    used = result.warmup_stats["step_size"]  # the scale each step used
    np.testing.assert_array_equal(used[:, 5], 7.0)
    np.testing.assert_array_equal(used[:, 21], 7.0)
    assert np.all(used[:, 6:21] != 7.0)
    if chunk_size == 7:
        other = run_chains(Runner(partial(_windowed_program, tune=30, ends=(4, 20), seen=[]),
                                  _fns(), 30, 16, 4),
                           (np.zeros(3),), np.zeros((4, 3)), plan._replace(chunk_size=16))
        np.testing.assert_array_equal(result.outputs[0], other.outputs[0])


def test_mesh_uses_a_divisor_of_the_chain_count():
    assert 3 % chain_mesh(3).devices.size == 0
    assert 4 % chain_mesh(4).devices.size == 0


def test_runner_compiles_once_for_new_data_and_more_draws():
    runner = Runner(partial(metropolis_program, tune=10), _fns(), 10, 16, 2)
    plan = RunPlan(tune=10, draws=20, seed=1, chunk_size=16, keep_warmup=False)
    first = run_chains(runner, (np.zeros(3),), np.zeros((2, 3)), plan)
    again = run_chains(runner, (np.ones(3),), np.zeros((2, 3)), plan._replace(draws=40))
    assert first.compile_time > 0
    assert again.compile_time == 0.0
    assert again.outputs[0].shape == (2, 40, 3)


def test_checkpoint_extension_equals_an_uninterrupted_run(tmp_path):
    path = str(tmp_path / "run.nc")
    runner = Runner(partial(metropolis_program, tune=30), _fns(), 30, 16, 4)
    data, start = (np.arange(3.0),), np.zeros((4, 3))
    plan = RunPlan(tune=30, draws=20, seed=5, chunk_size=16, keep_warmup=True)
    first = run_chains(runner, data, start, plan, checkpoint=path, fingerprint="m")
    assert first.outputs[0].shape == (4, 20, 3)
    # A second call with more draws continues from the checkpoint, whatever its seed.
    more = run_chains(runner, data, start, plan._replace(draws=50, seed=99), checkpoint=path,
                      fingerprint="m")
    whole = run_chains(runner, data, start, plan._replace(draws=50))
    np.testing.assert_array_equal(more.outputs[0], whole.outputs[0])
    np.testing.assert_array_equal(more.warmup_outputs[0], whole.warmup_outputs[0])
    np.testing.assert_array_equal(more.stats["lp"], whole.stats["lp"])


def test_checkpoint_of_another_run_is_refused(tmp_path):
    from hiddenjax.execution.checkpoint import CheckpointMismatchError

    path = str(tmp_path / "run.nc")
    runner = Runner(partial(metropolis_program, tune=5), _fns(), 5, 8, 2)
    plan = RunPlan(tune=5, draws=5, seed=1, chunk_size=8, keep_warmup=False)
    run_chains(runner, (np.zeros(3),), np.zeros((2, 3)), plan, checkpoint=path, fingerprint="a")
    with pytest.raises(CheckpointMismatchError, match="different run"):
        run_chains(runner, (np.zeros(3),), np.zeros((2, 3)), plan, checkpoint=path,
                   fingerprint="b")


def test_data_per_chain_groups_equal_separate_runs():
    datasets = [np.arange(3.0), -np.arange(3.0), np.ones(3)]
    plan = RunPlan(tune=12, draws=20, seed=[7, 8, 9], chunk_size=8, keep_warmup=False)
    batched = Runner(partial(metropolis_program, tune=12), _fns(), 12, 8, 6, data_per_chain=True)
    stacked = (np.repeat(np.stack(datasets), 2, axis=0),)
    together = run_chains(batched, stacked, np.zeros((6, 3)), plan)
    single = Runner(partial(metropolis_program, tune=12), _fns(), 12, 8, 2)
    sequential = Runner(partial(metropolis_program, tune=12), _fns(), 12, 8, 6,
                        data_per_chain=True, chain_method="sequential")
    one_by_one = run_chains(sequential, stacked, np.zeros((6, 3)), plan)
    np.testing.assert_allclose(one_by_one.outputs[0], together.outputs[0], rtol=1e-12)
    for d, (data, seed) in enumerate(zip(datasets, plan.seed)):
        alone = run_chains(single, (data,), np.zeros((2, 3)), plan._replace(seed=seed))
        np.testing.assert_allclose(together.outputs[0][2 * d : 2 * d + 2], alone.outputs[0],
                                   rtol=1e-12)


def _cholesky_fns():
    def logdensity(theta, data):
        (mean,) = data
        cov = jnp.eye(3) + 0.1 * jnp.outer(theta, theta)
        chol = jnp.linalg.cholesky(cov)
        return -0.5 * jnp.sum((theta - mean) ** 2) - jnp.sum(jnp.log(jnp.diag(chol)))

    return ChainFunctions(logdensity, lambda theta, data: (theta,), None)


@pytest.mark.skipif(len(jax.devices()) < 2, reason="needs two host devices")
def test_programs_calling_lapack_run_on_one_host_device():
    plan = RunPlan(tune=5, draws=10, seed=1, chunk_size=8, keep_warmup=False)
    plain = Runner(partial(metropolis_program, tune=5), _fns(), 5, 8, 4)
    run_chains(plain, (np.zeros(3),), np.zeros((4, 3)), plan)
    assert plain.mesh.devices.size == 2
    lapack = Runner(partial(metropolis_program, tune=5), _cholesky_fns(), 5, 8, 4)
    assert lapack.mesh.devices.size == 2
    result = run_chains(lapack, (np.zeros(3),), np.zeros((4, 3)), plan)
    assert lapack.mesh.devices.size == 1
    assert result.outputs[0].shape == (4, 10, 3)
    # Same draws as a run placed on one device from the start.
    alone = Runner(partial(metropolis_program, tune=5), _cholesky_fns(), 5, 8, 4,
                   devices=jax.devices()[:1])
    expected = run_chains(alone, (np.zeros(3),), np.zeros((4, 3)), plan).outputs[0]
    np.testing.assert_array_equal(result.outputs[0], expected)


@pytest.mark.parametrize("seed", [0, 5, 2**31 - 1, 2**32 + 7, 123_456_789_012, -1])
def test_chain_keys_are_jaxs_fold_in_of_the_seed_key(seed):
    expected = jax.vmap(lambda c: jax.random.fold_in(jax.random.PRNGKey(seed), c))(np.arange(9))
    keys = chain_keys(seed, 9)
    assert keys.dtype == np.uint32 and keys.shape == (9, 2)
    np.testing.assert_array_equal(keys, np.asarray(expected))


def test_start_compile_compiles_in_a_thread_and_settles_the_mesh_first(monkeypatch, tmp_path):
    from hiddenjax.execution import background

    monkeypatch.setenv("HIDDENJAX_CACHE_DIR", str(tmp_path))  # nothing stored to load
    names = []
    start = background.start
    monkeypatch.setattr(background, "start",
                        lambda fn, name: names.append(name) or start(fn, name))
    runner = Runner(partial(metropolis_program, tune=10), _cholesky_fns(), 10, 16, 2)
    positions, data = np.zeros((2, 3)), (np.zeros(3),)
    wait = runner.start_compile(positions, data)
    assert names == ["hiddenjax-compile"]
    assert runner.mesh.devices.size == 1  # its LAPACK call settled it before the compile
    compiled, seconds = wait()
    assert seconds > 0
    assert runner.start_compile(positions, data)() == (compiled, 0.0)
    plan = RunPlan(tune=10, draws=20, seed=1, chunk_size=16, keep_warmup=False)
    result = run_chains(runner, data, positions, plan)
    assert result.compile_time == 0.0  # run_chains took the program compiled above
    assert np.all(np.isfinite(result.outputs[0]))
