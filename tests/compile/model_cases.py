"""Model-level coverage: every distribution in a model, and PyMC's model features.

Each case is a small ``pm.Model``. Checks, all against PyTensor's C backend:

* ``logp`` / ``grad``: hiddenjax's compiled joint log-density (Jacobians
  included) and its ``jax.grad`` equal ``model.compile_logp()`` and
  ``model.compile_dlogp()`` at a random unconstrained point, to 1e-6 relative.
* ``draws``: ``hiddenjax.sample_prior_predictive`` and
  ``pymc.sample_prior_predictive`` agree in distribution. Each output
  coordinate (at most ``MAX_COORDS`` per variable) gets a two-sample KS test on
  ``DRAWS`` draws; the case passes when the smallest p-value times the number of
  tests (Bonferroni) is above ``ALPHA``. These thresholds are fixed here, before
  any run. A case the C backend cannot draw is marked ``n/a``.

Cases with a parameter value that must give ``-inf`` are covered at the
distribution level (:mod:`tests.compile.coverage`).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from tests.compile.oracle import finite_difference_grad

DRAWS = 1000
ALPHA = 1e-3
MAX_COORDS = 6
RTOL = 1e-6
ATOL = 1e-9
DIFFERENCES_ATOL = 1e-8
"""Against central differences (no symbolic gradient in C): their own error is about 1e-10
of the function's scale (``tests.compile.oracle.finite_difference_grad``)."""


@dataclass
class ModelResult:
    """Outcome of one model case: '' for a pass, else the first line of the failure."""

    name: str
    logp: str = "not run"
    grad: str = "not run"
    draws: str = "not run"
    seconds: float = 0.0
    detail: str = field(default="", repr=False)


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"


def random_point(model: pm.Model, layout, seed: int = 0) -> np.ndarray:
    """The model's initial point, jittered by N(0, 0.3) on the unconstrained scale."""
    start = layout.ravel(model.initial_point(random_seed=seed))
    rng = np.random.default_rng(seed)
    return start + rng.normal(0.0, 0.3, size=start.shape)


def check_logp_and_grad(model: pm.Model, result: ModelResult) -> None:
    """Fill ``result.logp`` and ``result.grad`` by comparison with the C backend."""
    import jax
    import jax.numpy as jnp

    from hiddenjax.compile.model_functions import compile_model
    from hiddenjax.model.graph import extract_model_graph

    graph = extract_model_graph(model)
    compiled = compile_model(graph)
    c_logp = model.compile_logp(jacobian=True)
    theta = random_point(model, graph.layout)
    point = {**model.initial_point(random_seed=0), **graph.layout.unravel(theta)}
    if not np.isfinite(c_logp(point)):
        # Jitter left the support (a Wishart value that is no longer symmetric):
        # compare at the initial point, which lies in it.
        theta = graph.layout.ravel(model.initial_point(random_seed=0))
        point = {**model.initial_point(random_seed=0), **graph.layout.unravel(theta)}
    data = tuple(jnp.asarray(v) for v in graph.data_values)
    want = c_logp(point)
    got = jax.jit(compiled.logdensity)(jnp.asarray(theta), data)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg="log-density")
    result.logp = ""
    if graph.layout.size == 0:
        result.grad = "n/a"
        return
    got_grad = jax.jit(jax.grad(compiled.logdensity))(jnp.asarray(theta), data)
    try:
        want_grad = model.compile_dlogp(jacobian=True)(point)
        atol = ATOL
    except NotImplementedError:
        # PyTensor has no symbolic gradient (PolyaGamma's logp Op, for one):
        # central differences of the C log-density, with their own error.
        def logp_at(flat):
            return c_logp({**point, **graph.layout.unravel(flat)})

        want_grad = finite_difference_grad(logp_at, [np.asarray(theta)], 0)
        atol = DIFFERENCES_ATOL
    np.testing.assert_allclose(got_grad, want_grad, rtol=RTOL, atol=atol, err_msg="gradient")
    result.grad = ""


def _coordinates(draws: np.ndarray) -> np.ndarray:
    """``(draws, coordinate)`` view of at most ``MAX_COORDS`` coordinates, evenly spread."""
    flat = np.asarray(draws, dtype="float64").reshape(draws.shape[0], -1)
    keep = np.unique(np.linspace(0, flat.shape[1] - 1, MAX_COORDS).astype(int))
    return flat[:, keep] if flat.shape[1] else flat


