"""InferenceData groups for predictive draws and pointwise log-likelihoods, laid out as PyMC's.

Everything here takes host numpy dicts. The groups are built by PyMC's own
converters (``pm.to_inference_data`` and ``pm.predictions_to_inference_data``,
which only arrange arrays) or by ArviZ's ``dict_to_dataset`` with the
arguments PyMC uses, so names, dims, coords and groups are PyMC's exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pymc
import xarray as xr
from arviz import InferenceData, dict_to_dataset
from pymc.model import Model


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
    return dict_to_dataset(
        dict(values),
        library=pymc,
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
    new = pymc.to_inference_data(posterior_predictive=draws, model=model, **kwargs)
    if extend_inferencedata and idata is not None:
        idata.extend(new)
        return idata
    return new


def add_log_likelihood(idata: InferenceData, dataset: xr.Dataset) -> InferenceData:
    """Add a ``log_likelihood`` group to ``idata`` in place, as PyMC does."""
    idata.add_groups({"log_likelihood": dataset})
    return idata


def approximation_inference_data(samples: Mapping[str, np.ndarray], model: Model) -> InferenceData:
    """``posterior`` (one chain), ``observed_data`` and ``constant_data``, as PyMC's
    ``Approximation.sample`` returns them. ``samples`` hold ``(draws, *shape)`` arrays."""
    from pymc.backends.arviz import (
        coords_and_dims_for_inferencedata,
        find_constants,
        find_observations,
    )

    coords, dims = coords_and_dims_for_inferencedata(model)
    groups = {
        "posterior": dict_to_dataset({k: np.asarray(v)[None] for k, v in samples.items()},
                                     library=pymc, coords=coords, dims=dims),
    }
    for group, values in (("observed_data", find_observations(model)),
                          ("constant_data", find_constants(model))):
        if values:
            groups[group] = dict_to_dataset(values, library=pymc, coords=coords, dims=dims,
                                            default_dims=[])
    return InferenceData(**groups)
