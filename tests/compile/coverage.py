"""Coverage of PyMC's distributions by hiddenjax's lowering, against PyTensor's C backend.

Distributions are enumerated from ``pymc.distributions.__all__``; each needs an
entry in ``PARAMS`` (valid parameters, and parameters that must give ``-inf``).
A distribution PyMC adds shows up as a failing case until it gets one.

Print the tables with::

    .venv/bin/python -m tests.compile.coverage          # distributions, then model cases
    .venv/bin/python -m tests.compile.coverage Normal Wald            # these distributions
    .venv/bin/python -m tests.compile.coverage --models "HSGP" "Normal (free)"

The second table (:mod:`tests.compile.model_cases`) puts every distribution in a
model, observed and, where continuous, free, adds PyMC's model features, and
also compares prior predictive draws with the C backend's.
"""

from __future__ import annotations

import importlib.util
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field

import numpy as np
import pymc as pm
import pytensor.tensor as pt

NOT_DISTRIBUTIONS = {"Continuous", "Discrete", "Distribution", "SymbolicRandomVariable"}
# Need a user function or a base distribution: covered by model-level cases instead.
NEEDS_A_FUNCTION = {"CustomDist", "DensityDist", "Simulator", "Censored", "Truncated", "Mixture"}

_COV = np.array([[1.0, 0.3], [0.3, 0.8]])
_W = np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], dtype="int64")


@dataclass(frozen=True)
class Case:
    """Parameters of one distribution for the coverage sweep."""

    valid: dict
    """Keyword arguments of ``.dist`` giving a valid distribution."""
    invalid: dict | None = None
    """Overrides of ``valid`` that make the log-density ``-inf``."""
    const: tuple[str, ...] = ()
    """Float parameters kept as constants (not inputs) because the distribution needs them so."""
    value: object = None
    """A point in the support, when the C backend cannot draw one."""
    size: int | None = 3
    """``size`` passed to ``.dist`` (None for distributions that take none)."""
    needs: str | None = None
    """A package the C backend needs to evaluate this distribution at all."""
    differences: bool = False
    """PyTensor defines no gradient: compare ``jax.grad`` with central differences in C."""
    symmetric: tuple[str, ...] = ()
    """Matrix parameters whose gradient is compared along symmetric directions only (g + g^T).

    JAX differentiates a Cholesky factorisation as a function of the symmetrised
    matrix, PyTensor as a function of one triangle; the two agree on every symmetric
    perturbation, which is all a covariance built from model parameters can take.
    """


