"""Public inference functions: PyMC's signatures, run on JAX."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from functools import partial
from typing import NamedTuple

import numpy as np

from pymc.model import Model, modelcontext

from hiddenjax.execution.devices import DEVICES, PRECISIONS, check_chain_method, configure

_log = logging.getLogger("hiddenjax")

INITS = {
    "auto": (True, "auto"),
    "adapt_diag": (False, "diag"),
    "jitter+adapt_diag": (True, "diag"),
    "jitter+adapt_diag_grad": (True, "diag_grad"),
    "adapt_full": (False, "dense"),
    "jitter+adapt_full": (True, "dense"),
    "adapt_low_rank": (False, "low_rank"),
    "jitter+adapt_low_rank": (True, "low_rank"),
}
"""Supported ``init`` strings: whether starts are jittered, and the mass-matrix scheme.

PyMC's strings mean what they mean there (``adapt_full`` is Stan's dense
windowed estimate, ``adapt_diag_grad`` the gradient-based diagonal).
``adapt_low_rank`` is a hiddenjax extension: nutpie's low-rank modified
mass matrix. ``auto`` jitters and uses the low-rank scheme up to 128
dimensions and Stan's diagonal above (``samplers.mass_matrix._auto``).
"""

REFUSED_INITS = ("advi", "advi+adapt_diag", "advi_map", "map")
"""PyMC's ``init`` strings that start from an ADVI or MAP fit, which hiddenjax refuses."""

NUTS_OPTIONS = {
    "target_accept": "target_accept",
    "max_treedepth": "max_treedepth",
    "early_max_treedepth": "early_max_treedepth",
    "step_scale": "step_scale",
    "Emax": "max_energy_error",
}
"""PyMC ``NUTS`` arguments hiddenjax honours, mapped to the sampler program's names."""

NUTS_DEFAULTS = {"target_accept": 0.8, "max_treedepth": 10, "early_max_treedepth": 8,
                 "step_scale": 0.25, "Emax": 1000.0}


class Request(NamedTuple):
    """A sampling call's validated options, in plain values."""

    draws: int
    """Kept draws per chain."""
    tune: int
    """Warmup steps per chain."""
    chains: int
    """Chains (per dataset, for batched fits)."""
    initvals: object
    """PyMC-style initial values."""
    jitter: bool
    """Whether starting points are jittered."""
    jitter_max_retries: int
    """Retries for a non-finite start."""
    program_kwargs: dict
    """Sampler program settings (``build_nuts_program``'s keyword arguments)."""
    var_names: list | None
    """Variables to keep in the posterior."""
    progressbar: bool
    """Whether to show progress."""
    quiet: bool
    """Whether to keep the log quiet."""
    compute_convergence_checks: bool
    """Whether to run PyMC's convergence checks."""
    keep_warmup: bool
    """Whether to keep warmup draws (``discard_tuned_samples=False``)."""
    log_likelihood: bool
    """Whether to compute the pointwise log-likelihood."""
    chunk_size: int | None
    """Steps per compiled call; None until ``_with_chunk_size`` picks it from the draws' size."""
    chunk_seconds: float | None
    """Seconds a call aims at when the chunk size was chosen (``RunPlan.chunk_seconds``)."""
    device: str
    """Device string."""
    precision: str
    """Precision string."""
    chain_method: str = "auto"
    """How a device runs its chains: ``"auto"``, ``"vectorized"`` or ``"sequential"``."""


def _refuse_unknown(function: str, kwargs: dict) -> None:
    if kwargs:
        names = ", ".join(repr(k) for k in kwargs)
        raise TypeError(
            f"hiddenjax.{function}() does not support the argument(s) {names}. They would "
            "change how PyMC samples, and hiddenjax never ignores an argument silently: "
            "remove them, or use pymc for that run."
        )


def _check_count(name: str, value, low: int) -> int:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name}={value!r} must be an integer >= {low}.")
    return int(value)


