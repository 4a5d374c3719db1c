"""The Bayesian workflow around sampling, on the same compiled graphs.

Predictive sampling, pointwise log-likelihoods, MAP and variational fits with
PyMC's signatures. Each evaluates one compiled per-draw function vectorised
over draws, in chunks, on the device.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import xarray as xr
from arviz import InferenceData
from pymc.model import Model, modelcontext

from hiddenjax.api import _refuse_unknown

_log = logging.getLogger("hiddenjax")

__all__ = [
    "Approximation",
    "MAPConvergenceError",
    "compute_log_likelihood",
    "find_MAP",
    "fit",
    "sample_posterior_predictive",
    "sample_prior_predictive",
]


def _stack_draws(dataset: xr.Dataset, names: Sequence[str], sample_dims: Sequence[str]):
    """Arrays with the sample dims stacked into one leading axis, and those dims' coords."""
    missing = [n for n in sample_dims if n not in dataset.dims]
    if missing:
        raise ValueError(
            f"sample_dims {list(sample_dims)} are not all dims of the trace (missing {missing}); "
            f"its dims are {list(dataset.dims)}."
        )
    stacked_coords = {d: dataset[d].values for d in sample_dims}
    n_draws = int(np.prod([dataset.sizes[d] for d in sample_dims], dtype=int))
    arrays = {}
    for name in names:
        variable = dataset.variables[name].transpose(*sample_dims, ...)
        arrays[name] = np.asarray(variable.values).reshape(
            (n_draws, *variable.shape[len(sample_dims):]))
    return arrays, stacked_coords, n_draws


def _progress(enabled: bool, total: int, label: str):
    from hiddenjax.execution.vectorized import DrawProgress

    return DrawProgress(total, label, enabled=enabled)


def _current_values(graph) -> tuple[np.ndarray, ...]:
    """The model's data values now (after any ``pm.set_data``), in the graph's data order."""
    from hiddenjax.model import current_data

    return current_data(graph)


def compute_log_likelihood(
    idata: InferenceData,
    *,
    var_names: Sequence[str] | None = None,
    extend_inferencedata: bool = True,
    model: Model | None = None,
    sample_dims: Sequence[str] = ("chain", "draw"),
    progressbar: bool = True,
    compile_kwargs: dict | None = None,
) -> InferenceData | xr.Dataset:
    """Pointwise log-likelihood of the observed variables at every posterior draw.

    Arguments mean what they mean in ``pymc.compute_log_likelihood``. The
    log-likelihood is one compiled function vectorised over draws.

    Parameters
    ----------
    idata : arviz.InferenceData
        Holds a ``posterior`` group with every free variable of the model.
    var_names : sequence of str, optional
        Observed variables to compute; all by default.
    extend_inferencedata : bool
        Add the ``log_likelihood`` group to ``idata`` and return it, or return the dataset.
    model : pymc.Model, optional
        The model (default: the one in context).
    sample_dims : sequence of str
        Dims of the posterior that index draws.
    progressbar : bool
        Whether to show progress.
    compile_kwargs : dict, optional
        Not supported by hiddenjax; must be empty.

    Returns
    -------
    arviz.InferenceData or xarray.Dataset
    """
    from hiddenjax.compile.forward import cached, cached_draw_function
    from hiddenjax.execution.devices import configure
    from hiddenjax.execution.vectorized import map_over_draws
    from hiddenjax.model.predictive import loglik_graph
    from hiddenjax.results.predictive import add_log_likelihood, log_likelihood_dataset
    from pymc.backends.arviz import coords_and_dims_for_inferencedata

    _refuse_compile_kwargs("compute_log_likelihood", compile_kwargs)
    model = modelcontext(model)
    observed = [rv.name for rv in model.observed_RVs]
    if var_names is None:
        var_names = observed
    else:
        var_names = list(var_names)
        unknown = [n for n in var_names if n not in observed]
        if unknown:
            raise ValueError(
                f"var_names must refer to observed_RVs in the model. Got: {var_names} "
                f"({unknown} are not observed; the observed variables are {observed})."
            )
    posterior = idata["posterior"]
    free = [rv.name for rv in model.free_RVs]
    _check_in_trace(free, posterior, "compute_log_likelihood")
    arrays, stacked_coords, n_draws = _stack_draws(posterior, free, sample_dims)
    configure("float64")
    shapes = {n: a.shape[1:] for n, a in arrays.items()}
    graph = cached(model, ("loglik", tuple(var_names), tuple(shapes.items())),
                   lambda: loglik_graph(model, var_names, shapes))
    fn = cached_draw_function(model, graph)
    values = [arrays[n].astype(dtype, copy=False) for n, dtype in zip(fn.value_names, fn.value_dtypes)]
    with _progress(progressbar, n_draws, "Computing log-likelihood") as bar:
        result = map_over_draws(fn.fn, values, _current_values(graph), n_draws=n_draws,
                                progress=bar.update)
    sizes = [len(c) for c in stacked_coords.values()]
    out = {n: a.reshape((*sizes, *a.shape[1:])) for n, a in zip(fn.output_names, result.outputs)}
    coords, dims = coords_and_dims_for_inferencedata(model)
    dataset = log_likelihood_dataset(out, coords=coords, dims=dims, sample_dims=sample_dims)
    return add_log_likelihood(idata, dataset) if extend_inferencedata else dataset