def ks_min_pvalue(ours: dict, theirs: dict) -> tuple[float, int]:
    """Smallest two-sample KS p-value over the shared variables' coordinates, and the count."""
    from scipy import stats

    pvalues = []
    for name, want in theirs.items():
        got = np.asarray(ours[name])
        want = np.asarray(want)
        if got.shape != want.shape:
            raise AssertionError(f"{name}: draws of shape {got.shape}, C backend {want.shape}")
        for a, b in zip(_coordinates(got).T, _coordinates(want).T, strict=True):
            pvalues.append(stats.ks_2samp(a, b).pvalue)
    return (min(pvalues) if pvalues else 1.0), len(pvalues)


def check_draws(model: pm.Model, result: ModelResult) -> None:
    """Fill ``result.draws``: prior predictive draws against the C backend's."""
    import hiddenjax

    try:
        theirs = pm.sample_prior_predictive(draws=DRAWS, model=model, random_seed=2,
                                            return_inferencedata=False)
    except Exception as err:  # noqa: BLE001  (the C backend's own limits are recorded)
        result.draws = f"n/a: C backend cannot draw ({_first_line(err)})"
        return
    ours = hiddenjax.sample_prior_predictive(draws=DRAWS, model=model, random_seed=1,
                                             return_inferencedata=False)
    p_min, count = ks_min_pvalue(ours, theirs)
    result.draws = "" if p_min * count > ALPHA else f"KS p = {p_min:.2g} over {count} tests"


def check_refused(model: pm.Model, result: ModelResult, reason: str) -> None:
    """Fill ``result.logp``/``grad`` for a model NUTS cannot sample: hiddenjax must refuse it clearly."""
    from hiddenjax.model import ModelNotSupportedError, extract_model_graph

    try:
        extract_model_graph(model)
    except ModelNotSupportedError:
        result.logp = result.grad = f"n/a (refused, as it must be): {reason}"
        return
    result.logp = result.grad = "accepted a model whose log-density is not fixed"


def check_model(name: str, build: Callable[[], pm.Model], draws: bool = True) -> ModelResult:
    """Log-density, gradient and (with ``draws``) forward-draw checks of one model case."""
    result, start = ModelResult(name), time.perf_counter()
    model = None
    try:
        model = build()
        if name in NO_FIXED_LOGP:
            check_refused(model, result, NO_FIXED_LOGP[name])
        else:
            check_logp_and_grad(model, result)
    except Exception as err:  # noqa: BLE001  (the table records any failure)
        for key in ("logp", "grad"):
            if getattr(result, key) == "not run":
                setattr(result, key, _first_line(err))
                break
        result.detail = traceback.format_exc()
    if draws and model is not None:
        try:
            check_draws(model, result)
        except Exception as err:  # noqa: BLE001
            result.draws = _first_line(err)
            result.detail += traceback.format_exc()
    elif not draws:
        result.draws = "n/a"
    result.seconds = time.perf_counter() - start
    return result


def model_passed(r: ModelResult) -> bool:
    """Whether every check of ``r`` passed or did not apply."""
    return all(t == "" or t.startswith("n/a") for t in (r.logp, r.grad, r.draws))


# --- distributions in models ------------------------------------------------------------

def _dist_kwargs(case) -> dict:
    extra = {} if case.size is None else {"size": case.size}
    return {**case.valid, **extra}


def observed_case(dist_name: str) -> Callable[[], pm.Model]:
    """A model with ``dist_name`` observed at a point of its support, parameters fixed."""
    from tests.compile.coverage import PARAMS, _point

    def build():
        case = PARAMS[dist_name]
        value = _point(dist_name, case)
        with pm.Model() as model:
            getattr(pm, dist_name)("x", **_dist_kwargs(case), observed=value)
        return model

    return build


def free_case(dist_name: str) -> Callable[[], pm.Model]:
    """A model with ``dist_name`` as a free variable, parameters fixed."""
    from tests.compile.coverage import PARAMS

    def build():
        case = PARAMS[dist_name]
        with pm.Model() as model:
            getattr(pm, dist_name)("x", **_dist_kwargs(case))
        return model

    return build


def is_continuous(dist_name: str) -> bool:
    """Whether ``dist_name`` draws floats (so it can be a free variable for NUTS)."""
    from tests.compile.coverage import PARAMS, _dist

    case = PARAMS[dist_name]
    return _dist(dist_name, case.valid, case).dtype.startswith("float")


# --- model features -----------------------------------------------------------------------