def _check_init(init) -> tuple[bool, str]:
    if init in REFUSED_INITS:
        raise ValueError(
            f"init={init!r} starts NUTS from an ADVI or MAP fit, which hiddenjax does not do: "
            "its warmup adapts the mass matrix from the draws. Use init='jitter+adapt_diag' "
            "(the default), or run hj.fit / hj.find_MAP and pass the result as initvals."
        )
    if init not in INITS:
        raise ValueError(
            f"init={init!r} is not supported by hiddenjax; use one of {', '.join(map(repr, INITS))}."
        )
    return INITS[init]


def _positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating) \
            or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive number.")
    return float(value)


def _nuts_settings(target_accept, max_treedepth, nuts, step_kwargs: dict) -> dict:
    """PyMC's NUTS options from keywords and ``nuts={...}``, checked, in the program's names.

    As in ``pymc.sample``: ``target_accept`` may be given once, either way;
    for other options a keyword wins over the ``nuts`` dict.
    """
    if nuts is not None and not isinstance(nuts, Mapping):
        raise TypeError(f"nuts={nuts!r} must be a dict of NUTS arguments, e.g. "
                        "nuts={'target_accept': 0.9}.")
    nuts = dict(nuts or {})
    unknown = sorted(set(nuts) - set(NUTS_OPTIONS))
    if unknown:
        raise TypeError(
            f"hiddenjax's NUTS does not support the argument(s) {', '.join(map(repr, unknown))} "
            f"in nuts={{...}}; it takes {', '.join(map(repr, NUTS_OPTIONS))}."
        )
    if target_accept is not None and "target_accept" in nuts:
        raise ValueError("`target_accept` was defined twice. Please specify it either as a "
                         "direct keyword argument or in the `nuts` kwarg.")
    given = {"target_accept": target_accept, "max_treedepth": max_treedepth, **step_kwargs}
    options = {**NUTS_DEFAULTS, **nuts, **{k: v for k, v in given.items() if v is not None}}
    if not isinstance(options["target_accept"], int | float | np.floating) \
            or not 0 < options["target_accept"] < 1:
        raise ValueError(
            f"target_accept={options['target_accept']!r} must lie strictly between 0 and 1."
        )
    return {
        "target_accept": float(options["target_accept"]),
        "max_treedepth": _check_count("max_treedepth", options["max_treedepth"], 1),
        "early_max_treedepth": _check_count("early_max_treedepth",
                                            options["early_max_treedepth"], 1),
        "step_scale": _positive("step_scale", options["step_scale"]),
        "max_energy_error": _positive("Emax", options["Emax"]),
    }


def _request(*, draws, tune, chains, initvals, init, jitter_max_retries, target_accept,
             max_treedepth, var_names, progressbar, quiet, compute_convergence_checks,
             discard_tuned_samples, idata_kwargs, chunk_size, device, precision,
             nuts=None, step_kwargs=None, chain_method="auto") -> Request:
    """Validate a call's arguments in plain Python, with messages naming each one."""
    draws, tune = _check_count("draws", draws, 0), _check_count("tune", tune, 0)
    chains = _check_count("chains", 4 if chains is None else chains, 1)
    jitter, adaptation = _check_init(init)
    program_kwargs = _nuts_settings(target_accept, max_treedepth, nuts, step_kwargs or {})
    if device not in DEVICES:
        raise ValueError(f"device={device!r} is not supported; use one of {', '.join(DEVICES)}.")
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision={precision!r} is not supported; use one of {', '.join(PRECISIONS)}."
        )
    idata_kwargs = dict(idata_kwargs or {})
    log_likelihood = bool(idata_kwargs.pop("log_likelihood", False))
    _refuse_unknown("sample(idata_kwargs=...)", idata_kwargs)
    return Request(
        draws=draws,
        tune=tune,
        chains=chains,
        initvals=initvals,
        jitter=jitter,
        jitter_max_retries=_check_count("jitter_max_retries", jitter_max_retries, 0),
        program_kwargs={**program_kwargs, "adaptation": adaptation},
        var_names=None if var_names is None else list(var_names),
        progressbar=bool(progressbar) and not quiet,
        quiet=bool(quiet),
        compute_convergence_checks=bool(compute_convergence_checks),
        keep_warmup=not discard_tuned_samples,
        log_likelihood=log_likelihood,
        chunk_size=_check_count("chunk_size", chunk_size, 1) if chunk_size else None,
        chunk_seconds=None,
        device=device,
        precision=precision,
        chain_method=check_chain_method(chain_method),
    )