PARAMS: dict[str, Case] = {
    "AR": Case(dict(rho=np.array([0.5, -0.2]), sigma=0.7, init_dist=pm.Normal.dist(0, 1),
                    steps=6), dict(sigma=-1.0), size=None),
    "AsymmetricLaplace": Case(dict(kappa=1.3, mu=0.2, b=0.7), dict(b=-1.0)),
    "Bernoulli": Case(dict(p=0.3), dict(p=1.5)),
    "Beta": Case(dict(alpha=2.0, beta=3.5), dict(alpha=-1.0)),
    "BetaBinomial": Case(dict(alpha=2.0, beta=3.5, n=10), dict(alpha=-1.0)),
    "Binomial": Case(dict(n=10, p=0.3), dict(p=1.5)),
    "CAR": Case(dict(mu=np.zeros(3), W=_W, alpha=0.5, tau=1.2), dict(tau=-1.0), const=("mu",),
                size=None),
    "Categorical": Case(dict(p=np.array([0.2, 0.5, 0.3])), dict(p=np.array([0.2, 0.5, -0.3]))),
    "Cauchy": Case(dict(alpha=0.3, beta=1.5), dict(beta=-1.0)),
    "ChiSquared": Case(dict(nu=3.0), dict(nu=-1.0)),
    "DiracDelta": Case(dict(c=1.5), None),
    "Dirichlet": Case(dict(a=np.array([1.5, 2.0, 3.0])), dict(a=np.array([1.5, -2.0, 3.0]))),
    "DirichletMultinomial": Case(dict(n=10, a=np.array([1.5, 2.0, 3.0])),
                                 dict(a=np.array([1.5, -2.0, 3.0]))),
    "DiscreteUniform": Case(dict(lower=-2, upper=5), None),
    "DiscreteWeibull": Case(dict(q=0.6, beta=1.3), dict(q=1.5)),
    "EulerMaruyama": Case(dict(dt=0.1, sde_fn=lambda x, k: (-k * x, 0.5), sde_pars=(0.7,),
                               init_dist=pm.Normal.dist(0, 1), steps=6), None, size=None,
                         const=("dt",)),
    "ExGaussian": Case(dict(mu=0.3, sigma=1.1, nu=0.8), dict(sigma=-1.0)),
    "Exponential": Case(dict(lam=1.3), dict(lam=-1.0)),
    "Flat": Case(dict(), None, value=np.array([0.3, -2.0, 5.0])),
    "GARCH11": Case(dict(omega=0.2, alpha_1=0.3, beta_1=0.4, initial_vol=0.5, steps=6),
                    dict(omega=-1.0), size=None),
    "Gamma": Case(dict(alpha=2.0, beta=1.5), dict(alpha=-1.0)),
    "GaussianRandomWalk": Case(dict(mu=0.1, sigma=0.7, init_dist=pm.Normal.dist(0, 1), steps=6),
                               dict(sigma=-1.0), size=None),
    "Geometric": Case(dict(p=0.3), dict(p=1.5)),
    "Gumbel": Case(dict(mu=0.3, beta=1.5), dict(beta=-1.0)),
    "HalfCauchy": Case(dict(beta=1.5), dict(beta=-1.0)),
    "HalfFlat": Case(dict(), None, value=np.array([0.3, 2.0, 5.0])),
    "HalfNormal": Case(dict(sigma=1.5), dict(sigma=-1.0)),
    "HalfStudentT": Case(dict(nu=4.0, sigma=1.5), dict(sigma=-1.0)),
    "HurdleGamma": Case(dict(psi=0.6, alpha=2.0, beta=1.5), dict(psi=1.5)),
    "HurdleLogNormal": Case(dict(psi=0.6, mu=0.2, sigma=0.8), dict(psi=1.5)),
    "HurdleNegativeBinomial": Case(dict(psi=0.6, mu=3.0, alpha=2.0), dict(psi=1.5)),
    "HurdlePoisson": Case(dict(psi=0.6, mu=3.0), dict(psi=1.5)),
    "HyperGeometric": Case(dict(N=20, k=8, n=6), None),
    "ICAR": Case(dict(W=_W, sigma=1.2), None, value=np.array([0.3, -0.1, -0.2]), size=None),
    "Interpolated": Case(dict(x_points=np.linspace(-2, 2, 11),
                              pdf_points=np.exp(-np.linspace(-2, 2, 11) ** 2)), None,
                         const=("x_points", "pdf_points"), size=None),
    "InverseGamma": Case(dict(alpha=3.0, beta=1.5), dict(alpha=-1.0)),
    "KroneckerNormal": Case(dict(mu=np.zeros(4), covs=[_COV, np.eye(2)]), None,
                            const=("covs",), size=None),
    "Kumaraswamy": Case(dict(a=2.0, b=3.0), dict(a=-1.0)),
    "LKJCholeskyCov": Case(dict(n=3, eta=2.0, sd_dist=pm.Exponential.dist(1.0, size=3),
                                compute_corr=False), None, size=None, const=("eta",)),
    "LKJCorr": Case(dict(n=3, eta=2.0), None, size=None, const=("eta",)),
    "Laplace": Case(dict(mu=0.3, b=1.5), dict(b=-1.0)),
    "LogNormal": Case(dict(mu=0.3, sigma=0.8), dict(sigma=-1.0)),
    "Logistic": Case(dict(mu=0.3, s=1.5), dict(s=-1.0)),
    "LogitNormal": Case(dict(mu=0.3, sigma=0.8), dict(sigma=-1.0)),
    "Lognormal": Case(dict(mu=0.3, sigma=0.8), dict(sigma=-1.0)),
    "MatrixNormal": Case(dict(mu=np.zeros((2, 2)), rowcov=_COV, colcov=np.eye(2)), None,
                         size=None, symmetric=("rowcov", "colcov")),
    "Moyal": Case(dict(mu=0.3, sigma=1.5), dict(sigma=-1.0)),
    "Multinomial": Case(dict(n=10, p=np.array([0.2, 0.5, 0.3])),
                        dict(p=np.array([0.2, 0.5, -0.3]))),
    "MvGaussianRandomWalk": Case(dict(mu=np.zeros(2), cov=_COV, steps=4,
                                      init_dist=pm.MvNormal.dist(np.zeros(2), np.eye(2))),
                                 None, size=None, symmetric=("cov",)),
    "MvNormal": Case(dict(mu=np.array([0.3, -0.2]), cov=_COV), None, symmetric=("cov",)),
    "MvStudentT": Case(dict(nu=4.0, mu=np.array([0.3, -0.2]), scale=_COV), dict(nu=-1.0),
                       symmetric=("scale",)),
    "MvStudentTRandomWalk": Case(dict(nu=4.0, mu=np.zeros(2), scale=_COV, steps=4,
                                      init_dist=pm.MvNormal.dist(np.zeros(2), np.eye(2))),
                                 None, size=None, symmetric=("scale",)),
    "NegativeBinomial": Case(dict(mu=3.0, alpha=2.0), dict(alpha=-1.0)),
    "Normal": Case(dict(mu=0.3, sigma=1.5), dict(sigma=-1.0)),
    "NormalMixture": Case(dict(w=np.array([0.3, 0.7]), mu=np.array([-1.0, 1.0]),
                               sigma=np.array([0.5, 1.0])), dict(sigma=np.array([0.5, -1.0]))),
    "OrderedLogistic": Case(dict(eta=0.3, cutpoints=np.array([-1.0, 0.5, 2.0])), None),
    "OrderedMultinomial": Case(dict(eta=0.3, cutpoints=np.array([-1.0, 0.5, 2.0]), n=10), None),
    "OrderedProbit": Case(dict(eta=0.3, cutpoints=np.array([-1.0, 0.5, 2.0]), sigma=1.2),
                          dict(sigma=-1.0)),
    "Pareto": Case(dict(alpha=3.0, m=0.5), dict(alpha=-1.0)),
    "Poisson": Case(dict(mu=3.0), dict(mu=-1.0)),
    "PolyaGamma": Case(dict(h=1.5, z=0.5), dict(h=-1.0), value=np.array([0.2, 0.5, 1.0]),
                       needs="polyagamma", differences=True),
    "RandomWalk": Case(dict(innovation_dist=pm.Normal.dist(0.1, 0.5),
                            init_dist=pm.Normal.dist(0, 1), steps=6), None, size=None),
    "Rice": Case(dict(nu=1.0, sigma=0.7), dict(sigma=-1.0)),
    "SkewNormal": Case(dict(mu=0.3, sigma=1.5, alpha=-2.0), dict(sigma=-1.0)),
    "SkewStudentT": Case(dict(a=2.0, b=4.0, mu=0.3, sigma=1.5), dict(sigma=-1.0)),
    "StickBreakingWeights": Case(dict(alpha=2.0, K=4), dict(alpha=-1.0)),
    "StudentT": Case(dict(nu=4.0, mu=0.3, sigma=1.5), dict(sigma=-1.0)),
    "Triangular": Case(dict(lower=-1.0, c=0.2, upper=3.0), None),
    "TruncatedNormal": Case(dict(mu=0.3, sigma=1.5, lower=-1.0, upper=2.0), dict(sigma=-1.0)),
    "Uniform": Case(dict(lower=-1.0, upper=3.0), None),
    "VonMises": Case(dict(mu=0.3, kappa=1.5), dict(kappa=-1.0)),
    "Wald": Case(dict(mu=1.5, lam=2.0, alpha=0.1), dict(lam=-1.0)),
    "Weibull": Case(dict(alpha=1.5, beta=2.0), dict(alpha=-1.0)),
    "Wishart": Case(dict(nu=5, V=_COV), None, size=None, symmetric=("V",)),
    "WishartBartlett": Case(dict(S=_COV, nu=5), None, size=None, const=("S",)),
    "ZeroInflatedBinomial": Case(dict(psi=0.6, n=10, p=0.3), dict(psi=1.5)),
    "ZeroInflatedNegativeBinomial": Case(dict(psi=0.6, mu=3.0, alpha=2.0), dict(psi=1.5)),
    "ZeroInflatedPoisson": Case(dict(psi=0.6, mu=3.0), dict(psi=1.5)),
    "ZeroSumNormal": Case(dict(sigma=1.5, n_zerosum_axes=1, shape=3), None, size=None,
                          value=np.array([0.3, -0.1, -0.2])),
}


