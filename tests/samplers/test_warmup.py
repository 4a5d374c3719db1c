"""Stan's warmup schedule, hiddenjax's earlier-starting one, and the NUTS program that follows it."""

import math

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from hiddenjax.samplers import StepInfo, build_nuts_program
from hiddenjax.samplers.mass_matrix import regularize_variance
from hiddenjax.samplers.warmup import build_schedule, in_window, is_window_end, nuts_schedule
from tests.samplers.drivers import run_program

# --- the schedule -------------------------------------------------------------


def test_schedule_for_1000_steps_is_stans():
    schedule = build_schedule(1000)
    assert schedule.init_buffer == 75 and schedule.term_buffer == 50
    assert schedule.windows == ((75, 100), (100, 150), (150, 250), (250, 450), (450, 950))


@pytest.mark.parametrize(
    "num_tune, init, term, windows",
    [
        (0, 0, 0, ()),
        (19, 19, 0, ()),  # below 20 steps: step size only
        (20, 3, 2, ((3, 18),)),  # 15% / 75% / 10%, rounded down
        (100, 15, 10, ((15, 90),)),
        (149, 22, 14, ((22, 135),)),
        (150, 75, 50, ((75, 100),)),
        (151, 75, 50, ((75, 100), (100, 101))),  # Stan's schedule: a one-step last window
        (200, 75, 50, ((75, 100), (100, 150))),
        (280, 75, 50, ((75, 100), (100, 230))),  # stretched: a 100-step window would not fit
        (300, 75, 50, ((75, 100), (100, 150), (150, 250))),
        (400, 75, 50, ((75, 100), (100, 150), (150, 350))),
        (500, 75, 50, ((75, 100), (100, 150), (150, 250), (250, 450))),
    ],
)
def test_small_schedules(num_tune, init, term, windows):
    schedule = build_schedule(num_tune)
    assert (schedule.init_buffer, schedule.term_buffer, schedule.windows) == (init, term, windows)


def _replay_stan_counter(num_tune, init=75, term=50, base=25):
    """Windows found by replaying Stan's per-step window counter.

    Stan keeps the index of the current window's last step; when the step
    counter reaches it, the window closes and the next one is planned: double
    the size, and if the window after it would reach the terminal buffer,
    end this one at the buffer instead.
    """
    if num_tune < 20:
        return ()
    if init + base + term > num_tune:
        init, term = int(0.15 * num_tune), int(0.10 * num_tune)
        base = num_tune - init - term
    last_slow = num_tune - term - 1
    size, closes_at, opened_at, windows = base, init + base - 1, init, []
    for counter in range(num_tune):
        if counter != closes_at:
            continue
        windows.append((opened_at, counter + 1))
        opened_at = counter + 1
        if closes_at == last_slow:
            continue
        size *= 2
        closes_at = counter + size
        if closes_at != last_slow and closes_at + 2 * size >= num_tune - term:
            closes_at = last_slow
    return tuple(windows)


def test_schedule_matches_stans_counter_for_every_length():
    for num_tune in range(0, 1300):
        assert build_schedule(num_tune).windows == _replay_stan_counter(num_tune), num_tune


def test_window_membership_is_traceable():
    schedule = build_schedule(1000)
    steps = jnp.arange(1000, dtype=jnp.int32)
    inside = np.asarray(jax.jit(lambda s: in_window(schedule, s))(steps))
    ends = np.asarray(jax.jit(lambda s: is_window_end(schedule, s))(steps))
    np.testing.assert_array_equal(np.nonzero(inside)[0], np.arange(75, 950))
    np.testing.assert_array_equal(np.nonzero(ends)[0], [99, 149, 249, 449, 949])
    assert not np.any(np.asarray(in_window(build_schedule(10), steps)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_tune": -1}, "num_tune must be an integer >= 0"),
        ({"num_tune": 10.0}, "num_tune must be an integer >= 0"),
        ({"num_tune": 100, "base_window": 0}, "base_window must be an integer >= 1"),
    ],
)
def test_schedule_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_schedule(**kwargs)


def test_nuts_schedule_adds_windows_inside_stans_initial_buffer():
    schedule = nuts_schedule(1000)
    assert (schedule.init_buffer, schedule.term_buffer) == (15, 50)
    assert schedule.windows == ((15, 25), (25, 75), (75, 100), (100, 150), (150, 250),
                                (250, 450), (450, 950))