_RNG = np.random.default_rng(42)
_X = np.linspace(0.0, 5.0, 12)
_Y = np.sin(_X) + _RNG.normal(0.0, 0.2, size=12)


def mixture() -> pm.Model:
    with pm.Model() as model:
        w = pm.Dirichlet("w", a=np.ones(2))
        mu = pm.Normal("mu", np.array([-1.0, 1.0]), 1.0)
        comps = [pm.Normal.dist(mu[0], 0.5), pm.Normal.dist(mu[1], 0.8)]
        pm.Mixture("y", w=w, comp_dists=comps, observed=_Y)
    return model


def normal_mixture() -> pm.Model:
    with pm.Model() as model:
        w = pm.Dirichlet("w", a=np.ones(3))
        mu = pm.Normal("mu", 0.0, 2.0, shape=3)
        sigma = pm.HalfNormal("sigma", 1.0, shape=3)
        pm.NormalMixture("y", w=w, mu=mu, sigma=sigma, observed=_Y)
    return model


def mixture_free() -> pm.Model:
    with pm.Model() as model:
        pm.Mixture("x", w=np.array([0.4, 0.6]),
                   comp_dists=[pm.Normal.dist(-1.0, 0.5), pm.Normal.dist(1.5, 0.7)], size=3)
    return model


def censored() -> pm.Model:
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 1.0)
        sigma = pm.HalfNormal("sigma", 1.0)
        pm.Censored("y", pm.Normal.dist(mu, sigma), lower=-0.5, upper=0.8,
                    observed=np.clip(_Y, -0.5, 0.8))
    return model


def truncated_free() -> pm.Model:
    with pm.Model() as model:
        pm.Truncated("x", pm.Normal.dist(0.3, 1.2), lower=-1.0, upper=2.0, size=3)
        pm.Truncated("g", pm.Gamma.dist(2.0, 1.0), upper=3.0)
    return model


def truncated_observed() -> pm.Model:
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 1.0)
        pm.Truncated("y", pm.Normal.dist(mu, 1.0), lower=-1.5, observed=np.clip(_Y, -1.5, None))
        lam = pm.Exponential("lam", 1.0)
        pm.Truncated("k", pm.Poisson.dist(lam), upper=5, observed=np.array([0, 1, 3, 5]))
    return model


def custom_dist_dist() -> pm.Model:
    def shifted_exponential(lam, shift, size):
        return pm.Exponential.dist(lam, size=size) + shift

    with pm.Model() as model:
        lam = pm.HalfNormal("lam", 1.0)
        pm.CustomDist("x", lam, 0.5, dist=shifted_exponential, size=4)
        pm.CustomDist("y", lam, 0.5, dist=shifted_exponential, observed=np.array([0.7, 1.5]))
    return model


def custom_dist_scan() -> pm.Model:
    from pytensor import scan

    from pymc.pytensorf import collect_default_updates

    def ar1(rho, sigma, size):
        def step(prev, rho, sigma):
            nxt = pm.Normal.dist(rho * prev, sigma)
            return nxt, collect_default_updates([nxt])

        start = pt.as_tensor(np.float64(0.0))
        steps, _ = scan(step, outputs_info=[start], non_sequences=[rho, sigma], n_steps=8,
                        strict=True)
        return steps

    with pm.Model() as model:
        rho = pm.Uniform("rho", -0.9, 0.9)
        sigma = pm.HalfNormal("sigma", 1.0)
        pm.CustomDist("y", rho, sigma, dist=ar1, observed=_Y[:8])
    return model


def custom_dist_random() -> pm.Model:
    def logp(value, mu):
        return -0.5 * (value - mu) ** 2 - 0.5 * np.log(2 * np.pi)

    def random(mu, rng=None, size=None):
        return rng.normal(mu, 1.0, size=size)

    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 1.0)
        pm.CustomDist("y", mu, logp=logp, random=random, observed=_Y)
    return model


def simulator() -> pm.Model:
    def simulate(rng, mu, size=None):
        return rng.normal(mu, 1.0, size=size)

    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 1.0)
        pm.Simulator("s", simulate, mu, epsilon=1.0, observed=_Y)
    return model


def zero_sum_normal() -> pm.Model:
    with pm.Model(coords={"g": range(4), "h": range(3)}) as model:
        sigma = pm.HalfNormal("sigma", 1.0)
        pm.ZeroSumNormal("z", sigma=sigma, dims=("g", "h"), n_zerosum_axes=2)
    return model