def distribution_names() -> list[str]:
    """Every public PyMC distribution with a ``.dist`` constructor, sorted."""
    names = []
    for name in pm.distributions.__all__:
        obj = getattr(pm.distributions, name)
        if name in NOT_DISTRIBUTIONS | NEEDS_A_FUNCTION or not hasattr(obj, "dist"):
            continue
        names.append(name)
    return sorted(names)


@dataclass
class Result:
    """Outcome of one distribution's checks: '' for a pass, else the first line of the failure."""

    name: str
    logp: str = "not run"
    grad: str = "not run"
    invalid: str = "not run"
    seconds: float = 0.0
    detail: str = field(default="", repr=False)


def _inputs_for(case: Case):
    """Float parameters become inputs; the rest stay constants."""
    inputs, values, kwargs = [], [], {}
    for key, val in case.valid.items():
        arr = np.asarray(val) if isinstance(val, float | np.ndarray) else None
        if arr is not None and arr.dtype.kind == "f" and key not in case.const:
            var = pt.tensor(key, shape=arr.shape, dtype="float64")
            inputs.append(var)
            values.append(arr)
            kwargs[key] = var
        else:
            kwargs[key] = val
    return inputs, values, kwargs


def _dist(name, kwargs, case):
    extra = {} if case.size is None else {"size": case.size}
    return getattr(pm.distributions, name).dist(**kwargs, **extra)


