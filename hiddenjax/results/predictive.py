"""InferenceData groups for predictive draws and pointwise log-likelihoods, laid out as PyMC's.

Everything here takes host numpy dicts. The groups are built by PyMC's own
converters (``pm.to_inference_data`` and ``pm.predictions_to_inference_data``,
which only arrange arrays) or by ArviZ's ``dict_to_dataset`` with the
arguments PyMC's converter uses, so names, dims, coords, attrs and groups are
PyMC's exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pymc
import xarray as xr
from arviz import InferenceData, dict_to_dataset
from arviz import rcParams as arviz_rcparams
from pymc.backends.arviz import coords_and_dims_for_inferencedata, find_constants, find_observations
from pymc.model import Model

_PYMC_ATTRS = {"inference_library": pymc.__name__, "inference_library_version": pymc.__version__}
"""The attrs ``dict_to_dataset(..., library=pymc)`` adds. ArviZ reads the version
from the package metadata on every call (about 2 ms, three times per group set);
the module attribute holds the same string."""

_CONVERTED_KWARGS = frozenset({"coords", "dims", "sample_dims"})
"""``idata_kwargs`` that :func:`posterior_predictive_inference_data` handles
itself; any other sends the call through PyMC's converter."""


def pymc_dataset(values: Mapping[str, np.ndarray], **kwargs) -> xr.Dataset:
    """``arviz.dict_to_dataset(values, library=pymc, **kwargs)``, without the metadata lookup."""
    return dict_to_dataset(dict(values), library=None, attrs=dict(_PYMC_ATTRS), **kwargs)


def log_likelihood_dataset(
    values: Mapping[str, np.ndarray],
    *,
    coords: Mapping,
    dims: Mapping,
    sample_dims: Sequence[str],
) -> xr.Dataset:
    """A ``log_likelihood`` dataset as ``pymc.compute_log_likelihood`` builds it.

    ``values`` have the sample dims first. As in PyMC, the sample dims get
    default integer coordinates.
    """
    return pymc_dataset(
        values,
        dims=dict(dims),
        coords=dict(coords),
        default_dims=list(sample_dims),
        skip_event_dims=True,
    )


def prior_inference_data(
    prior: Mapping[str, np.ndarray], model: Model, idata_kwargs: Mapping | None = None
) -> InferenceData:
    """``prior``, ``prior_predictive``, ``observed_data`` and ``constant_data`` groups.

    ``prior`` holds ``(draws, *shape)`` arrays; observed variables go to
    ``prior_predictive`` and the rest to ``prior``, as in PyMC.
    """
    return pymc.to_inference_data(prior=dict(prior), model=model, **dict(idata_kwargs or {}))


def posterior_predictive_inference_data(
    draws: Mapping[str, np.ndarray],
    model: Model,
    *,
    sample_dims: Sequence[str],
    stacked_coords: Mapping[str, np.ndarray] | None,
    predictions: bool,
    idata: InferenceData | None,
    extend_inferencedata: bool,
    idata_kwargs: Mapping | None = None,
) -> InferenceData:
    """The ``posterior_predictive`` (or ``predictions``) group as PyMC's sampler returns it.

    ``draws`` hold arrays with the sample dims first. With
    ``extend_inferencedata`` the group is added to ``idata`` in place and
    ``idata`` is returned.
    """
    kwargs = dict(idata_kwargs or {})
    kwargs.setdefault("coords", {})
    kwargs.setdefault("sample_dims", list(sample_dims))
    if stacked_coords is not None:
        kwargs["coords"] = {**stacked_coords, **kwargs["coords"]}
    draws = dict(draws)
    if predictions:
        if extend_inferencedata:
            kwargs.setdefault("idata_orig", idata)
            kwargs.setdefault("inplace", True)
        return pymc.predictions_to_inference_data(draws, model=model, **kwargs)
    if set(kwargs) <= _CONVERTED_KWARGS:
        new = _posterior_predictive_groups(draws, model, **kwargs)
    else:
        new = pymc.to_inference_data(posterior_predictive=draws, model=model, **kwargs)
    if extend_inferencedata and idata is not None:
        idata.extend(new)
        return idata
    return new


def _posterior_predictive_groups(
    draws: dict[str, np.ndarray],
    model: Model,
    *,
    coords: Mapping,
    sample_dims: Sequence[str],
    dims: Mapping | None = None,
) -> InferenceData:
    """What ``pymc.to_inference_data(posterior_predictive=draws, model=model, ...)`` returns.

    The same ``dict_to_dataset`` calls as PyMC's ``InferenceDataConverter``
    (``posterior_predictive``, ``observed_data``, ``constant_data`` with its
    scalars squeezed), minus the converter's per-call overhead.
    """
    model_coords, model_dims = coords_and_dims_for_inferencedata(model)
    coords = {**model_coords, **coords}
    dims = {**model_dims, **(dims or {})}
    sample_dims = list(sample_dims)
    groups = {
        "posterior_predictive": pymc_dataset(
            draws, coords=coords, dims={name: sample_dims + list(dims.get(name, [])) for name in draws},
            default_dims=sample_dims,
        ),
        "observed_data": pymc_dataset(find_observations(model), coords=coords, dims=dims,
                                      default_dims=[]),
    }
    constants = find_constants(model)
    if constants:
        dataset = pymc_dataset(constants, coords=coords, dims=dims, default_dims=[])
        scalars = [f"{name}_dim_0" for name, value in constants.items() if np.ndim(value) == 0]
        groups["constant_data"] = dataset.squeeze(scalars, drop=True) if scalars else dataset
    return InferenceData(save_warmup=arviz_rcparams["data.save_warmup"], **groups)


def add_log_likelihood(idata: InferenceData, dataset: xr.Dataset) -> InferenceData:
    """Add a ``log_likelihood`` group to ``idata`` in place, as PyMC does."""
    idata.add_groups({"log_likelihood": dataset})
    return idata


def approximation_inference_data(samples: Mapping[str, np.ndarray], model: Model) -> InferenceData:
    """``posterior`` (one chain), ``observed_data`` and ``constant_data``, as PyMC's
    ``Approximation.sample`` returns them. ``samples`` hold ``(draws, *shape)`` arrays."""
    coords, dims = coords_and_dims_for_inferencedata(model)
    groups = {
        "posterior": pymc_dataset({k: np.asarray(v)[None] for k, v in samples.items()},
                                  coords=coords, dims=dims),
    }
    for group, values in (("observed_data", find_observations(model)),
                          ("constant_data", find_constants(model))):
        if values:
            groups[group] = pymc_dataset(values, coords=coords, dims=dims, default_dims=[])
    return InferenceData(**groups)
