"""InferenceData for a NUTS run, laid out as ``pm.sample`` lays it out.

Everything here takes host numpy arrays and plain dicts. Groups are built with
ArviZ's ``dict_to_dataset`` and the arguments PyMC's converter
(``pymc.backends.arviz.InferenceDataConverter``) passes, so group names,
variable names, dims, coords and attrs are PyMC's.

Sampler statistics go through one table, :data:`SAMPLE_STATS`, from the
sampler's per-step field names to the names and dtypes PyMC's NUTS gives its
``sample_stats``. PyMC's per-step timing counters (:data:`TIMING_STATS`) are
not in the table: they time one Python step at a time, which a compiled loop
over many steps cannot measure, so they are never produced.
"""

from __future__ import annotations

import importlib.metadata
import types
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import xarray as xr
from arviz import InferenceData, dict_to_dataset

__all__ = [
    "SAMPLE_STATS",
    "TIMING_STATS",
    "StatSpec",
    "build_inference_data",
    "data_dataset",
    "divergence_count",
    "draws_dataset",
    "log_likelihood_dataset",
    "sample_stats_dataset",
]

SAMPLE_DIMS = ("chain", "draw")


class StatSpec(NamedTuple):
    """How one sampler statistic appears in ``sample_stats``."""

    name: str
    """Variable name in ``sample_stats``, as PyMC's NUTS names it."""
    dtype: type
    """Dtype PyMC's NUTS stores it with, whatever the sampling precision."""


SAMPLE_STATS: Mapping[str, StatSpec] = types.MappingProxyType(
    {
        "lp": StatSpec("lp", np.float64),
        "acceptance_rate": StatSpec("acceptance_rate", np.float64),
        "diverging": StatSpec("diverging", np.bool_),
        "energy": StatSpec("energy", np.float64),
        "energy_error": StatSpec("energy_error", np.float64),
        "max_energy_error": StatSpec("max_energy_error", np.float64),
        "n_steps": StatSpec("n_steps", np.float64),
        "step_size": StatSpec("step_size", np.float64),
        "step_size_bar": StatSpec("step_size_bar", np.float64),
        "tree_depth": StatSpec("tree_depth", np.int64),
        "reached_max_treedepth": StatSpec("reached_max_treedepth", np.bool_),
        "index_in_trajectory": StatSpec("index_in_trajectory", np.int64),
        "largest_eigval": StatSpec("largest_eigval", np.float64),
        "smallest_eigval": StatSpec("smallest_eigval", np.float64),
    }
)
"""Sampler field name -> ``sample_stats`` name and dtype, as PyMC's NUTS stores them.

Every field a sampler reports must have a row here; any other field is refused.
``divergences`` is not a row: it is derived from ``diverging`` (see
:func:`sample_stats_dataset`).
"""

TIMING_STATS = ("perf_counter_diff", "perf_counter_start", "process_time_diff")
"""PyMC NUTS statistics that time each Python step; never produced here."""

DIVERGENCE_COUNT = "divergences"


def _library() -> types.SimpleNamespace:
    """Stand-in module for ArviZ's ``library`` argument, without importing hiddenjax."""
    try:
        version = importlib.metadata.version("hiddenjax")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return types.SimpleNamespace(__name__="hiddenjax", __version__=version)


_LIBRARY = _library()