def _check_in_trace(names: Sequence[str], dataset: xr.Dataset, function: str) -> None:
    missing = [n for n in names if n not in dataset]
    if missing:
        raise ValueError(
            f"{function}: the posterior has no draws of {missing}, which the model's "
            "log-likelihood depends on. Pass an InferenceData sampled from this model "
            "(its posterior must hold every free variable)."
        )


def _refuse_compile_kwargs(function: str, compile_kwargs: dict | None) -> None:
    if compile_kwargs:
        raise TypeError(
            f"hiddenjax.{function}() does not take compile_kwargs={compile_kwargs!r}: "
            "it compiles through JAX, not PyTensor's backends. Remove the argument, or "
            f"use pymc.{function} for that call."
        )


def _seed_key(random_seed):
    """A JAX key from any seed PyMC accepts (int, sequence, Generator, RandomState or None)."""
    from hiddenjax.compile.forward import seed_key

    if isinstance(random_seed, np.random.RandomState):
        return seed_key(int(random_seed.randint(2**31)))
    return seed_key(int(np.random.default_rng(random_seed).integers(2**32)))


def _warn_potentials(model: Model, kind: str) -> None:
    import warnings

    if model.potentials:
        warnings.warn(
            f"The effect of Potentials on other parameters is ignored during {kind} "
            "predictive sampling. This is likely to lead to invalid or biased predictive samples.",
            UserWarning,
            stacklevel=3,
        )


def _draw_forward(model, names, trace_arrays, n_draws, random_seed, progressbar, label,
                  constant_data=None, constant_coords=()):
    """Draw ``names`` once per draw of ``trace_arrays`` (or ``n_draws`` times from the prior)."""
    from hiddenjax.compile.forward import cached, cached_draw_function
    from hiddenjax.execution.devices import configure
    from hiddenjax.execution.vectorized import map_over_draws, raise_failed_checks
    from hiddenjax.model.predictive import changed_data, forward_graph

    configure("float64")
    shapes = {n: a.shape[1:] for n, a in trace_arrays.items()}
    # Building the graph (PyTensor's canonicalisation) takes longer than drawing
    # thousands of draws of a small model: build it once per structure, names,
    # trace shapes and changed data.
    changed = changed_data(model, names, constant_data, constant_coords)
    graph = cached(model, ("forward", tuple(names), tuple(shapes.items()), changed),
                   lambda: forward_graph(model, names, shapes, constant_data, constant_coords))
    _log.info(f"Sampling: {list(graph.resampled)}")
    fn = cached_draw_function(model, graph)
    values = [np.asarray(trace_arrays[n]).astype(dtype, copy=False)
              for n, dtype in zip(fn.value_names, fn.value_dtypes)]
    with _progress(progressbar, n_draws, label) as bar:
        result = map_over_draws(fn.fn, values, _current_values(graph), n_draws=n_draws,
                                seed_key=_seed_key(random_seed), progress=bar.update)
    raise_failed_checks(result.checks, fn.check_messages, label)
    return dict(zip(fn.output_names, result.outputs))