_REQUEST_ARGS = frozenset(inspect.signature(_request).parameters)
"""The sampling options both ``sample`` and ``sample_batched`` take and validate alike."""


def _step_kwargs(kwargs: dict) -> dict:
    """Pop the NUTS arguments PyMC's ``sample`` forwards from its keywords to the step."""
    return {name: kwargs.pop(name) for name in list(kwargs) if name in NUTS_OPTIONS}


def _seeds(random_seed, chains: int) -> tuple[list[int], int]:
    """Per-chain seeds for the starting points, and one seed for the sampler's keys."""
    rng = np.random.default_rng(random_seed)
    return [int(s) for s in rng.integers(2**30, size=chains)], int(rng.integers(2**31))


def sample(
    draws: int = 1000,
    *,
    tune: int = 1000,
    chains: int | None = None,
    cores: int | None = None,
    random_seed=None,
    initvals=None,
    init: str = "auto",
    jitter_max_retries: int = 10,
    target_accept: float | None = None,
    max_treedepth: int | None = None,
    var_names: Sequence[str] | None = None,
    progressbar: bool = True,
    quiet: bool = False,
    compute_convergence_checks: bool = True,
    discard_tuned_samples: bool = True,
    idata_kwargs: dict | None = None,
    model: Model | None = None,
    chunk_size: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    device: str = "auto",
    precision: str = "float64",
    nuts: dict | None = None,
    chain_method: str = "auto",
    **kwargs,
):
    """Draw samples from the posterior with NUTS compiled through JAX.

    Arguments mean what they mean in ``pymc.sample``. In addition:

    Parameters
    ----------
    chains : int, optional
        Number of chains (default 4), spread over devices.
    cores : int, optional
        Accepted for compatibility with ``pymc.sample``; chains are spread over
        all host devices hiddenjax exposes (one per core).
    init : str, default "auto"
        ``"auto"`` jitters the starts and adapts nutpie's low-rank modified mass
        matrix up to 128 unconstrained dimensions, Stan's windowed diagonal above
        (chosen by effective samples per gradient: docs/benchmarks/adaptation.md).
        ``"adapt_full"`` adapts a dense mass matrix, ``"adapt_diag_grad"`` the
        gradient-based diagonal; each with or without ``"jitter+"``. ADVI and MAP inits are refused.
        hiddenjax also accepts ``"adapt_low_rank"`` and ``"jitter+adapt_low_rank"``:
        nutpie's low-rank modified mass matrix (``low_rank_modified_mass_matrix=True``),
        the gradient-based diagonal times a correction along at most 10 directions of
        strong posterior correlation, estimated at each window end.
    target_accept, max_treedepth : optional
        As in PyMC (defaults 0.8 and 10); also accepted inside ``nuts``, as are
        ``early_max_treedepth`` (8), ``step_scale`` (0.25) and ``Emax`` (1000),
        which may also be given as keywords. Any other NUTS argument is refused.
    chunk_size : int, optional
        Steps per compiled call between host copies; every call runs this many.
        By default calls are timed instead: the first runs 25 steps and the
        next ones as many as take about a second (at least 200), up to a chunk
        of 2,000 steps whose draws fit 64 MiB, or 200 steps, fewer when the chains'
        draws of that many steps would take more than a quarter of the device's
        memory (1 GiB on CPU). The chunk's size (the most steps a call runs) is in
        ``posterior.attrs["chunk_size"]``.
    checkpoint : str or path, optional
        A netCDF file written after every chunk with the draws so far and the
        sampler's state. If it exists, the run continues from it (after a
        crash, or with more ``draws`` to extend a finished run) and gives the
        draws an uninterrupted run would have given.
    device : {"auto", "cpu", "gpu"}
        Where to run.
    precision : {"float64", "float32"}
        Floating-point precision of the model's computations.
    chain_method : {"auto", "vectorized", "sequential"}
        How each device runs its share of the chains: vectorised in lockstep
        (every step waits for the chain with the longest trajectory), or one
        after another. ``"auto"`` runs them one after another unless the model
        reads a large shared dataset (at least 2**18 entries), which vectorised
        chains read once for all. The choice depends on shapes only, never on
        the number of devices.

    Returns
    -------
    arviz.InferenceData
        ``posterior``, ``sample_stats`` (PyMC's NUTS names), ``observed_data``,
        ``constant_data`` and, when asked for, ``log_likelihood`` and warmup groups.
    """
    step_kwargs = _step_kwargs(kwargs)
    _refuse_unknown("sample", kwargs)
    request = _request(**{k: v for k, v in locals().items() if k in _REQUEST_ARGS})
    model = modelcontext(model)
    configure(precision)
    return _sample_one(model, request, random_seed,
                       None if checkpoint is None else os.fspath(checkpoint))


