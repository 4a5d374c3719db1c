"""Initial points as PyMC makes them: the model's initial point, jittered, retried."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from pymc.exceptions import SamplingError
from pymc.initial_point import make_initial_point_fns_per_chain
from pymc.model import Model

from hiddenjax.model.graph import FlatLayout

# ``check(theta) -> (logp, grad)`` on one flat position, evaluated on the host.
CheckFn = Callable[[np.ndarray], tuple[float, np.ndarray]]


def initial_point_fns(model: Model, chains: int, *, initvals=None, jitter: bool = True):
    """PyMC's seeded initial-point function of each chain (compiled once, reusable)."""
    return make_initial_point_fns_per_chain(
        model=model,
        overrides=initvals,
        jitter_rvs=set(model.free_RVs) if jitter else set(),
        chains=chains,
    )


def initial_positions(
    model: Model,
    layout: FlatLayout,
    seeds: Sequence[int],
    check: CheckFn,
    *,
    initvals=None,
    jitter: bool = True,
    jitter_max_retries: int = 10,
    fns=None,
) -> np.ndarray:
    """One flat starting position per seed, finite in log-density and gradient.

    Follows ``pm.sample``: each chain starts at the model's initial point (or
    ``initvals``) with U(-1, 1) jitter on the unconstrained values; a start with
    a non-finite log-density is drawn again with a new seed up to
    ``jitter_max_retries`` times, then reported with PyMC's ``SamplingError``.
    ``fns`` reuses functions from :func:`initial_point_fns`.
    """
    if fns is None:
        fns = initial_point_fns(model, len(seeds), initvals=initvals, jitter=jitter)
    starts = []
    for fn, seed in zip(fns, seeds):
        rng = np.random.default_rng(seed)
        for attempt in range(jitter_max_retries + 1 if jitter else 1):
            point = fn(seed)
            theta = layout.ravel(point)
            logp, grad = check(theta)
            if np.isfinite(logp) and np.all(np.isfinite(grad)):
                break
            seed = int(rng.integers(2**30))
        else:
            raise_bad_start(model, layout, point, grad)
        starts.append(theta)
    return np.stack(starts)


def raise_bad_start(model: Model, layout: FlatLayout, point: dict, grad: np.ndarray) -> None:
    """Raise PyMC's ``SamplingError`` for a start with non-finite log-density or gradient."""
    # PyMC's own check names each variable with a non-finite log-density term.
    model.check_start_vals({k: np.array(v) for k, v in point.items()})
    bad = {
        name: point[name]
        for name, g in layout.unravel(grad).items()
        if not np.all(np.isfinite(g))
    }
    raise SamplingError(
        "Initial evaluation of model at starting point failed!\n"
        f"Starting values:\n{point}\n\n"
        "The gradient of the log-density is not finite with respect to: "
        + ", ".join(f"{name} = {value}" for name, value in bad.items())
        + "\nYou can call `model.debug()` for more details, or give finite, "
        "well-inside-the-support starting values with `initvals`."
    )