def sample_prior_predictive(
    draws: int = 500,
    model: Model | None = None,
    var_names: Sequence[str] | None = None,
    random_seed=None,
    return_inferencedata: bool = True,
    idata_kwargs: dict | None = None,
    compile_kwargs: dict | None = None,
    samples: int | None = None,
) -> InferenceData | dict[str, np.ndarray]:
    """Draw from the prior and prior predictive distributions, vectorised over draws.

    Arguments mean what they mean in ``pymc.sample_prior_predictive``
    (``compile_kwargs`` is not supported). The same ``random_seed`` gives the
    same draws.

    Returns
    -------
    arviz.InferenceData or dict
        ``prior``, ``prior_predictive``, ``observed_data`` and ``constant_data``
        as PyMC lays them out, or a dict of ``(draws, *shape)`` arrays.
    """
    import warnings

    from pymc.util import get_default_varnames

    from hiddenjax.results.predictive import prior_inference_data

    _refuse_compile_kwargs("sample_prior_predictive", compile_kwargs)
    if samples is not None:
        warnings.warn(
            f"The samples argument has been deprecated in favor of draws. Use draws={samples} going forward.",
            DeprecationWarning,
            stacklevel=2,
        )
        draws = samples
    draws = _count("draws", draws)
    model = modelcontext(model)
    _warn_potentials(model, "prior")
    wanted = (set(var_names) if var_names is not None
              else {v.name for v in model.basic_RVs + model.deterministics})
    names = sorted(get_default_varnames(wanted, include_transformed=False))
    unknown = wanted.difference(names) | {n for n in names if n not in model.named_vars}
    if unknown:
        raise ValueError(
            f"Unrecognized var_names: {unknown}. Use names of random variables or "
            "Deterministics of the model (transformed values are not allowed)."
        )
    drawn = _draw_forward(model, names, {}, draws, random_seed, False, "Sampling prior")
    prior = {n: drawn[n] for n in names}
    if not return_inferencedata:
        return prior
    return prior_inference_data(prior, model, idata_kwargs)


def _count(name: str, value) -> int:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name}={value!r} must be an integer >= 0.")
    return int(value)


class TraceDraws(NamedTuple):
    """A trace's draws, flattened over its sample dims, and what PyMC reads from it besides."""

    arrays: dict
    """Per variable: ``(n_draws, *shape)``."""
    stacked_coords: dict | None
    """Coordinates of the sample dims (None for a list of points: one chain)."""
    n_draws: int
    """Number of draws."""
    idata: InferenceData | None
    """The InferenceData passed in, if one was."""
    constant_data: dict
    """``pm.Data`` values at inference time, by name."""
    coords: dict
    """Coordinates of the trace and its constant data."""
    observed_data: xr.Dataset | None
    """The trace's observed data group, if any."""


def _read_trace(trace, sample_dims) -> TraceDraws:
    """Read an InferenceData, a Dataset or a list of points as PyMC does."""
    constant_data, coords, idata, observed = {}, {}, None, None
    if isinstance(trace, InferenceData):
        group = getattr(trace, "constant_data", None)
        if group is not None:
            coords.update({str(k): v.data for k, v in group.coords.items()})
            constant_data.update({str(k): v.data for k, v in group.items()})
        idata, observed = trace, trace.get("observed_data", None)
        trace = trace["posterior"]
    if isinstance(trace, xr.Dataset):
        coords.update({str(k): v.data for k, v in trace.coords.items()})
        names = [str(n) for n in trace.data_vars]
        arrays, stacked, n_draws = _stack_draws(trace, names, sample_dims)
    elif isinstance(trace, list) and trace and all(isinstance(p, dict) for p in trace):
        arrays = {n: np.stack([np.asarray(p[n]) for p in trace]) for n in trace[0]}
        stacked, n_draws = None, len(trace)
    else:
        raise TypeError(
            f"Unsupported type for `trace` argument: {type(trace)}. hiddenjax takes an "
            "InferenceData, an xarray Dataset (such as idata.posterior) or a list of points."
        )
    return TraceDraws(arrays=arrays, stacked_coords=stacked, n_draws=n_draws, idata=idata,
                      constant_data=constant_data, coords=coords, observed_data=observed)


