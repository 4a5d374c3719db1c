"""NUTS: the tree against a recursive oracle, known answers, divergences, tree depth."""

import functools
import math

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hiddenjax.samplers import build_nuts_program
from hiddenjax.samplers.integrators import IntegratorState, new_integrator_state, velocity_verlet
from hiddenjax.samplers.nuts import (
    NUTSInfo,
    _trajectory_builder,
    _write_pair,
    build_kernel,
    init,
)
from tests.samplers.drivers import chains_first, run_program
from tests.samplers.nuts_reference import Point, ReferenceTree

K_SIGMA = 5.0  # Monte Carlo tolerance, in standard errors, fixed in advance


# --- densities ---------------------------------------------------------------

_PRECISION = np.array([[2.0, 1.8, 0.0], [1.8, 2.0, 0.3], [0.0, 0.3, 1.0]])


def _correlated(x):
    return -0.5 * x @ jnp.asarray(_PRECISION) @ x


def _banana(x):
    return -0.5 * (x[0] ** 2 / 4 + (x[1] - 0.5 * x[0] ** 2) ** 2) - 0.5 * jnp.sum(x[2:] ** 2)


def _wall(x):
    """A Gaussian with a steep wall at ``x0 ~ 1``: trajectories into it diverge."""
    return -0.5 * jnp.sum(x**2) - jnp.exp(8.0 * (x[0] - 1.0))


def _standard_normal(x):
    return -0.5 * jnp.sum(x**2)


# --- the tree against the recursive oracle -----------------------------------


def _reference_leapfrog(logdensity_fn, inverse_mass):
    """The package's leapfrog as ``Point -> Point``, so both trees see identical steps."""
    step = jax.jit(velocity_verlet(logdensity_fn))

    def leapfrog(point, step_size):
        s = IntegratorState(
            jnp.asarray(point.position), jnp.asarray(point.momentum),
            jnp.asarray(point.logdensity), jnp.asarray(point.grad),
        )
        s = step(s, step_size, jnp.asarray(inverse_mass))
        return Point(
            np.asarray(s.position), np.asarray(s.momentum), float(s.logdensity),
            np.asarray(s.logdensity_grad),
        )

    return leapfrog


def _starts(logdensity_fn, inverse_mass, n, seed):
    rng = np.random.default_rng(seed)
    dim = len(inverse_mass)
    q = rng.normal(size=(n, dim))
    p = rng.normal(size=(n, dim)) / np.sqrt(inverse_mass)
    return jax.vmap(lambda a, b: new_integrator_state(logdensity_fn, a, b))(
        jnp.asarray(q), jnp.asarray(p)
    )


def _point(starts, i):
    return Point(
        np.asarray(starts.position[i]), np.asarray(starts.momentum[i]),
        float(starts.logdensity[i]), np.asarray(starts.logdensity_grad[i]),
    )


# (density, inverse mass, step size, max tree depth)
ORACLE_CASES = [
    (_correlated, np.array([1.0, 0.5, 2.0]), 0.3, 7),
    (_correlated, np.array([1.0, 1.0, 1.0]), 0.9, 7),
    (_banana, np.ones(3), 0.4, 7),
    (_wall, np.ones(2), 0.2, 7),
    (_standard_normal, np.ones(2), 0.01, 4),  # too short to turn: stops at the depth cap
]


def _one_by_one(builder):
    """``builder`` over a leading axis of its first three arguments, unbatched (``lax.map``)."""

    def build(keys, starts, directions, eps, imm):
        return jax.lax.map(lambda args: builder(*args, eps, imm), (keys, starts, directions))

    return build


N_ORACLE_TREES = 40
"""Trees built per oracle case."""


@functools.cache
def _oracle_trees(case: int):
    """Starts, directions and, per tree, the oracle's tree with Stan's extra checks
    and without each of them. Shared by both ways of building, as it does not
    depend on them (the recursion in Python is most of the test's time)."""
    density, imm, eps, depth = ORACLE_CASES[case]
    starts = _starts(density, imm, N_ORACLE_TREES, seed=case)
    directions = np.random.default_rng(100 + case).choice([-1, 1], size=(N_ORACLE_TREES, depth))
    leapfrog = _reference_leapfrog(density, imm)
    trees = []
    for i in range(N_ORACLE_TREES):
        start = _point(starts, i)
        trees.append(tuple(
            ReferenceTree(leapfrog, imm, **flags).build(start, directions[i], eps, depth)
            for flags in ({}, {"subtree_extra": False}, {"merge_extra": False})
        ))
    return starts, directions, trees