def lkj_cholesky_cov() -> pm.Model:
    with pm.Model() as model:
        chol, _, _ = pm.LKJCholeskyCov("chol", n=3, eta=2.0,
                                       sd_dist=pm.Exponential.dist(1.0, shape=3))
        pm.MvNormal("y", mu=np.zeros(3), chol=chol, observed=_RNG.normal(size=(5, 3)))
    return model


def hsgp() -> pm.Model:
    with pm.Model() as model:
        ell = pm.InverseGamma("ell", 5.0, 5.0)
        eta = pm.HalfNormal("eta", 1.0)
        gp = pm.gp.HSGP(m=[10], c=1.5, cov_func=eta**2 * pm.gp.cov.Matern52(1, ls=ell))
        f = gp.prior("f", X=_X[:, None])
        pm.Normal("y", f, 0.3, observed=_Y)
    return model


def hsgp_periodic() -> pm.Model:
    with pm.Model() as model:
        ell = pm.InverseGamma("ell", 5.0, 5.0)
        cov = pm.gp.cov.Periodic(1, period=3.0, ls=ell)
        gp = pm.gp.HSGPPeriodic(m=8, scale=1.0, cov_func=cov)
        f = gp.prior("f", X=_X[:, None])
        pm.Normal("y", f, 0.3, observed=_Y)
    return model


def gp_latent() -> pm.Model:
    with pm.Model() as model:
        ell = pm.Gamma("ell", 2.0, 1.0)
        gp = pm.gp.Latent(cov_func=pm.gp.cov.ExpQuad(1, ls=ell))
        f = gp.prior("f", X=_X[:, None])
        pm.Normal("y", f, 0.3, observed=_Y)
    return model


def gp_marginal() -> pm.Model:
    with pm.Model() as model:
        ell = pm.Gamma("ell", 2.0, 1.0)
        sigma = pm.HalfNormal("sigma", 0.5)
        gp = pm.gp.Marginal(cov_func=pm.gp.cov.Matern32(1, ls=ell))
        gp.marginal_likelihood("y", X=_X[:, None], y=_Y, sigma=sigma)
    return model


def gp_marginal_sparse() -> pm.Model:
    with pm.Model() as model:
        ell = pm.Gamma("ell", 2.0, 1.0)
        sigma = pm.HalfNormal("sigma", 0.5)
        gp = pm.gp.MarginalApprox(cov_func=pm.gp.cov.ExpQuad(1, ls=ell), approx="FITC")
        gp.marginal_likelihood("y", X=_X[:, None], Xu=_X[::3, None], y=_Y, sigma=sigma)
    return model


def gp_student_t() -> pm.Model:
    with pm.Model() as model:
        ell = pm.Gamma("ell", 2.0, 1.0)
        tp = pm.gp.TP(scale_func=pm.gp.cov.ExpQuad(1, ls=ell), nu=5.0)
        f = tp.prior("f", X=_X[:, None])
        pm.Normal("y", f, 0.3, observed=_Y)
    return model


def gp_latent_kron() -> pm.Model:
    xs = [np.linspace(0, 1, 3)[:, None], np.linspace(0, 2, 4)[:, None]]
    with pm.Model() as model:
        ell = pm.Gamma("ell", 2.0, 1.0)
        covs = [pm.gp.cov.ExpQuad(1, ls=ell), pm.gp.cov.Matern52(1, ls=0.7)]
        gp = pm.gp.LatentKron(cov_funcs=covs)
        f = gp.prior("f", Xs=xs)
        pm.Normal("y", f, 0.3, observed=_Y)
    return model


def gp_marginal_kron() -> pm.Model:
    xs = [np.linspace(0, 1, 3)[:, None], np.linspace(0, 2, 4)[:, None]]
    with pm.Model() as model:
        ell = pm.Gamma("ell", 2.0, 1.0)
        sigma = pm.HalfNormal("sigma", 0.5)
        covs = [pm.gp.cov.ExpQuad(1, ls=ell), pm.gp.cov.Matern52(1, ls=0.7)]
        gp = pm.gp.MarginalKron(cov_funcs=covs)
        gp.marginal_likelihood("y", Xs=xs, y=_Y, sigma=sigma)
    return model


def potential_and_deterministic() -> pm.Model:
    with pm.Model() as model:
        a = pm.Normal("a", 0.0, 1.0)
        b = pm.HalfNormal("b", 1.0)
        pm.Deterministic("ab", a * b)
        pm.Potential("pull", -((a - 0.5) ** 2))
        pm.Normal("y", a, b, observed=_Y)
    return model