def _posterior_predictive_vars(model: Model, var_names, observed_data) -> list[str]:
    from pymc.sampling.forward import observed_dependent_deterministics
    from pymc.util import get_default_varnames

    if var_names is not None:
        unknown = [n for n in var_names if n not in model.named_vars]
        if unknown:
            choices = sorted(v.name for v in model.basic_RVs + model.deterministics)
            raise KeyError(
                f"var_names {unknown} are not variables of the model; choose from {choices}."
            )
        chosen = [model[n] for n in var_names]
    else:
        chosen = list(model.observed_RVs)
        if observed_data is not None:
            chosen += [model[n] for n in observed_data if n in model and model[n] not in chosen]
        chosen += observed_dependent_deterministics(model, chosen)
    # Each name once: pm.sample_posterior_predictive (5.28) appends the observed
    # variables to model.observed_RVs again on every call without var_names.
    names = [v.name for v in get_default_varnames(chosen, include_transformed=False)]
    return list(dict.fromkeys(names))


def sample_posterior_predictive(
    trace,
    model: Model | None = None,
    var_names: Sequence[str] | None = None,
    sample_dims: Sequence[str] | None = None,
    random_seed=None,
    progressbar: bool = True,
    progressbar_theme=None,
    return_inferencedata: bool = True,
    extend_inferencedata: bool = False,
    predictions: bool = False,
    idata_kwargs: dict | None = None,
    compile_kwargs: dict | None = None,
) -> InferenceData | dict[str, np.ndarray]:
    """Draw from the posterior predictive distribution, vectorised over posterior draws.

    Arguments mean what they mean in ``pymc.sample_posterior_predictive``
    (``compile_kwargs`` is not supported; ``progressbar_theme`` is accepted
    and ignored). Which variables are read from the trace and which are drawn
    anew follows PyMC's rules, including after ``pm.set_data``: variables
    downstream of changed data are recomputed or redrawn, so new data of a new
    length give out-of-sample predictions. The same ``random_seed`` gives the
    same draws, whatever the chunk size or number of devices.

    Parameters
    ----------
    trace : arviz.InferenceData, xarray.Dataset or list of dict
        Posterior draws (for an InferenceData, its ``posterior`` group), or
        points such as ``find_MAP``'s result.

    Returns
    -------
    arviz.InferenceData or dict
        The ``posterior_predictive`` group (``predictions`` with
        ``predictions=True``) with ``observed_data`` and ``constant_data``, as
        PyMC returns it; or a dict of ``(chain, draw, *shape)`` arrays.
    """
    from hiddenjax.results.predictive import posterior_predictive_inference_data
    from pymc.sampling.forward import get_constant_coords

    _refuse_compile_kwargs("sample_posterior_predictive", compile_kwargs)
    sample_dims = list(sample_dims) if sample_dims is not None else ["chain", "draw"]
    read = _read_trace(trace, sample_dims)
    model = modelcontext(model)
    _warn_potentials(model, "posterior")
    names = _posterior_predictive_vars(model, var_names, read.observed_data)
    if not names:
        if return_inferencedata:
            kept = read.idata if read.idata is not None else trace
            return kept if extend_inferencedata else InferenceData()
        return {}
    traceable = {v.name for v in model.free_RVs + model.deterministics}
    in_trace = {n: a for n, a in read.arrays.items() if n in traceable}
    drawn = _draw_forward(model, names, in_trace, read.n_draws, random_seed, progressbar,
                          "Sampling posterior predictive", read.constant_data,
                          get_constant_coords(read.coords, model))
    stacked = read.stacked_coords
    sizes = [len(c) for c in stacked.values()] if stacked is not None else [1, read.n_draws]
    draws = {n: drawn[n].reshape((*sizes, *drawn[n].shape[1:])) for n in names}
    if not return_inferencedata:
        return draws
    return posterior_predictive_inference_data(
        draws, model, sample_dims=sample_dims, stacked_coords=stacked, predictions=predictions,
        idata=read.idata, extend_inferencedata=extend_inferencedata, idata_kwargs=idata_kwargs,
    )


class MAPConvergenceError(RuntimeError):
    """``find_MAP`` could not find a mode: non-finite log-density or no convergence."""