@pytest.mark.parametrize("vectorized", [True, False], ids=["vectorized", "one_by_one"])
def test_tree_matches_recursive_oracle(vectorized):
    """Same leapfrog steps and directions give the same tree as PyMC's recursion.

    Checked: steps, depth, why it stopped, acceptance statistic and largest
    energy error. The cases together must exercise every way a tree ends and
    both kinds of Stan's extra U-turn checks. Trees are built vectorised and one
    at a time: the U-turn checkpoints are written differently in each.
    """
    n = N_ORACLE_TREES
    endings = {"turning": 0, "diverging": 0, "max depth": 0}
    subtree_extra_mattered = merge_extra_mattered = 0
    for case, (density, imm, eps, depth) in enumerate(ORACLE_CASES):
        starts, directions, trees = _oracle_trees(case)
        builder = _trajectory_builder(density, depth, 1000.0)
        build = (jax.vmap(builder, (0, 0, 0, None, None)) if vectorized
                 else _one_by_one(builder))
        keys = jax.random.split(jax.random.key(case), n)
        got = jax.jit(build)(keys, starts, jnp.asarray(directions), eps, jnp.asarray(imm))
        for i, (want, no_subtree_extra, no_merge_extra) in enumerate(trees):
            assert int(got.stats.n_steps[i]) == want.n_steps
            assert int(got.depth[i]) == want.depth
            assert bool(got.diverging[i]) == want.diverging
            assert bool(got.turning[i]) == want.turning
            accept = math.exp(float(got.stats.log_accept_sum[i]))
            assert accept == pytest.approx(want.accept_sum, rel=1e-10, abs=1e-12)
            assert float(got.stats.max_energy_error[i]) == pytest.approx(
                want.max_energy_error, rel=1e-10, abs=1e-12
            )
            ending = "diverging" if want.diverging else "turning" if want.turning else "max depth"
            endings[ending] += 1
            subtree_extra_mattered += ((no_subtree_extra.n_steps, no_subtree_extra.depth)
                                       != (want.n_steps, want.depth))
            merge_extra_mattered += ((no_merge_extra.n_steps, no_merge_extra.depth)
                                     != (want.n_steps, want.depth))
    assert all(count > 0 for count in endings.values()), endings
    assert subtree_extra_mattered > 0 and merge_extra_mattered > 0


@pytest.mark.parametrize("case", [0, 2])
def test_proposal_distribution_matches_oracle(case):
    """Empirical proposal frequencies over 20000 keys match the oracle's exact
    probabilities (multinomial in subtrees, biased progressive at merges),
    each within K_SIGMA binomial standard errors.
    """
    density, imm, eps, depth = ORACLE_CASES[case]
    starts = _starts(density, imm, 40, seed=case)
    directions = np.random.default_rng(100 + case).choice([-1, 1], size=(40, depth))
    leapfrog = _reference_leapfrog(density, imm)
    # The first start whose trajectory merged at least three subtrees (8+ points).
    for i in range(40):
        want = ReferenceTree(leapfrog, imm).build(_point(starts, i), directions[i], eps, depth)
        if len(want.leaves) >= 8:
            break
    else:
        pytest.fail("no long enough trajectory among the starts")
    start = jax.tree.map(lambda a: a[i], starts)
    n_keys = 20000
    build = _trajectory_builder(density, depth, 1000.0)

    def proposal(key):
        return build(key, start, jnp.asarray(directions[i]), eps, jnp.asarray(imm)).proposal

    positions = jax.jit(jax.vmap(proposal))(jax.random.split(jax.random.key(11), n_keys)).position
    leaf_positions = np.stack([q for q, _ in want.leaves])
    probs = np.array([p for _, p in want.leaves])
    distance = np.linalg.norm(np.asarray(positions)[:, None] - leaf_positions[None], axis=-1)
    assert np.all(distance.min(axis=1) < 1e-12), "a proposal is not a point of the trajectory"
    freq = np.bincount(distance.argmin(axis=1), minlength=len(probs)) / n_keys
    np.testing.assert_array_less(
        np.abs(freq - probs), K_SIGMA * np.sqrt(probs * (1 - probs) / n_keys) + 1e-12
    )


# --- known answers -----------------------------------------------------------

_MVN_MEAN = np.array([1.0, -2.0, 0.5, 3.0, 0.0, -1.0])


def _mvn_covariance():
    rng = np.random.default_rng(20240601)
    a = rng.normal(size=(6, 6))
    c = a @ a.T + 0.5 * np.eye(6)
    corr = c / np.sqrt(np.outer(np.diag(c), np.diag(c)))
    scales = np.array([0.5, 1.0, 2.0, 5.0, 1.0, 0.2])
    return corr * np.outer(scales, scales)


_MVN_COV = _mvn_covariance()


def _mvn_logdensity(x):
    r = x - _MVN_MEAN
    return -0.5 * r @ jnp.asarray(np.linalg.inv(_MVN_COV)) @ r