_RUNNERS: dict = {}
_MAX_RUNNERS = 16


def _runner(compiled, request: Request, chains: int, data_per_chain: bool = False):
    """The execution runner for this compiled model and run shape, built once."""
    from hiddenjax.execution.devices import resolve_devices
    from hiddenjax.execution.precision import in_precision
    from hiddenjax.execution.runner import ChainFunctions, Runner
    from hiddenjax.samplers import build_nuts_program

    devices = resolve_devices(request.device)
    key = (id(compiled), request.tune, request.chunk_size, chains,
           tuple(sorted(request.program_kwargs.items())), request.log_likelihood,
           request.precision, tuple(devices), data_per_chain, request.chain_method)
    if key in _RUNNERS and _RUNNERS[key][0] is compiled:
        return _RUNNERS[key][1]
    fns = ChainFunctions(
        in_precision(compiled.logdensity, request.precision),
        in_precision(compiled.constrain, request.precision),
        in_precision(compiled.loglik, request.precision) if request.log_likelihood else None,
        digest=(None if compiled.digest is None else
                f"{compiled.digest}|{request.precision}|loglik={request.log_likelihood}"),
    )
    factory = partial(build_nuts_program, num_tune=request.tune, **request.program_kwargs)
    runner = Runner(factory, fns, request.tune, request.chunk_size, chains, devices,
                    data_per_chain=data_per_chain, chain_method=request.chain_method)
    if len(_RUNNERS) >= _MAX_RUNNERS:
        _RUNNERS.pop(next(iter(_RUNNERS)))
    _RUNNERS[key] = (compiled, runner)
    return runner


def _position_shape(graph, request: Request, chains: int) -> np.ndarray:
    """An array shaped and typed as the run's starting positions (its values unused)."""
    from hiddenjax.execution.devices import float_dtype

    return np.zeros((chains, graph.layout.size), float_dtype(request.precision))


def _starts(model, graph, check, request: Request, jitter_seeds, fns=None):
    """Checked starting positions, one per chain, in the run's precision.

    ``check(theta) -> (logp, grad)`` evaluates the model on the host (``Runner.check``).
    """
    from hiddenjax.execution.devices import float_dtype
    from hiddenjax.model.initial import initial_positions

    positions = initial_positions(
        model, graph.layout, jitter_seeds, check, initvals=request.initvals,
        jitter=request.jitter, jitter_max_retries=request.jitter_max_retries, fns=fns,
    )
    return positions.astype(float_dtype(request.precision))


def _with_chunk_size(request: Request, graph, chains: int, budget: int,
                     timed: bool = False) -> Request:
    """``request`` with its chunk size: as asked, else ``DEFAULT_CHUNK`` steps or as many
    as keep ``chains`` chains' draws within ``budget`` bytes (``memory_budget``).

    ``timed`` (when not asked): a chunk of up to ``TIMED_CHUNK`` steps whose
    calls run about ``CHUNK_SECONDS`` each (``RunPlan.chunk_seconds``).
    """
    from hiddenjax.execution.runner import CHUNK_SECONDS, chunk_steps, timed_chunk_steps

    if request.chunk_size is not None:
        return request
    rows = timed_chunk_steps if timed else chunk_steps
    size = rows(request.tune + request.draws, _step_bytes(graph, request), chains, budget)
    return request._replace(chunk_size=size, chunk_seconds=CHUNK_SECONDS if timed else None)