def _map_start(model: Model, layout, start, seed) -> np.ndarray:
    """The flat unconstrained starting point, as ``pm.find_MAP`` picks it."""
    from pymc.initial_point import make_initial_point_fn

    ipfn = make_initial_point_fn(model=model, jitter_rvs=set(), return_transformed=True,
                                 overrides=start)
    return layout.ravel(ipfn(seed))


def _map_mask(model: Model, layout, vars) -> tuple[np.ndarray, bool]:
    """Which entries of the flat position are optimised (the rest stay at the start).

    Returns the mask and whether a discrete variable is among them (PyMC then
    switches to a gradient-free method).
    """
    from pymc.util import get_value_vars_from_user_vars
    from pymc.vartypes import discrete_types

    chosen = (model.continuous_value_vars if vars is None
              else get_value_vars_from_user_vars(vars, model))
    names = {v.name for v in chosen}
    discrete = any(v.dtype in discrete_types for v in chosen)
    mask = np.concatenate([np.full(size, name in names, dtype=bool)
                           for name, size in zip(layout.names, layout.sizes)])
    return mask, discrete


def find_MAP(
    start=None,
    vars=None,
    method: str = "L-BFGS-B",
    return_raw: bool = False,
    include_transformed: bool = True,
    progressbar: bool = True,
    progressbar_theme=None,
    maxeval: int = 5000,
    model: Model | None = None,
    *args,
    seed: int | None = None,
    **kwargs,
) -> dict[str, np.ndarray] | tuple[dict[str, np.ndarray], object]:
    """Find the maximum a posteriori point, with gradients compiled through JAX.

    Arguments mean what they mean in ``pymc.find_MAP``: the log-density
    without Jacobian terms is maximised over the unconstrained values with
    ``scipy.optimize.minimize`` (``method``, ``*args`` and ``**kwargs`` go to
    it, SciPy's options by keyword), starting from ``start`` or the model's
    initial point. ``progressbar_theme`` is accepted and ignored.

    Returns
    -------
    dict
        Value variables (transformed names too, when ``include_transformed``),
        free variables and Deterministics at the mode, as numpy arrays; with
        ``return_raw``, also SciPy's result.

    Raises
    ------
    MAPConvergenceError
        When the log-density is not finite at the start or at the end, or the
        optimiser stops without converging (unless ``return_raw=True``, which
        returns the point reached and SciPy's result to inspect).
    """
    from hiddenjax.compile.forward import cached
    from hiddenjax.execution.devices import configure
    from hiddenjax.execution.host import host_value_and_grad
    from hiddenjax.execution.vectorized import host_call
    from hiddenjax.samplers.optimize import maximize

    if args:
        raise TypeError(
            f"hiddenjax.find_MAP() takes SciPy's options by keyword only (got positional {args!r}); "
            "pass them as keywords, e.g. options={'maxiter': 100}."
        )
    model = modelcontext(model)
    if not model.continuous_value_vars:
        raise ValueError("Model has no unobserved continuous variables.")
    configure("float64")
    graph, compiled = cached(model, ("map", include_transformed),
                             lambda: _compile_map(model, include_transformed))
    data = _current_values(graph)
    x0 = _map_start(model, graph.layout, start, seed)
    mask, discrete = _map_mask(model, graph.layout, vars)
    if discrete:
        _log.warning("Warning: gradient not available (vars contains discrete variables). MAP "
                     "estimates may not be accurate for the default parameters. Defaulting to "
                     "non-gradient minimization 'Powell'.")
        method = "Powell"
    full = host_value_and_grad(compiled.logdensity, data)
    value_and_grad = _masked(full, x0, mask)
    _check_finite_start(model, graph.layout, x0, full(x0))
    with _progress(progressbar, maxeval, "MAP") as bar:
        def progress(n_eval, logp, grad):
            bar.update(n_eval, f"logp = {logp:,.5g}, ||grad|| = {np.linalg.norm(grad):,.5g}")

        result = maximize(value_and_grad, x0[mask], method=method, maxeval=maxeval,
                          progress=progress, **kwargs)
    x = x0.copy()
    x[mask] = result.x
    values = host_call(compiled.constrain)(x, data)
    point = {name: np.asarray(v) for name, v in zip(compiled.output_names, values)}
    if return_raw:
        return point, result.raw
    _check_converged(result, maxeval)
    return point