def _point(name, case):
    if case.value is not None:
        return np.asarray(case.value)
    return np.asarray(pm.draw(_dist(name, case.valid, case), random_seed=1))


def check(name: str) -> Result:
    """Log-density, gradient and invalid-parameter checks for one distribution."""
    from tests.compile import oracle

    result, start = Result(name), time.perf_counter()
    case = PARAMS.get(name)
    if case is None:
        result.logp = result.grad = result.invalid = "no parameters in tests/compile/coverage.py"
        return result
    if case.needs and importlib.util.find_spec(case.needs) is None:
        result.logp = result.grad = result.invalid = f"skip: C backend needs {case.needs}"
        return result
    try:
        inputs, values, kwargs = _inputs_for(case)
        point = _point(name, case)
        value = pt.tensor("value", shape=point.shape, dtype=point.dtype)
        logp = pm.logp(_dist(name, kwargs, case), value).sum()
        all_inputs = [value, *inputs]
        oracle.assert_matches_c(all_inputs, [logp], [point, *values])
        result.logp = ""
        wrt = [v for v in all_inputs if v.type.dtype.startswith("float")]
        if wrt and case.differences:
            oracle.assert_jax_grad_matches_c_differences(all_inputs, logp, [point, *values],
                                                         wrt=wrt)
        elif wrt:
            symmetric = [v for v in wrt if v.name in case.symmetric]
            oracle.assert_grad_matches_c(all_inputs, logp, [point, *values], wrt=wrt,
                                         symmetric=symmetric)
        result.grad = ""
        result.invalid = _check_invalid(name, case, all_inputs, logp, point, values)
    except Exception as err:  # noqa: BLE001  (the table records any failure)
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        message = f"{type(err).__name__}: {first_line}"
        for key in ("logp", "grad", "invalid"):
            if getattr(result, key) == "not run":
                setattr(result, key, message)
                break
        result.detail = traceback.format_exc()
    result.seconds = time.perf_counter() - start
    return result


def _check_invalid(name, case, inputs, logp, point, values) -> str:
    if not case.invalid:
        return "n/a"
    import pytensor

    from hiddenjax.compile import MODE_NAME

    bad = dict(zip([i.name for i in inputs[1:]], values, strict=True))
    for key, val in case.invalid.items():
        if key not in bad:
            return f"invalid parameter {key} is not an input"
        bad[key] = np.asarray(val, dtype="float64")
    got = pytensor.function(inputs, logp, mode=MODE_NAME)(point, *bad.values())
    return "" if np.isneginf(got) else f"gave {got}, not -inf"


def passed(r: Result) -> bool:
    """Whether every check of ``r`` passed (or did not apply)."""
    return r.logp == "" and r.grad == "" and r.invalid in ("", "n/a")


def _mark(text: str) -> str:
    if text.startswith("skip"):
        return "skip"
    return {"": "ok", "n/a": "n/a", "not run": "-"}.get(text, "FAIL")


def print_table(names: list[str]) -> list[Result]:
    """Run ``check`` for each name and print one row per distribution, then totals."""
    results = []
    print(f"{'distribution':<30}{'logp':>6}{'grad':>6}{'-inf':>6}{'s':>7}  failure")
    for name in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = check(name)
        results.append(r)
        why = next((t for t in (r.logp, r.grad, r.invalid) if t not in ("", "n/a")), "")
        print(f"{name:<30}{_mark(r.logp):>6}{_mark(r.grad):>6}{_mark(r.invalid):>6}"
              f"{r.seconds:>7.1f}  {why[:90]}", flush=True)
    ok = [r for r in results if passed(r)]
    skipped = [r for r in results if r.logp.startswith("skip")]
    print(f"\n{len(ok)}/{len(results) - len(skipped)} distributions pass log-density, gradient "
          f"and -inf checks ({len(skipped)} skipped: the C backend cannot evaluate them here)")
    return results


if __name__ == "__main__":
    from hiddenjax.execution.devices import configure

    from tests.compile.model_cases import print_model_table

    configure("float64")
    args = sys.argv[1:]
    if "--models" in args:
        print_model_table(args[args.index("--models") + 1:] or None)
    else:
        print_table(args or distribution_names())
        if not args:
            print()
            print_model_table()