def _step_bytes(graph, request: Request) -> int | None:
    """Bytes one chain's step adds to a chunk: draws, log-likelihood, statistics."""
    from hiddenjax.execution.runner import STATS_BYTES
    from hiddenjax.model import draw_bytes

    draws = draw_bytes(graph, request.log_likelihood)
    return None if draws is None else draws + STATS_BYTES


def _plan(request: Request, seed):
    from hiddenjax.execution.runner import RunPlan

    return RunPlan(tune=request.tune, draws=request.draws, seed=seed,
                   chunk_size=request.chunk_size, keep_warmup=request.keep_warmup,
                   chunk_seconds=request.chunk_seconds)


def _sample_one(model: Model, request: Request, random_seed, checkpoint: str | None):
    import hiddenjax.samplers  # noqa: F401  (the program's state types, before prefetching)
    from hiddenjax.compile.cache import compiled_model
    from hiddenjax.execution.devices import memory_budget, resolve_devices
    from hiddenjax.execution.progress import SamplingProgress
    from hiddenjax.execution.runner import prefetch_program, run_chains
    from hiddenjax.model import current_data, data_context, structure_key

    fingerprint = repr((structure_key(model, request.var_names), request.tune, request.chains,
                        sorted(request.program_kwargs.items()), request.log_likelihood,
                        request.precision, request.chain_method))
    devices = resolve_devices(request.device)
    # The program's key needs the model's graphs; its likely value does not, so
    # loading it starts now, beside reading the model.
    hint = repr((fingerprint, request.chunk_size, [str(d) for d in devices]))
    prefetch_program(hint, request.chains, devices)
    graph, compiled = compiled_model(model, request.var_names)
    request = _with_chunk_size(request, graph, request.chains, memory_budget(request.device),
                               timed=True)
    data = current_data(graph)
    jitter_seeds, sampler_seed = _seeds(random_seed, request.chains)
    runner = _runner(compiled, request, request.chains)
    shape = _position_shape(graph, request, request.chains)
    start = time.perf_counter()
    # XLA compiles the chunk program in a thread while the starting points are found.
    compiled_chunk = runner.start_compile(shape, data, hint=hint)  # settles the devices
    positions = _starts(model, graph, runner.check(shape, data), request, jitter_seeds)
    plan = _plan(request, sampler_seed)
    _, compile_time = compiled_chunk()
    if not request.quiet:
        _log.info(f"Sampling {request.chains} chains with hiddenjax NUTS on {runner.mesh.devices.size} device(s)")
    with SamplingProgress(plan.tune + plan.draws, plan.tune, enabled=request.progressbar) as bar:
        result = run_chains(runner, data, positions, plan, progress=bar.update,
                            checkpoint=checkpoint, fingerprint=fingerprint)
    result = result._replace(compile_time=result.compile_time + compile_time)
    elapsed = time.perf_counter() - start
    idata = _inference_data(compiled, result, plan, elapsed, data_context(model))
    _report(idata, model, result, plan, request, elapsed, label="")
    return idata


def _inference_data(compiled, result, plan, elapsed, context):
    from hiddenjax.results import build_inference_data

    names = compiled.output_names
    return build_inference_data(
        dict(zip(names, result.outputs)),
        result.stats,
        coords=context.coords,
        dims=context.dims,
        observed_data=context.observed_data,
        constant_data=context.constant_data,
        attrs={
            "sampling_time": elapsed,
            "tuning_steps": plan.tune,
            "compile_time": result.compile_time,
            "chunk_size": plan.chunk_size,
        },
        warmup_posterior=(
            dict(zip(names, result.warmup_outputs)) if result.warmup_outputs else None
        ),
        warmup_sample_stats=result.warmup_stats,
        log_likelihood=(
            dict(zip(compiled.loglik_names, result.loglik)) if result.loglik else None
        ),
    )