def test_nuts_schedule_keeps_every_stan_window():
    for num_tune in range(0, 1300):
        schedule, stan = nuts_schedule(num_tune), build_schedule(num_tune)
        assert schedule.windows[len(schedule.windows) - len(stan.windows):] == stan.windows
        assert schedule.term_buffer == stan.term_buffer
        if stan.init_buffer < 25:  # no room for a first window before Stan's
            assert schedule == stan, num_tune
            continue
        starts = [start for start, _ in schedule.windows]
        ends = [end for _, end in schedule.windows]
        assert starts[0] == schedule.init_buffer == 15 and ends[0] == 25
        assert starts[1:] == ends[:-1], num_tune


# --- the program ----------------------------------------------------------------

SCALES = np.array([0.1, 1.0, 10.0])


def _gaussian(x):
    return -0.5 * jnp.sum((x / SCALES) ** 2)


TUNE = 200
SCHEDULE = nuts_schedule(TUNE)
"""Windows ``[15, 25)``, ``[25, 75)``, ``[75, 100)`` and ``[100, 150)``."""
ENDS = [end - 1 for _, end in SCHEDULE.windows]
"""Last steps of the windows: the metric changes there."""
RESTARTS = ENDS[:-1]
"""Window ends where dual averaging restarts (all but the last)."""


@pytest.fixture(scope="module")
def warmup_run():
    program = build_nuts_program(_gaussian, TUNE)
    starts = np.random.default_rng(5).normal(size=(2, 3))
    return run_program(program, jax.random.key(8), starts, 200, 20)


def test_mass_matrix_set_at_window_ends_from_the_window_draws(warmup_run):
    positions = np.asarray(warmup_run.warmup_states.nuts.position)  # (steps, chains, dim)
    imm = np.asarray(warmup_run.warmup_states.metric.diagonal)
    previous = np.concatenate([np.ones_like(imm[:1]), imm[:-1]])
    changed = np.nonzero(np.any(imm != previous, axis=(1, 2)))[0]
    np.testing.assert_array_equal(changed, ENDS)
    for start, end in SCHEDULE.windows:
        want = regularize_variance(positions[start:end].var(axis=0, ddof=1), end - start)
        np.testing.assert_allclose(imm[end - 1], want, rtol=1e-12)
    np.testing.assert_array_equal(warmup_run.final.metric.diagonal, imm[-1])


def test_window_ends_reset_welford_and_restart_dual_averaging_but_the_last(warmup_run):
    states = warmup_run.warmup_states
    count = np.asarray(states.mass_matrix_adaptation.count)[:, 0]
    np.testing.assert_array_equal(count[:SCHEDULE.init_buffer], 0)
    for start, end in SCHEDULE.windows:
        np.testing.assert_array_equal(count[start:end - 1], np.arange(1, end - start))
    np.testing.assert_array_equal(count[ENDS], 0)
    np.testing.assert_array_equal(count[ENDS[-1]:], 0)
    da = states.step_size_adaptation
    da_count = np.asarray(da.count)[:, 0]
    begun = 0
    for end in RESTARTS:
        np.testing.assert_array_equal(da_count[begun:end], np.arange(1, end - begun + 1))
        np.testing.assert_array_equal(da_count[end], 0)
        np.testing.assert_allclose(da.mu[end], math.log(10) + np.asarray(da.log_step_size[end]))
        begun = end + 1
    # The last window ends at step 149: dual averaging goes on through the terminal buffer.
    np.testing.assert_array_equal(da_count[begun:], np.arange(1, TUNE - begun + 1))
    np.testing.assert_array_equal(da.mu[begun:], np.broadcast_to(da.mu[RESTARTS[-1]],
                                                                 da.mu[begun:].shape))
    for end in ENDS:
        np.testing.assert_allclose(states.step_size[end], np.exp(da.log_step_size[end]))


