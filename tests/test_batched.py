import numpy as np
import pymc as pm
import pytest

import hiddenjax as hj
from hiddenjax.batched import DatasetError
from hiddenjax.compile.cache import CacheStats

FAST = dict(draws=80, tune=80, chains=2, progressbar=False, compute_convergence_checks=False)


def _regression(n=30):
    rng = np.random.default_rng(0)
    with pm.Model() as model:
        x = pm.Data("x", rng.normal(size=n))
        y = pm.Data("y_obs", rng.normal(size=n))
        a = pm.Normal("a", 0, 2)
        b = pm.Normal("b", 0, 2)
        s = pm.HalfNormal("s", 1)
        pm.Normal("y", a + b * x, s, observed=y, shape=x.shape)
    return model


def _datasets(count, n=30, seed=1):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        x = rng.normal(size=n)
        out.append({"x": x, "y_obs": 0.5 * i + 2.0 * x + rng.normal(0, 0.5, size=n)})
    return out


def test_each_dataset_equals_a_separate_fit_with_its_seed():
    model = _regression()
    datasets = _datasets(3)
    # The diagonal scheme, whose estimate is continuous in the draws: the low-rank
    # default keeps or drops eigen-directions by a cutoff, so a last-bit
    # difference can flip one and move a chain's draws by ~1e-3 (they then agree
    # in distribution, which the hierarchical test below checks).
    kwargs = dict(FAST, init="jitter+adapt_diag")
    fits = hj.sample_batched(datasets, model=model, random_seed=5, **kwargs)
    assert len(fits) == 3
    for dataset, fit in zip(datasets, fits):
        with model:
            pm.set_data(dataset)
        alone = hj.sample(model=model, random_seed=fit.posterior.attrs["random_seed"], **kwargs)
        # Same keys and same arithmetic; only the width of the vectorised batch
        # differs, which moves the last bits of some reductions (measured: up to
        # 2e-8 relative in the draws after 80 + 80 steps).
        np.testing.assert_allclose(fit.posterior["b"], alone.posterior["b"], rtol=1e-6)
        np.testing.assert_array_equal(fit.observed_data["y"], dataset["y_obs"])
        assert set(fit.sample_stats.data_vars) == set(alone.sample_stats.data_vars)


def test_datasets_per_run_fits_the_budget():
    from hiddenjax.batched import datasets_per_run

    # 100 bytes a step, 4 chains, 200 steps: 80,000 bytes a dataset.
    assert datasets_per_run(100, 4, 200, budget=1_000_000) == 12
    assert datasets_per_run(100, 4, 200, budget=10) == 1
    assert datasets_per_run(0, 4, 200, budget=10) == 10


def test_datasets_beyond_device_memory_run_in_several_runs_with_the_same_results(monkeypatch):
    import hiddenjax.batched as batched

    model = _regression()
    datasets = _datasets(3)
    kwargs = dict(FAST, init="jitter+adapt_diag")
    together = hj.sample_batched(datasets, model=model, random_seed=5, **kwargs)
    runs = []
    run_datasets = batched._run_datasets

    def counted(group_model, graph, compiled, members, request):
        runs.append(len(members))
        return run_datasets(group_model, graph, compiled, members, request)

    monkeypatch.setattr(batched, "_run_datasets", counted)
    # A device with room for less than one dataset's chunk of draws: one run each.
    import hiddenjax.execution.devices as devices

    monkeypatch.setattr(devices, "memory_budget", lambda device: 1)
    apart = hj.sample_batched(datasets, model=model, random_seed=5, **kwargs)
    assert runs == [1, 1, 1]
    for a, b in zip(together, apart):
        assert a.posterior.attrs["random_seed"] == b.posterior.attrs["random_seed"]
        # Same keys and arithmetic, at another vectorised width (see the test above).
        np.testing.assert_allclose(a.posterior["b"], b.posterior["b"], rtol=1e-6)


def _hierarchical(groups=4, per_group=6, seed=3):
    rng = np.random.default_rng(seed)
    index = np.repeat(np.arange(groups), per_group)
    with pm.Model() as model:
        y_obs = pm.Data("y_obs", rng.normal(size=groups * per_group))
        mu = pm.Normal("mu", 0, 2)
        tau = pm.HalfNormal("tau", 1)
        z = pm.Normal("z", 0, 1, shape=groups)
        pm.Normal("y", mu + tau * z[index], 0.7, observed=y_obs, shape=y_obs.shape)
    datasets = [{"y_obs": 1.5 * i + rng.normal(0, 1.0, size=groups * per_group)}
                for i in range(2)]
    return model, datasets


@pytest.mark.slow  # 17 s; the default suite keeps the exact per-seed check above
def test_batched_default_fits_agree_with_separate_fits_within_monte_carlo_error():
    import arviz as az

    model, datasets = _hierarchical()
    run = dict(draws=500, tune=500, chains=2, progressbar=False, compute_convergence_checks=False)
    fits = hj.sample_batched(datasets, model=model, random_seed=11, **run)
    for dataset, fit in zip(datasets, fits):
        with model:
            pm.set_data(dataset)
        alone = hj.sample(model=model, random_seed=12, **run)  # other seed: independent draws
        for name in ("mu", "tau", "z"):
            a, b = fit.posterior[name], alone.posterior[name]
            gap = np.abs(a.mean(("chain", "draw")) - b.mean(("chain", "draw"))).values
            mcse = np.hypot(az.mcse(a.to_dataset(), method="mean")[name].values,
                            az.mcse(b.to_dataset(), method="mean")[name].values)
            # 4.5 standard errors: a correct pair fails with chance ~1e-5 per
            # comparison, 12 comparisons here.
            assert np.all(gap < 4.5 * mcse), (name, gap, mcse)


def test_named_datasets_and_different_lengths_are_grouped():
    model = _regression()
    short, long_ = _datasets(1, n=20)[0], _datasets(1, n=45, seed=2)[0]
    fits = hj.sample_batched({"short": short, "long": long_}, model=model, random_seed=1, **FAST)
    assert list(fits) == ["short", "long"]
    assert fits["long"].observed_data["y"].shape == (45,)
    assert fits["long"].posterior.attrs["dataset"] == "long"


def test_missing_variable_names_dataset_and_variable():
    bad = _datasets(2)
    del bad[1]["y_obs"]
    with pytest.raises(DatasetError, match=r"Dataset 1 has no value for 'y_obs'"):
        hj.sample_batched(bad, model=_regression(), **FAST)


def test_wrong_dimensions_names_dataset_and_variable():
    bad = _datasets(2)
    bad[0]["x"] = bad[0]["x"][:, None]
    with pytest.raises(DatasetError, match=r"Dataset 0: 'x' has 2 dimension"):
        hj.sample_batched(bad, model=_regression(), **FAST)


def test_ten_set_data_rounds_of_the_same_shape_compile_once():
    model = _regression()
    built_before = CacheStats.built
    compile_times = []
    for dataset in _datasets(10):
        with model:
            pm.set_data(dataset)
        idata = hj.sample(model=model, random_seed=1, **FAST)
        compile_times.append(idata.posterior.attrs["compile_time"])
    assert CacheStats.built - built_before == 1
    assert compile_times[0] > 0
    assert all(t == 0 for t in compile_times[1:])