def data_set_data() -> pm.Model:
    with pm.Model() as model:
        x = pm.Data("x", _X)
        beta = pm.Normal("beta", 0.0, 1.0)
        sigma = pm.HalfNormal("sigma", 1.0)
        pm.Normal("y", beta * x, sigma, observed=_Y, shape=x.shape)
    # The checks run on the values set here, not the ones the model was built with.
    pm.set_data({"x": _X[::-1] * 0.5}, model=model)
    return model


def minibatch() -> pm.Model:
    data = np.column_stack([_X, _Y])
    batch = pm.Minibatch(data, batch_size=4)
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 1.0, shape=2)
        pm.Normal("y", mu, 1.0, observed=batch, total_size=data.shape)
    return model


# Cases whose log-density is not a fixed function of the point, with the reason.
NO_FIXED_LOGP = {
    "Simulator": "PyMC's Simulator log-density simulates new data at every evaluation "
                 "(for pm.sample_smc only); there is no fixed value to compare",
    "Minibatch": "a pm.Minibatch log-density takes a new random batch at every evaluation "
                 "(for stochastic ADVI); there is no fixed value to compare",
}

FEATURES: dict[str, Callable[[], pm.Model]] = {
    "Mixture": mixture,
    "Mixture (free)": mixture_free,
    "NormalMixture": normal_mixture,
    "Censored(Normal)": censored,
    "Truncated (free)": truncated_free,
    "Truncated (observed)": truncated_observed,
    "CustomDist dist=": custom_dist_dist,
    "CustomDist with scan": custom_dist_scan,
    "CustomDist numpy random": custom_dist_random,
    "Simulator": simulator,
    "ZeroSumNormal": zero_sum_normal,
    "LKJCholeskyCov": lkj_cholesky_cov,
    "HSGP": hsgp,
    "HSGPPeriodic": hsgp_periodic,
    "gp.Latent": gp_latent,
    "gp.Marginal": gp_marginal,
    "gp.MarginalApprox": gp_marginal_sparse,
    "gp.TP": gp_student_t,
    "gp.LatentKron": gp_latent_kron,
    "gp.MarginalKron": gp_marginal_kron,
    "Potential + Deterministic": potential_and_deterministic,
    "pm.Data + set_data": data_set_data,
    "Minibatch": minibatch,
}


def model_cases() -> dict[str, Callable[[], pm.Model]]:
    """Every model case: each distribution observed and, if continuous, free; then features."""
    from tests.compile.coverage import PARAMS, distribution_names

    cases = {}
    for name in distribution_names():
        if name not in PARAMS or name == "PolyaGamma" and not _has("polyagamma"):
            continue
        cases[f"{name} (observed)"] = observed_case(name)
        if is_continuous(name):
            cases[f"{name} (free)"] = free_case(name)
    return {**cases, **FEATURES}


def _has(package: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(package) is not None


def _mark(text: str) -> str:
    if text.startswith("n/a"):
        return "n/a"
    return {"": "ok", "not run": "-"}.get(text, "FAIL")


def print_model_table(names: list[str] | None = None) -> list[ModelResult]:
    """Run :func:`check_model` for each case and print one row per case, then totals."""
    import warnings

    cases = model_cases()
    names = list(cases) if names is None else names
    results = []
    print(f"{'model case':<36}{'logp':>6}{'grad':>6}{'draws':>7}{'s':>7}  failure")
    for name in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = check_model(name, cases[name])
        results.append(r)
        why = next((t for t in (r.logp, r.grad, r.draws) if t and t != "not run"
                    and not t.startswith("n/a")), "")
        print(f"{name:<36}{_mark(r.logp):>6}{_mark(r.grad):>6}{_mark(r.draws):>7}"
              f"{r.seconds:>7.1f}  {why[:90]}", flush=True)
    dens = [r for r in results if r.logp == "" and r.grad in ("", "n/a")]
    refused = [r for r in results if r.logp.startswith("n/a (refused")]
    can_draw = [r for r in results if not r.draws.startswith("n/a")]
    drawn = [r for r in can_draw if r.draws == ""]
    print(f"\n{len(dens)}/{len(results) - len(refused)} model cases with a fixed log-density "
          f"pass log-density + gradient ({len(refused)} without one refused clearly, as they "
          "must be); "
          f"{len(drawn)}/{len(can_draw)} forward-draw cases the C backend can sample agree "
          f"in distribution (KS, Bonferroni p > {ALPHA} over {DRAWS} draws)")
    return results