def _compile_map(model, include_transformed):
    from hiddenjax.compile.model_functions import compile_model
    from hiddenjax.model.predictive import map_graph

    graph = map_graph(model, include_transformed)
    return graph, compile_model(graph)


def _masked(value_and_grad, x0: np.ndarray, mask: np.ndarray):
    if mask.all():
        return value_and_grad

    def partial(x):
        full = x0.copy()
        full[mask] = x
        value, grad = value_and_grad(full)
        return value, grad[mask]

    return partial


def _check_finite_start(model, layout, x0, value_and_grad) -> None:
    value, grad = value_and_grad
    if np.isfinite(value) and np.all(np.isfinite(grad)):
        return
    parts = layout.unravel(x0)
    raise MAPConvergenceError(
        f"find_MAP: the log-density at the starting point is {value} (gradient finite: "
        f"{bool(np.all(np.isfinite(grad)))}), so there is nothing to climb from. "
        f"Starting point (unconstrained): {{{', '.join(f'{k}: {v}' for k, v in parts.items())}}}. "
        "Pass a `start` dict with values inside every variable's support."
    )


def _check_converged(result, maxeval: int) -> None:
    if not np.isfinite(result.fun):
        raise MAPConvergenceError(
            f"find_MAP: the optimiser found no point with a finite log-density ({result.message}). "
            "Check the model's priors and data, or pass a better `start`."
        )
    if result.converged:
        return
    gnorm = float(np.max(np.abs(result.grad))) if result.grad.size else 0.0
    raise MAPConvergenceError(
        f"find_MAP did not converge after {result.n_eval} evaluations: {result.message}. "
        f"Last log-density {result.fun:.6g}, largest gradient entry {gnorm:.3g}. The "
        f"posterior may have no mode (an unbounded density, a flat direction), or it needs "
        f"more evaluations than maxeval={maxeval}: raise maxeval, pass a `start` closer to the "
        "mode, or call with return_raw=True to get the point reached and SciPy's result."
    )


_FIT_OPTIONS = {"progressbar", "obj_n_mc", "score", "obj_optimizer"}


def _optimizer_spec(obj_optimizer) -> tuple:
    """``(name, settings)`` of a PyMC optimiser such as ``pm.adam(learning_rate=0.01)``."""
    import functools

    from hiddenjax.samplers.advi import OPTIMIZERS

    if obj_optimizer is None:
        return ("adagrad_window", ())
    func = obj_optimizer.func if isinstance(obj_optimizer, functools.partial) else obj_optimizer
    name = getattr(func, "__name__", None)
    if name not in OPTIMIZERS or getattr(func, "__module__", "") != "pymc.variational.updates":
        raise TypeError(
            f"obj_optimizer={obj_optimizer!r} is not one hiddenjax runs in JAX; use "
            f"{' or '.join(f'pm.{n}(...)' for n in OPTIMIZERS)}, or pymc.fit for other optimisers."
        )
    settings = dict(obj_optimizer.keywords) if isinstance(obj_optimizer, functools.partial) else {}
    return (name, tuple(sorted(settings.items())))