def test_step_sizes_used_and_reported(warmup_run):
    states, info = warmup_run.warmup_states, warmup_run.warmup_info
    initial = 0.25 / 3**0.25
    np.testing.assert_allclose(info.step_size[0], initial, rtol=1e-15)
    np.testing.assert_array_equal(info.step_size[1:], states.step_size[:-1])
    # step_size_bar is the averaged step size after this step's update (before a restart).
    avg = np.exp(np.asarray(states.step_size_adaptation.log_step_size_avg))
    not_end = np.setdiff1d(np.arange(TUNE), RESTARTS)
    np.testing.assert_allclose(info.step_size_bar[not_end], avg[not_end], rtol=1e-14)
    # After the last warmup step, sampling uses the averaged step size.
    final = warmup_run.final.step_size
    np.testing.assert_allclose(final, avg[-1], rtol=1e-14)
    np.testing.assert_array_equal(final, info.step_size_bar[-1])
    np.testing.assert_array_equal(warmup_run.info.step_size, np.broadcast_to(final, (20, 2)))
    np.testing.assert_array_equal(warmup_run.info.step_size_bar, warmup_run.info.step_size)


def test_reached_max_treedepth_only_reported_after_warmup():
    """PyMC reports ``reached_max_treedepth`` as False while tuning."""
    program = build_nuts_program(_gaussian, 30, max_treedepth=2)
    run = run_program(program, jax.random.key(1), np.zeros((2, 3)), 30, 30)
    assert np.any(np.asarray(run.warmup_info.tree_depth) == 2)
    assert not np.any(run.warmup_info.reached_max_treedepth)
    assert np.any(run.info.reached_max_treedepth)
    assert np.all(np.asarray(run.info.tree_depth) <= 2)


def test_no_tuning_keeps_identity_and_initial_step_size():
    program = build_nuts_program(_gaussian, 0)
    state = program.init(jnp.array([0.1, 0.5, 3.0]))
    np.testing.assert_array_equal(state.metric.diagonal, np.ones(3))
    assert float(state.step_size) == pytest.approx(0.25 / 3**0.25, rel=1e-15)
    run = run_program(program, jax.random.key(0), np.zeros((2, 3)), 0, 10)
    np.testing.assert_array_equal(run.info.step_size, float(state.step_size))
    np.testing.assert_array_equal(run.info.step_size_bar, run.info.step_size)
    np.testing.assert_array_equal(run.final.metric.diagonal, np.ones((2, 3)))


def test_short_tuning_adapts_the_step_size_only():
    program = build_nuts_program(_gaussian, 10)
    run = run_program(program, jax.random.key(0), np.zeros((2, 3)), 10, 5)
    np.testing.assert_array_equal(run.final.metric.diagonal, np.ones((2, 3)))
    avg = np.exp(np.asarray(run.warmup_states.step_size_adaptation.log_step_size_avg[-1]))
    np.testing.assert_allclose(run.final.step_size, avg, rtol=1e-14)


def test_sampling_steps_keep_the_adapted_settings():
    """Past ``num_tune`` a step samples: step size, metric and accumulators stay as they are,
    and only there is the tree-depth limit reported (PyMC's warmup never flags it)."""
    program = build_nuts_program(_gaussian, 20, max_treedepth=1)
    state = program.init(jnp.ones(3))
    keys = jax.random.split(jax.random.key(0), 20)
    warm_state, warm_info = jax.vmap(program.step, (0, None, None))(keys, state, jnp.int32(3))
    assert np.all(warm_state.step_size != state.step_size)
    assert not np.any(warm_info.reached_max_treedepth)
    new, info = jax.vmap(program.step, (0, None, None))(keys, state, jnp.int32(20))
    for kept in ("step_size", "metric", "step_size_adaptation", "mass_matrix_adaptation"):
        jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, np.broadcast_to(b, a.shape)),
                     getattr(new, kept), getattr(state, kept))
    np.testing.assert_array_equal(info.step_size_bar, state.step_size)
    assert np.any(info.reached_max_treedepth)
    np.testing.assert_array_equal(info.lp, new.nuts.logdensity)


def test_float32_positions():
    """A float32 model: positions stay float32, adaptation and statistics are float64."""
    scales = SCALES.astype(np.float32)
    program = build_nuts_program(lambda x: -0.5 * jnp.sum((x / scales) ** 2), 30)
    run = run_program(program, jax.random.key(0), np.ones((2, 3), np.float32), 30, 10)
    assert run.final.nuts.position.dtype == jnp.float32
    assert run.final.step_size.dtype == jnp.float64
    assert run.final.metric.diagonal.dtype == jnp.float64
    assert run.info.lp.dtype == jnp.float64
    assert np.all(np.isfinite(np.asarray(run.states.nuts.position)))


def test_step_info_fields_are_pymcs():
    assert StepInfo._fields == (
        "lp", "acceptance_rate", "diverging", "energy", "energy_error", "max_energy_error",
        "n_steps", "step_size", "step_size_bar", "tree_depth", "reached_max_treedepth",
    )