@pytest.fixture(scope="module")
def mvn_run():
    program = build_nuts_program(_mvn_logdensity, 1000)
    starts = np.random.default_rng(3).normal(size=(4, 6))
    return run_program(program, jax.random.key(2024), starts, 1000, 1000)


def _within_mc_error(values, truth):
    """``|mean - truth| < K_SIGMA * sd / sqrt(ESS)`` for a ``(chains, draws)`` array.

    ESS is ArviZ's ``method="mean"`` estimate, the one for the error of a mean.
    """
    ess = float(az.ess(values, method="mean"))
    error = abs(values.mean() - truth)
    bound = K_SIGMA * values.std() / math.sqrt(ess)
    assert error < bound, f"mean {values.mean():.5g} vs {truth:.5g}: {error:.3g} >= {bound:.3g}"


def test_mvn_mean(mvn_run):
    draws = chains_first(mvn_run.states.nuts.position)
    for i in range(6):
        _within_mc_error(draws[..., i], _MVN_MEAN[i])


def test_mvn_covariance(mvn_run):
    """Each covariance entry is the mean of ``(x_i - mu_i)(x_j - mu_j)``, with the true mean."""
    centred = chains_first(mvn_run.states.nuts.position) - _MVN_MEAN
    for i in range(6):
        for j in range(i, 6):
            _within_mc_error(centred[..., i] * centred[..., j], _MVN_COV[i, j])


def test_mvn_statistics_are_consistent(mvn_run):
    info = mvn_run.info
    draws = np.asarray(mvn_run.states.nuts.position)
    lp = jax.vmap(jax.vmap(_mvn_logdensity))(jnp.asarray(draws))
    np.testing.assert_allclose(info.lp, lp, rtol=1e-12, atol=1e-12)
    depth, n_steps = np.asarray(info.tree_depth), np.asarray(info.n_steps)
    # Every doubling but the last is complete: 2**(d-1) <= n_steps <= 2**d - 1.
    assert np.all((2 ** (depth - 1) <= n_steps) & (n_steps <= 2**depth - 1))
    assert not np.any(info.diverging)
    assert np.all((0 <= info.acceptance_rate) & (info.acceptance_rate <= 1))
    assert np.all(np.abs(info.max_energy_error) >= np.abs(info.energy_error) - 1e-12)
    np.testing.assert_array_equal(info.step_size, info.step_size_bar)
    used = np.broadcast_to(mvn_run.final.step_size, (1000, 4))
    np.testing.assert_array_equal(info.step_size, used)


# --- reproducibility ---------------------------------------------------------


def _kernel_draws(key, n_steps=50, position=None):
    kernel = build_kernel(_banana)
    state = init(jnp.array([0.5, 0.2, -0.3]) if position is None else position, _banana)

    def body(s, i):
        s, info = kernel(jax.random.fold_in(key, i), s, 0.4, jnp.ones(3))
        return s, (s.position, info)

    return jax.jit(lambda s: jax.lax.scan(body, s, jnp.arange(n_steps)))(state)[1]


def test_checkpoint_pairs_are_written_alike_one_by_one_and_vectorised():
    rng = np.random.default_rng(0)
    matrices, pairs = rng.normal(size=(3, 8, 5)), rng.normal(size=(3, 2, 5))
    slots = np.array([0, 3, 1], dtype=np.int32)
    expected = matrices.copy()
    for b, slot in enumerate(slots):
        expected[b, 2 * slot : 2 * slot + 2] = pairs[b]
    one_by_one = [np.asarray(_write_pair(m, p, s)) for m, p, s in zip(matrices, pairs, slots)]
    np.testing.assert_array_equal(np.stack(one_by_one), expected)
    np.testing.assert_array_equal(jax.vmap(_write_pair)(matrices, pairs, slots), expected)
    # Only some arguments batched: one matrix and slot shared by every pair.
    shared = jax.vmap(_write_pair, (None, 0, None))(matrices[0], pairs, slots[1])
    for b in range(3):
        want = matrices[0].copy()
        want[2 * slots[1] : 2 * slots[1] + 2] = pairs[b]
        np.testing.assert_array_equal(shared[b], want)


def test_same_key_same_draws():
    first, second = _kernel_draws(jax.random.key(5)), _kernel_draws(jax.random.key(5))
    jax.tree.map(np.testing.assert_array_equal, first, second)
    other = _kernel_draws(jax.random.key(6))
    assert not np.array_equal(first[0], other[0])


def test_chains_do_not_interact():
    """Changing one chain's start leaves the other chains' draws bit for bit unchanged."""
    program = build_nuts_program(_banana, 30)
    starts = np.random.default_rng(0).normal(size=(3, 3))
    moved = starts.copy()
    moved[0] += 1.0
    first = run_program(program, jax.random.key(9), starts, 30, 20).states.nuts.position
    second = run_program(program, jax.random.key(9), moved, 30, 20).states.nuts.position
    np.testing.assert_array_equal(np.asarray(first)[:, 1:], np.asarray(second)[:, 1:])
    assert not np.array_equal(np.asarray(first)[:, 0], np.asarray(second)[:, 0])