@contextlib.contextmanager
def _arviz_without_numba():
    """ArviZ's numpy code paths for a moment: with numba installed, ArviZ's first
    ``ess`` in a process compiles a numba kernel (about 0.5 s), longer than the
    diagnostics themselves take with numpy."""
    from arviz.utils import Numba

    before = Numba.numba_flag
    Numba.numba_flag = False
    try:
        yield
    finally:
        Numba.numba_flag = before


def _report(idata, model, result, plan, request: Request, elapsed: float, label: str) -> None:
    """Interrupt warning, PyMC's closing log line and convergence checks."""
    from pymc.stats.convergence import log_warnings, run_convergence_checks

    kept = max(result.steps_done - plan.tune, 0)
    if result.interrupted:
        idata.posterior.attrs["interrupted"] = 1
        warnings.warn(
            f"Sampling was interrupted after {result.steps_done} of {plan.tune + plan.draws} "
            f"steps per chain; {kept} draws per chain were kept"
            + (" (still in warmup: no posterior draws yet)." if kept == 0 else "."),
            RuntimeWarning,
            stacklevel=4,
        )
    chains = request.chains
    if not request.quiet:
        _log.info(
            f"{label}Sampling {chains} chains for {plan.tune:_} tune and {kept:_} draw iterations "
            f"({chains * plan.tune:_} + {chains * kept:_} draws total) took {elapsed:.0f} seconds."
        )
    if request.compute_convergence_checks and kept > 0:
        with _arviz_without_numba():
            found = run_convergence_checks(idata, model)
        log_warnings([dataclasses.replace(w, message=label + w.message) for w in found])


def sample_batched(
    datasets,
    *,
    model: Model | None = None,
    draws: int = 1000,
    tune: int = 1000,
    chains: int | None = None,
    random_seed=None,
    initvals=None,
    init: str = "auto",
    jitter_max_retries: int = 10,
    target_accept: float | None = None,
    max_treedepth: int | None = None,
    var_names: Sequence[str] | None = None,
    progressbar: bool = True,
    quiet: bool = False,
    compute_convergence_checks: bool = True,
    discard_tuned_samples: bool = True,
    idata_kwargs: dict | None = None,
    chunk_size: int | None = None,
    device: str = "auto",
    precision: str = "float64",
    nuts: dict | None = None,
    **kwargs,
):
    """Fit the same model to many datasets in one compiled program.

    Parameters
    ----------
    datasets : list of dict, dict of dict, or dict of stacked arrays
        Values for the model's ``pm.Data`` containers and observed variables,
        one dict per dataset (every such variable must be given). A dict of
        dicts names the datasets; a dict of arrays with a leading dataset axis
        is read as a list.
    random_seed : int, optional
        Seeds one seed per dataset (stored in each result's
        ``posterior.attrs["random_seed"]``): dataset ``i`` starts as
        ``hj.sample(random_seed=that seed)`` does on that dataset alone. The
        draws agree with that run in distribution; they are equal only up to
        rounding, which the batch width changes, so over long runs with many
        datasets chains can drift apart from the single-dataset run.

    Other arguments mean what they mean in :func:`sample`. Datasets whose
    arrays differ in shape are grouped by shape; each group is compiled once.
    A group whose chunk of draws would take more than a quarter of the
    device's memory (1 GiB where the device does not report it) runs as
    several near-equal runs of the same compiled program, one after another.

    Returns
    -------
    list or dict of arviz.InferenceData
        One per dataset, in the order (or under the names) given.
    """
    from hiddenjax.batched import run_batched, split_datasets

    step_kwargs = _step_kwargs(kwargs)
    _refuse_unknown("sample_batched", kwargs)
    request = _request(**{k: v for k, v in locals().items() if k in _REQUEST_ARGS})
    model = modelcontext(model)
    names, dicts = split_datasets(datasets)
    configure(precision)
    seeds = [int(s) for s in np.random.default_rng(random_seed).integers(2**31, size=len(dicts))]
    results = run_batched(model, dicts, seeds, request, names)
    return dict(zip(names, results)) if names is not None else results