def build_inference_data(
    posterior: Mapping[str, np.ndarray],
    sample_stats: Mapping[str, np.ndarray],
    *,
    coords: Mapping[str, np.ndarray | list],
    dims: Mapping[str, Sequence[str]],
    observed_data: Mapping[str, np.ndarray] | None = None,
    constant_data: Mapping[str, np.ndarray] | None = None,
    attrs: Mapping | None = None,
    warmup_posterior: Mapping[str, np.ndarray] | None = None,
    warmup_sample_stats: Mapping[str, np.ndarray] | None = None,
    log_likelihood: Mapping[str, np.ndarray] | None = None,
) -> InferenceData:
    """InferenceData with the groups, names, dims, coords and attrs ``pm.sample`` gives.

    Parameters
    ----------
    posterior : mapping of str to numpy.ndarray
        Variable name to ``(chain, draw, *shape)`` draws: constrained free
        variables and Deterministics. Variables keep the mapping's order
        (``pm.sample`` lists untransformed free variables, then transformed
        ones, then Deterministics).
    sample_stats : mapping of str to numpy.ndarray
        Sampler field name to ``(chain, draw)`` values. Names are looked up in
        :data:`SAMPLE_STATS`, which gives the stored name and dtype; an unknown
        name raises ``ValueError``. When ``diverging`` is given, PyMC's
        ``divergences`` (running count of post-warmup divergences) is added.
    coords : mapping
        Model coords, as ``pymc.backends.arviz.coords_and_dims_for_inferencedata``
        returns them.
    dims : mapping of str to list of str
        Dims of each model variable, from the same function. Variables without
        dims get ArviZ's ``{name}_dim_{i}`` dims with integer coords.
    observed_data, constant_data : mapping, optional
        Observed values and ``pm.Data`` values by name, as
        ``pymc.backends.arviz.find_observations`` and ``find_constants`` return them.
    attrs : mapping, optional
        Extra attrs (``sampling_time``, ``tuning_steps``, ...) for the
        ``posterior`` and ``sample_stats`` groups and their warmup groups, as
        PyMC does. They are added to ``created_at``, ``arviz_version``,
        ``inference_library`` and ``inference_library_version`` and override
        them on a clash.
    warmup_posterior, warmup_sample_stats : mapping, optional
        Warmup draws and statistics, same layout, for ``warmup_posterior`` and
        ``warmup_sample_stats`` (``pm.sample(discard_tuned_samples=False)``).
    log_likelihood : mapping of str to numpy.ndarray, optional
        Observed variable name to ``(chain, draw, *observed shape)`` pointwise
        log-likelihood values, stored with the observed variable's dims.

    Returns
    -------
    arviz.InferenceData
        Groups among ``posterior``, ``log_likelihood``, ``sample_stats``,
        ``observed_data``, ``constant_data``, ``warmup_posterior`` and
        ``warmup_sample_stats``; empty or absent inputs give no group.

    Raises
    ------
    ValueError
        If a statistic is not in :data:`SAMPLE_STATS`, or if arrays disagree on
        the number of chains or draws.
    """
    coords, dims = dict(coords), {name: list(d) for name, d in dims.items()}
    _check_sample_shapes(posterior, sample_stats, log_likelihood, label="")
    _check_sample_shapes(warmup_posterior, warmup_sample_stats, None, label="warmup_")
    _check_same_chains((posterior, sample_stats), (warmup_posterior, warmup_sample_stats))
    groups = {
        "posterior": draws_dataset(posterior, coords=coords, dims=dims, attrs=attrs),
        "log_likelihood": log_likelihood_dataset(log_likelihood or {}, coords=coords, dims=dims),
        "sample_stats": sample_stats_dataset(sample_stats, attrs=attrs, warmup=False),
        "observed_data": data_dataset(observed_data or {}, coords=coords, dims=dims),
        "constant_data": data_dataset(
            constant_data or {}, coords=coords, dims=dims, squeeze_scalars=True
        ),
    }
    if warmup_posterior is not None:
        groups["warmup_posterior"] = draws_dataset(
            warmup_posterior, coords=coords, dims=dims, attrs=attrs
        )
    if warmup_sample_stats is not None:
        groups["warmup_sample_stats"] = sample_stats_dataset(
            warmup_sample_stats, attrs=attrs, warmup=True
        )
    # InferenceData leaves out empty datasets, as PyMC relies on too.
    return InferenceData(**groups)


def draws_dataset(
    values: Mapping[str, np.ndarray],
    *,
    coords: Mapping,
    dims: Mapping[str, list[str]],
    attrs: Mapping | None = None,
) -> xr.Dataset:
    """A ``posterior`` (or ``warmup_posterior``) dataset from ``(chain, draw, *shape)`` arrays."""
    return dict_to_dataset(
        {name: np.asarray(v) for name, v in values.items()},
        library=_LIBRARY,
        coords=dict(coords),
        dims=dict(dims),
        attrs=dict(attrs) if attrs is not None else None,
    )


def sample_stats_dataset(
    stats: Mapping[str, np.ndarray], *, attrs: Mapping | None = None, warmup: bool = False
) -> xr.Dataset:
    """A ``sample_stats`` dataset with PyMC's NUTS names and dtypes.

    Each field is renamed and cast by :data:`SAMPLE_STATS`. With a
    ``diverging`` field, ``divergences`` is added as PyMC counts it: the running
    number of divergent transitions since warmup ended, so all zeros during
    warmup (``warmup=True``).
    """
    _check_stat_names(stats)
    data = {}
    for field, spec in SAMPLE_STATS.items():
        if field in stats:
            data[spec.name] = np.asarray(stats[field]).astype(spec.dtype)
    if "diverging" in stats:
        data[DIVERGENCE_COUNT] = divergence_count(stats["diverging"], warmup=warmup)
    return dict_to_dataset(
        data, library=_LIBRARY, attrs=dict(attrs) if attrs is not None else None
    )