# --- divergences ---------------------------------------------------------------


def test_divergence_on_badly_scaled_density():
    """A unit step on a coordinate with sd 1e-3 blows the energy up at the first step."""

    def narrow(x):
        return -0.5 * (x[0] ** 2 + (x[1] / 1e-3) ** 2)

    kernel = jax.jit(build_kernel(narrow))
    state = init(jnp.array([0.3, 1e-3]), narrow)
    new, info = kernel(jax.random.key(0), state, 1.0, jnp.ones(2))
    assert bool(info.diverging)
    assert int(info.n_steps) == 1 and int(info.tree_depth) == 1
    assert not bool(info.reached_max_treedepth)
    assert float(info.max_energy_error) >= 1000.0
    assert float(info.acceptance_rate) < 1e-100
    assert float(info.energy_error) == 0.0  # the start is kept
    np.testing.assert_array_equal(new.position, state.position)


def test_nan_log_density_is_a_divergence():
    def cliff(x):
        return jnp.where(x[0] > 0.5, jnp.nan, -0.5 * jnp.sum(x**2))

    kernel = jax.jit(build_kernel(cliff))
    state = init(jnp.array([0.45, 0.0]), cliff)
    infos = jax.vmap(lambda k: kernel(k, state, 0.5, jnp.ones(2))[1])(
        jax.random.split(jax.random.key(1), 64)
    )
    diverged = np.asarray(infos.diverging)
    assert diverged.any()
    assert np.all(np.isinf(np.asarray(infos.max_energy_error)[diverged]))


def test_funnel_divergences_are_flagged():
    """Neal's funnel has divergences; a transition diverges exactly when its
    largest energy error reaches ``max_energy_error``."""

    def funnel(x):
        v, z = x[0], x[1:]
        return -0.5 * v**2 / 9.0 - 0.5 * jnp.sum(z**2) * jnp.exp(-v) - 0.5 * z.size * v

    program = build_nuts_program(funnel, 200)
    starts = np.random.default_rng(1).normal(size=(4, 10))
    run = run_program(program, jax.random.key(3), starts, 200, 200)
    diverging = np.asarray(run.info.diverging)
    assert diverging.sum() > 0
    np.testing.assert_array_equal(diverging, np.asarray(run.info.max_energy_error) >= 1000.0)


# --- tree depth ------------------------------------------------------------------


def test_tree_depth_is_capped():
    kernel = jax.jit(build_kernel(_standard_normal, max_treedepth=4))
    state = init(jnp.array([0.3, -0.2, 0.1]), _standard_normal)
    _, info = jax.vmap(lambda k: kernel(k, state, 1e-3, jnp.ones(3)))(
        jax.random.split(jax.random.key(2), 16)
    )
    np.testing.assert_array_equal(info.tree_depth, 4)
    np.testing.assert_array_equal(info.n_steps, 15)
    assert np.all(info.reached_max_treedepth)
    assert not np.any(info.diverging)


def test_turning_trees_stop_before_the_cap():
    """On a unit normal a unit-mass orbit lasts 2 pi: with step 0.1 a U-turn
    comes within 32 steps (depth <= 6), far below the cap of 10."""
    kernel = jax.jit(build_kernel(_standard_normal))
    state = init(jnp.array([0.3, -0.2, 0.1]), _standard_normal)
    _, info = jax.vmap(lambda k: kernel(k, state, 0.1, jnp.ones(3)))(
        jax.random.split(jax.random.key(3), 64)
    )
    assert np.all(np.asarray(info.tree_depth) <= 6)
    assert not np.any(info.reached_max_treedepth)


def test_info_fields_follow_pymc():
    assert NUTSInfo._fields == (
        "acceptance_rate", "diverging", "energy", "energy_error", "max_energy_error",
        "n_steps", "tree_depth", "reached_max_treedepth",
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_treedepth": 0}, "max_treedepth must be between 1 and 30"),
        ({"max_treedepth": 31}, "max_treedepth must be between 1 and 30"),
        ({"max_treedepth": 2.0}, "max_treedepth must be a positive integer"),
        ({"max_treedepth": True}, "max_treedepth must be a positive integer"),
        ({"max_energy_error": 0.0}, "max_energy_error must be a positive number"),
        ({"max_energy_error": float("nan")}, "max_energy_error must be a positive number"),
        ({"max_energy_error": "1000"}, "max_energy_error must be a positive number"),
    ],
)
def test_kernel_refuses_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_kernel(_standard_normal, **kwargs)