class Approximation:
    """A Gaussian fitted to the posterior on the unconstrained space, by :func:`fit`.

    Attributes
    ----------
    method : str
        ``"advi"`` (mean-field) or ``"fullrank_advi"``.
    hist : ndarray
        The loss (``KL(q || p)`` minus the log evidence, a Monte-Carlo
        estimate) at every iteration, as PyMC's ``approx.hist``.
    mean, std : ndarray
        Mean and standard deviation of each unconstrained coordinate.
    cov : ndarray
        Covariance of the unconstrained coordinates.
    params : dict of ndarray
        The family's parameters (``mu`` and ``rho``, or ``mu`` and ``L_tril``), as PyMC names them.
    """

    def __init__(self, model: Model, method: str, params: dict, family, hist: np.ndarray):
        from hiddenjax.compile.cache import compiled_model

        self.model, self.method, self.hist = model, method, hist
        self.params = {k: np.asarray(v) for k, v in params.items()}
        self._family = family
        self._graph, self._compiled = compiled_model(model)
        self.mean = np.asarray(family.mean(params))
        self.cov = np.asarray(family.cov(params))
        self.std = np.sqrt(np.diag(self.cov))

    @property
    def ndim(self) -> int:
        """Number of unconstrained coordinates."""
        return int(self.mean.size)

    def mean_point(self) -> dict[str, np.ndarray]:
        """The mean, split into the model's value variables (transformed names)."""
        return self._graph.layout.unravel(self.mean)

    def std_point(self) -> dict[str, np.ndarray]:
        """The standard deviation, split into the model's value variables."""
        return self._graph.layout.unravel(self.std)

    def sample(self, draws: int = 500, *, random_seed=None, return_inferencedata: bool = True,
               **kwargs):
        """Draw from the approximation; free variables and Deterministics on their own support.

        Returns
        -------
        arviz.InferenceData or dict
            ``posterior`` (one chain), ``observed_data`` and ``constant_data``
            as PyMC's ``Approximation.sample`` lays them out; or a dict of
            ``(draws, *shape)`` arrays.
        """
        from hiddenjax.compile.forward import cached
        from hiddenjax.execution.devices import configure
        from hiddenjax.execution.vectorized import map_over_draws
        from hiddenjax.results.predictive import approximation_inference_data

        _refuse_unknown("Approximation.sample", kwargs)
        draws = _count("draws", draws)
        configure("float64")
        draw_fn = cached(self.model, ("approx-draw", self.method),
                         lambda: _approximation_draw(self._compiled, self._family, self.ndim))
        data = (self.params, *_current_values(self._graph))
        result = map_over_draws(draw_fn, (), data, n_draws=draws,
                                seed_key=_seed_key(random_seed))
        samples = dict(zip(self._compiled.output_names, result.outputs))
        if not return_inferencedata:
            return samples
        return approximation_inference_data(samples, self.model)

    def __repr__(self) -> str:
        return f"Approximation(method={self.method!r}, ndim={self.ndim}, iterations={len(self.hist)})"


def _approximation_draw(compiled, family, dim: int):
    """``draw(key, (), (params, *data)) -> (constrained values, ())`` for one draw."""
    import jax

    def draw(key, values, data):
        params, model_data = data[0], data[1:]
        z = family.draw(params, jax.random.normal(key, (dim,)))
        return compiled.constrain(z, model_data), ()

    return draw


def _build_advi(logdensity, dim: int, method: str, obj_n_mc: int, optimizer: tuple):
    from hiddenjax.samplers.advi import OPTIMIZERS, build_advi

    name, settings = optimizer
    return build_advi(logdensity, dim, method, obj_n_mc=obj_n_mc,
                      optimizer=OPTIMIZERS[name](**dict(settings)))


def _advi_step(compiled, dim: int, method: str, obj_n_mc: int, optimizer: tuple):
    """``step(key, state, data)``: one ADVI step on the model's log-density with ``data`` as arguments."""

    def step(key, state, data):
        algorithm = _build_advi(lambda z: compiled.logdensity(z, data), dim, method, obj_n_mc,
                                optimizer)
        return algorithm.step(key, state)

    return step


def _fit_start(model, layout, start, start_sigma, seed) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean and (for mean-field) scale at the start, as PyMC's ``Group._prepare_start``."""
    from pymc.initial_point import make_initial_point_fn

    ipfn = make_initial_point_fn(model=model, overrides=start, jitter_rvs={},
                                 return_transformed=True)
    mean = layout.ravel(ipfn(seed))
    if start_sigma is None:
        return mean, None
    unknown = set(start_sigma) - set(layout.names)
    if unknown:
        raise ValueError(
            f"start_sigma names {sorted(unknown)} are not value variables of the model; use "
            f"{list(layout.names)} (transformed variables by their transformed names)."
        )
    sigma = np.concatenate([
        np.broadcast_to(np.abs(np.asarray(start_sigma[n], float)), (size,)).ravel()
        if n in start_sigma else np.full(size, np.log(2.0))  # softplus(0), PyMC's default
        for n, size in zip(layout.names, layout.sizes)
    ])
    return mean, sigma


