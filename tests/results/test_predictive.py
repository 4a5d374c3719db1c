"""The predictive groups are PyMC's converter's output, built without its overhead."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest
import xarray as xr

from hiddenjax.results.predictive import posterior_predictive_inference_data, pymc_dataset


def _model() -> pm.Model:
    coords = {"obs": ["a", "b", "c", "d"], "coef": [10, 20]}
    with pm.Model(coords=coords) as model:
        x = pm.Data("x", np.arange(8.0).reshape(4, 2), dims=("obs", "coef"))
        scale = pm.Data("scale", 2.5)
        beta = pm.Normal("beta", 0, 1, dims="coef")
        pm.Normal("y", x @ beta, scale, observed=[1.0, 2.0, 3.0, 4.0], dims="obs")
        pm.Poisson("k", 3.0, observed=np.array([[1, 2, 3], [4, 5, 6]]))
    return model


def _draws(rng: np.random.Generator, sample_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    return {"y": rng.normal(size=(*sample_shape, 4)),
            "k": rng.poisson(3.0, size=(*sample_shape, 2, 3))}


def _assert_identical_but_created_at(ours, theirs) -> None:
    assert list(ours.groups()) == list(theirs.groups())
    for group in theirs.groups():
        a, b = ours[group], theirs[group]
        xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
        assert list(a.attrs) == list(b.attrs)
        assert {k: v for k, v in a.attrs.items() if k != "created_at"} == \
               {k: v for k, v in b.attrs.items() if k != "created_at"}


@pytest.mark.parametrize("sample_dims, extra", [
    (["chain", "draw"], {}),
    (["sample"], {"coords": {"sample": np.arange(6) * 3}}),
    (["chain", "draw"], {"dims": {"k": ["row", "col"]}, "coords": {"row": ["r0", "r1"]}}),
])
def test_posterior_predictive_groups_equal_pymc_converter(sample_dims, extra):
    model = _model()
    sample_shape = (2, 3) if len(sample_dims) == 2 else (6,)
    draws = _draws(np.random.default_rng(0), sample_shape)
    ours = posterior_predictive_inference_data(
        draws, model, sample_dims=sample_dims, stacked_coords=None, predictions=False,
        idata=None, extend_inferencedata=False, idata_kwargs=extra,
    )
    theirs = pm.to_inference_data(posterior_predictive=draws, model=model,
                                  sample_dims=sample_dims, **{"coords": {}, **extra})
    _assert_identical_but_created_at(ours, theirs)


def test_model_without_data_containers_has_no_constant_data():
    with pm.Model() as model:
        pm.Normal("y", pm.Normal("mu"), 1, observed=[0.5, 1.5])
    draws = {"y": np.zeros((1, 5, 2))}
    ours = posterior_predictive_inference_data(
        draws, model, sample_dims=["chain", "draw"], stacked_coords=None, predictions=False,
        idata=None, extend_inferencedata=False,
    )
    theirs = pm.to_inference_data(posterior_predictive=draws, model=model)
    _assert_identical_but_created_at(ours, theirs)
    assert "constant_data" not in ours.groups()


def test_pymc_dataset_attrs_are_those_of_library_pymc():
    from arviz import dict_to_dataset

    values = {"a": np.ones((1, 2, 3))}
    ours, theirs = pymc_dataset(values), dict_to_dataset(values, library=pm)
    assert {k: v for k, v in ours.attrs.items() if k != "created_at"} == \
           {k: v for k, v in theirs.attrs.items() if k != "created_at"}
    assert list(ours.attrs) == list(theirs.attrs)
