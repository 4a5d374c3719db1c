"""Public inference functions: PyMC's signatures, run on JAX."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from functools import partial

import numpy as np

from pymc.model import Model, modelcontext

from hiddenjax.execution.devices import DEVICES, configure

_log = logging.getLogger("hiddenjax")

INITS = {"auto": True, "jitter+adapt_diag": True, "adapt_diag": False}
"""Supported ``init`` strings, mapped to whether starts are jittered."""


def _refuse_unknown(kwargs: dict) -> None:
    if kwargs:
        names = ", ".join(repr(k) for k in kwargs)
        raise TypeError(
            f"hiddenjax.sample() does not support the argument(s) {names}. They would change "
            "how PyMC samples, and hiddenjax never ignores an argument silently: remove "
            "them, or use pymc.sample for that run."
        )


def _check_arguments(draws, tune, chains, target_accept, init, device) -> None:
    for name, value, low in (("draws", draws, 0), ("tune", tune, 0), ("chains", chains, 1)):
        if not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{name}={value!r} must be an integer >= {low}.")
    if not 0 < target_accept < 1:
        raise ValueError(f"target_accept={target_accept!r} must lie strictly between 0 and 1.")
    if init not in INITS:
        raise ValueError(
            f"init={init!r} is not supported by hiddenjax.sample; use one of "
            f"{', '.join(map(repr, INITS))}."
        )
    if device not in DEVICES:
        raise ValueError(f"device={device!r} is not supported; use one of {', '.join(DEVICES)}.")


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
    target_accept: float = 0.8,
    max_treedepth: int = 10,
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
    **kwargs,
):
    """Draw samples from the posterior with NUTS compiled through JAX.

    Arguments mean what they mean in ``pymc.sample``. In addition:

    Parameters
    ----------
    chains : int, optional
        Number of chains (default 4). Chains run vectorised and spread over
        devices, so extra chains cost little.
    cores : int, optional
        Accepted for compatibility with ``pymc.sample``; chains are spread over
        all host devices hiddenjax exposes (one per core).
    chunk_size : int, optional
        Steps per compiled call between host copies (default: up to 200).
    checkpoint : str or path, optional
        A netCDF file written after every chunk with the draws so far and the
        sampler's state. If it exists, the run continues from it (after a
        crash, or with more ``draws`` to extend a finished run) and gives the
        draws an uninterrupted run would have given.
    device : {"auto", "cpu", "gpu"}
        Where to run.
    precision : {"float64", "float32"}
        Floating-point precision of the model.

    Returns
    -------
    arviz.InferenceData
        ``posterior``, ``sample_stats`` (PyMC's NUTS names), ``observed_data``,
        ``constant_data`` and, when asked for, ``log_likelihood`` and warmup groups.
    """
    _refuse_unknown(kwargs)
    chains = 4 if chains is None else chains
    _check_arguments(draws, tune, chains, target_accept, init, device)
    model = modelcontext(model)
    idata_kwargs = dict(idata_kwargs or {})
    configure(precision)
    return _sample_nuts(
        model,
        draws=int(draws),
        tune=int(tune),
        chains=int(chains),
        random_seed=random_seed,
        initvals=initvals,
        jitter=INITS[init],
        jitter_max_retries=jitter_max_retries,
        program_kwargs={"target_accept": float(target_accept), "max_treedepth": int(max_treedepth)},
        var_names=None if var_names is None else list(var_names),
        progressbar=progressbar and not quiet,
        quiet=quiet,
        compute_convergence_checks=compute_convergence_checks,
        discard_tuned_samples=discard_tuned_samples,
        log_likelihood=bool(idata_kwargs.pop("log_likelihood", False)),
        chunk_size=chunk_size,
        checkpoint=None if checkpoint is None else os.fspath(checkpoint),
        device=device,
    )


_RUNNERS: dict = {}
_MAX_RUNNERS = 16


def _runner(compiled, *, tune, chunk_size, chains, program_kwargs, log_likelihood, device):
    """The execution runner for this compiled model and run shape, built once."""
    from hiddenjax.execution.devices import resolve_devices
    from hiddenjax.execution.runner import ChainFunctions, Runner
    from hiddenjax.samplers import build_nuts_program

    devices = resolve_devices(device)
    key = (id(compiled), tune, chunk_size, chains, tuple(sorted(program_kwargs.items())),
           log_likelihood, tuple(devices))
    if key in _RUNNERS and _RUNNERS[key][0] is compiled:
        return _RUNNERS[key][1]
    fns = ChainFunctions(
        compiled.logdensity, compiled.constrain, compiled.loglik if log_likelihood else None
    )
    factory = partial(build_nuts_program, num_tune=tune, **program_kwargs)
    runner = Runner(factory, fns, tune, chunk_size, chains, devices)
    if len(_RUNNERS) >= _MAX_RUNNERS:
        _RUNNERS.pop(next(iter(_RUNNERS)))
    _RUNNERS[key] = (compiled, runner)
    return runner


def _sample_nuts(model: Model, *, draws, tune, chains, random_seed, initvals, jitter,
                 jitter_max_retries, program_kwargs, var_names, progressbar, quiet,
                 compute_convergence_checks, discard_tuned_samples, log_likelihood,
                 chunk_size, checkpoint, device):
    from hiddenjax.compile.cache import compiled_model
    from hiddenjax.execution.host import host_value_and_grad
    from hiddenjax.execution.progress import SamplingProgress
    from hiddenjax.execution.runner import RunPlan, run_chains
    from hiddenjax.model import current_data, structure_key
    from hiddenjax.model.initial import initial_positions

    graph, compiled = compiled_model(model, var_names)
    data = current_data(graph)
    jitter_seeds, sampler_seed = _seeds(random_seed, chains)
    check = host_value_and_grad(compiled.logdensity, data)
    positions = initial_positions(
        model, graph.layout, jitter_seeds, check, initvals=initvals, jitter=jitter,
        jitter_max_retries=jitter_max_retries,
    )
    plan = RunPlan(
        tune=tune,
        draws=draws,
        seed=sampler_seed,
        chunk_size=int(chunk_size or min(200, max(tune + draws, 1))),
        keep_warmup=not discard_tuned_samples,
    )
    runner = _runner(compiled, tune=tune, chunk_size=plan.chunk_size, chains=chains,
                     program_kwargs=program_kwargs, log_likelihood=log_likelihood,
                     device=device)
    if not quiet:
        _log.info(f"Sampling {chains} chains with hiddenjax NUTS (JAX, {os.cpu_count()} cores)")
    start = time.perf_counter()
    with SamplingProgress(tune + draws, tune, enabled=progressbar) as bar:
        result = run_chains(
            runner, data, positions, plan, progress=bar.update, checkpoint=checkpoint,
            fingerprint=repr((structure_key(model, var_names), tune, chains,
                              sorted(program_kwargs.items()), log_likelihood)),
        )
    elapsed = time.perf_counter() - start
    return _finish(model, compiled, result, plan, elapsed, chains=chains, quiet=quiet,
                   compute_convergence_checks=compute_convergence_checks)


def _finish(model, compiled, result, plan, elapsed, *, chains, quiet,
            compute_convergence_checks):
    from pymc.stats.convergence import log_warnings, run_convergence_checks

    from hiddenjax.model import data_context
    from hiddenjax.results import build_inference_data

    names = compiled.output_names
    context = data_context(model)
    idata = build_inference_data(
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
        },
        warmup_posterior=(
            dict(zip(names, result.warmup_outputs)) if result.warmup_outputs else None
        ),
        warmup_sample_stats=result.warmup_stats,
        log_likelihood=(
            dict(zip(compiled.loglik_names, result.loglik)) if result.loglik else None
        ),
    )
    kept = max(result.steps_done - plan.tune, 0)
    if result.interrupted:
        import warnings

        idata.posterior.attrs["interrupted"] = 1
        warnings.warn(
            f"Sampling was interrupted after {result.steps_done} of {plan.tune + plan.draws} "
            f"steps per chain; {kept} draws per chain were kept"
            + (" (still in warmup: no posterior draws yet)." if kept == 0 else "."),
            RuntimeWarning,
            stacklevel=4,
        )
    if not quiet:
        _log.info(
            f"Sampling {chains} chains for {plan.tune:_} tune and {kept:_} draw iterations "
            f"({chains * plan.tune:_} + {chains * kept:_} draws total) took {elapsed:.0f} seconds."
        )
    if compute_convergence_checks and kept > 0:
        log_warnings(run_convergence_checks(idata, model))
    return idata