def fit(
    n: int = 10000,
    method: str = "advi",
    model: Model | None = None,
    random_seed=None,
    start: dict | None = None,
    start_sigma: dict | None = None,
    inf_kwargs: dict | None = None,
    **kwargs,
) -> Approximation:
    """Fit a Gaussian approximation to the posterior with ADVI, compiled through JAX.

    Arguments mean what they mean in ``pymc.fit`` for ``method`` in
    ``{"advi", "fullrank_advi"}``: the same families, starting values,
    objective and optimiser (``adagrad_window`` with PyMC's settings). The
    iterations run as jitted chunks; the same ``random_seed`` gives the same fit.

    Parameters
    ----------
    n : int
        Iterations.
    method : {"advi", "fullrank_advi"}
        Mean-field or full-rank Gaussian.
    start : dict, optional
        Starting mean, by variable name (default: the model's initial point).
    start_sigma : dict, optional
        Starting standard deviations by value-variable name (mean-field only).
    inf_kwargs : dict, optional
        ``random_seed``, ``start`` or ``start_sigma``, as PyMC allows.
    **kwargs
        ``progressbar``, ``obj_n_mc`` (draws per gradient estimate, default 1),
        ``obj_optimizer`` (``pm.adagrad_window(...)``, the default, or
        ``pm.adam(...)``) and ``score`` (accepted; the loss is always recorded).

    Returns
    -------
    Approximation
        With ``.sample(draws)`` giving InferenceData and ``.hist`` the loss history.

    Raises
    ------
    FloatingPointError
        When the loss becomes NaN or infinite, as PyMC does.
    """
    from hiddenjax.compile.cache import compiled_model
    from hiddenjax.compile.forward import cached
    from hiddenjax.execution.devices import configure
    from hiddenjax.execution.vectorized import run_steps
    from hiddenjax.samplers.advi import METHODS

    inf_kwargs = dict(inf_kwargs or {})
    random_seed = inf_kwargs.pop("random_seed", random_seed)
    start = inf_kwargs.pop("start", start)
    start_sigma = inf_kwargs.pop("start_sigma", start_sigma)
    _refuse_unknown("fit(inf_kwargs=...)", inf_kwargs)
    _refuse_unknown("fit", {k: v for k, v in kwargs.items() if k not in _FIT_OPTIONS})
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise NotImplementedError(
            f"method={method!r}: hiddenjax fits {', '.join(map(repr, METHODS))}; for SVGD or "
            "ASVGD, or an Inference object, use pymc.fit."
        )
    method = method.lower()
    if start_sigma is not None and method != "advi":
        raise NotImplementedError("start_sigma is only available for method advi")
    n = _count("n", n)
    obj_n_mc = kwargs.get("obj_n_mc") or 1
    model = modelcontext(model)
    configure("float64")
    graph, compiled = compiled_model(model)
    rng = np.random.default_rng(random_seed)
    mean, sigma = _fit_start(model, graph.layout, start, start_sigma, int(rng.integers(2**30)))
    dim = graph.layout.size
    optimizer = _optimizer_spec(kwargs.get("obj_optimizer"))
    algorithm = _build_advi(None, dim, method, obj_n_mc, optimizer)
    state = algorithm.init(mean, sigma)
    step = cached(model, ("advi", method, obj_n_mc, optimizer),
                  lambda: _advi_step(compiled, dim, method, obj_n_mc, optimizer))
    with _progress(kwargs.get("progressbar", True), n, "Fitting") as bar:
        state, infos = run_steps(
            step, state, n, seed_key=_seed_key(rng), chunk_size=min(n, 1000) or 1,
            args=(_current_values(graph),),
            progress=lambda done, info: bar.update(done, f"Average Loss = {np.mean(info.loss):,.5g}"),
            stop=lambda info: not np.all(np.isfinite(info.loss)),
        )
    hist = np.asarray(infos.loss) if infos is not None else np.zeros(0)
    if not np.all(np.isfinite(hist)):
        first = int(np.flatnonzero(~np.isfinite(hist))[0])
        raise FloatingPointError(
            f"NaN occurred in optimization: the ADVI loss is {hist[first]} at iteration {first}. "
            "The approximation put mass where the log-density is not finite; pass a `start` "
            "inside the posterior's bulk, smaller `start_sigma`, or check the model's priors."
        )
    return Approximation(model, method, state.params, algorithm.family, hist)