def divergence_count(diverging: np.ndarray, *, warmup: bool) -> np.ndarray:
    """PyMC's ``divergences`` statistic from ``(chain, draw)`` divergence flags.

    PyMC's NUTS counts divergences only once tuning has stopped, and reports
    the running count at each draw.
    """
    diverging = np.asarray(diverging, dtype=np.bool_)
    if warmup:
        return np.zeros(diverging.shape, dtype=np.int64)
    return np.cumsum(diverging, axis=1, dtype=np.int64)


def log_likelihood_dataset(
    values: Mapping[str, np.ndarray], *, coords: Mapping, dims: Mapping[str, list[str]]
) -> xr.Dataset:
    """A ``log_likelihood`` dataset as ``pymc.compute_log_likelihood`` builds it."""
    return dict_to_dataset(
        {name: np.asarray(v) for name, v in values.items()},
        library=_LIBRARY,
        coords=dict(coords),
        dims=dict(dims),
        default_dims=list(SAMPLE_DIMS),
        skip_event_dims=True,
    )


def data_dataset(
    values: Mapping[str, np.ndarray],
    *,
    coords: Mapping,
    dims: Mapping[str, list[str]],
    squeeze_scalars: bool = False,
) -> xr.Dataset:
    """An ``observed_data`` or ``constant_data`` dataset, without sample dims.

    ArviZ turns a scalar into a length-1 ``{name}_dim_0`` vector; PyMC squeezes
    that dim back out for ``constant_data`` only (``squeeze_scalars=True``).
    """
    values = {name: np.asarray(v) for name, v in values.items()}
    dataset = dict_to_dataset(
        values, library=_LIBRARY, coords=dict(coords), dims=dict(dims), default_dims=[]
    )
    if squeeze_scalars:
        for name in (n for n, v in values.items() if v.ndim == 0):
            dataset = dataset.squeeze(f"{name}_dim_0", drop=True)
    return dataset


def _check_stat_names(stats: Mapping[str, np.ndarray]) -> None:
    """Refuse statistics without a row in :data:`SAMPLE_STATS`."""
    unknown = [name for name in stats if name not in SAMPLE_STATS]
    if not unknown:
        return
    timing = [name for name in unknown if name in TIMING_STATS]
    hint = (
        f" {timing} time single Python steps in PyMC and are not produced by a "
        "compiled sampler."
        if timing
        else ""
    )
    raise ValueError(
        f"Sampler statistics {unknown} have no entry in "
        "hiddenjax.results.inference_data.SAMPLE_STATS, which maps each sampler field to "
        f"its PyMC NUTS name and dtype (known fields: {sorted(SAMPLE_STATS)}).{hint} "
        "Add a row to SAMPLE_STATS for a new statistic, or drop the field."
    )


def _check_sample_shapes(
    draws: Mapping[str, np.ndarray] | None,
    stats: Mapping[str, np.ndarray] | None,
    log_likelihood: Mapping[str, np.ndarray] | None,
    *,
    label: str,
) -> None:
    """Every array of one run must share its leading ``(chain, draw)`` shape."""
    shapes = {}
    for group, values, exact in (
        ("posterior", draws, False),
        ("sample_stats", stats, True),
        ("log_likelihood", log_likelihood, False),
    ):
        for name, value in (values or {}).items():
            shape = np.shape(value)
            if len(shape) < 2 or (exact and len(shape) != 2):
                need = "(chain, draw)" if exact else "(chain, draw, *shape)"
                raise ValueError(
                    f"{label}{group} variable {name!r} has shape {shape}, but must be "
                    f"{need}. Stack draws with the chain axis first, then the draw axis."
                )
            shapes[f"{label}{group}[{name!r}]"] = shape[:2]
    if len(set(shapes.values())) > 1:
        listing = ", ".join(f"{where}: {shape}" for where, shape in shapes.items())
        raise ValueError(
            f"Arrays disagree on (chain, draw): {listing}. All {label}posterior, "
            f"{label}sample_stats and log_likelihood arrays of one run must have the "
            "same number of chains and draws."
        )


def _check_same_chains(
    run: Sequence[Mapping[str, np.ndarray] | None],
    warmup: Sequence[Mapping[str, np.ndarray] | None],
) -> None:
    """Warmup and kept draws must come from the same chains."""

    def chains(groups):
        return {np.shape(v)[0] for values in groups for v in (values or {}).values()}

    kept, warm = chains(run), chains(warmup)
    if kept and warm and kept != warm:
        raise ValueError(
            f"Warmup arrays have {sorted(warm)} chains but posterior arrays have "
            f"{sorted(kept)}. Pass warmup draws and statistics of the same chains."
        )