def test_program_only_depends_on_its_arguments():
    program = build_nuts_program(_gaussian, 50)
    state = program.init(jnp.array([0.1, -0.4, 2.0]))
    key = jax.random.key(3)
    first = program.step(key, state, jnp.int32(7))
    second = program.step(key, state, jnp.int32(7))
    jax.tree.map(np.testing.assert_array_equal, first, second)
    np.testing.assert_array_equal(program.position(first[0]), first[0].nuts.position)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_tune": -1}, r"num_tune \(tune\) must be an integer >= 0"),
        ({"num_tune": 1.5}, r"num_tune \(tune\) must be an integer >= 0"),
        ({"num_tune": True}, r"num_tune \(tune\) must be an integer >= 0"),
        ({"target_accept": 0.0}, r"target_accept must be in \(0, 1\)"),
        ({"target_accept": 1.0}, r"target_accept must be in \(0, 1\)"),
        ({"target_accept": 1.2}, r"target_accept must be in \(0, 1\)"),
        ({"target_accept": float("nan")}, r"target_accept must be in \(0, 1\)"),
        ({"target_accept": "0.8"}, r"target_accept must be in \(0, 1\)"),
        ({"max_treedepth": 0}, "max_treedepth must be between 1 and 30"),
        ({"max_treedepth": 10.0}, "max_treedepth must be a positive integer"),
        ({"max_energy_error": -1.0}, "max_energy_error must be a positive number"),
    ],
)
def test_program_refuses_bad_settings(kwargs, match):
    kwargs = {"num_tune": 100} | kwargs
    with pytest.raises(ValueError, match=match):
        build_nuts_program(_gaussian, **kwargs)


def test_init_refuses_a_non_flat_position():
    with pytest.raises(ValueError, match="must be a 1-D array"):
        build_nuts_program(_gaussian, 10).init(jnp.ones((2, 3)))


def _conditionals(jaxpr):
    """Every ``cond`` equation in ``jaxpr`` and the jaxprs nested in it."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "cond":
            yield eqn
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            yield from _conditionals(sub)


def test_no_conditional_hands_back_the_low_rank_window():
    # An XLA conditional copies whole every buffer it returns: a low-rank window's
    # buffer of draws and gradients copied at each step cost more than the
    # gradients (radon, 89 dimensions). The window is fed by a flag, and its metric
    # is computed on the host (``end_window``).
    n_dim = 12
    program = build_nuts_program(lambda x: -0.5 * x @ x, 100, adaptation="low_rank")
    state = program.init(jnp.ones(n_dim))
    buffers = {state.mass_matrix_adaptation.draws.shape}
    assert buffers.isdisjoint(leaf.shape for leaf in jax.tree.leaves(state.metric))
    step = jax.make_jaxpr(program.step)(jax.random.key(0), state, jnp.int32(3))
    for eqn in _conditionals(step.jaxpr):
        assert buffers.isdisjoint(tuple(v.aval.shape) for v in eqn.outvars)


def test_end_window_keeps_the_metric_of_a_chain_whose_window_has_one_draw():
    # Stan's schedule allows a one-draw window, which has no variance.
    program = build_nuts_program(_gaussian, 60)
    states = jax.vmap(program.init)(jnp.zeros((2, 3)))
    fed = jax.vmap(lambda s, x: s._replace(mass_matrix_adaptation=jax.tree.map(
        jnp.asarray, welford_window(x))))(states, jnp.asarray([1, 30]))
    ended = program.end_window(jax.device_get(fed))
    np.testing.assert_array_equal(ended.metric.diagonal[0], np.asarray(states.metric.diagonal[0]))
    assert np.all(ended.metric.diagonal[1] != np.asarray(states.metric.diagonal[1]))
    np.testing.assert_array_equal(ended.mass_matrix_adaptation.count, 0.0)
    assert program.window_ends == tuple(end - 1 for _, end in nuts_schedule(60).windows)


def welford_window(count):
    """A diagonal window fed ``count`` draws ``0, 1, ..., count - 1`` on every coordinate."""
    from hiddenjax.samplers.mass_matrix import welford_variance

    adapt = welford_variance()

    def body(i, state):
        return adapt.update(state, jnp.full(3, i, jnp.float64), None)

    return jax.lax.fori_loop(0, count, body, adapt.init(3))
