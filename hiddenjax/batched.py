"""Many datasets, one model: datasets of the same shapes run as one compiled program.

Every chain of every dataset is one lane of the vectorised sampler: the data
get a leading chain axis, and each dataset's chains are keyed exactly as a
separate ``hj.sample`` of that dataset with that dataset's seed.
"""

from __future__ import annotations

import time
from functools import partial
from collections.abc import Mapping

import numpy as np

from pymc.model import Model


class DatasetError(ValueError):
    """A dataset given to ``sample_batched`` does not fit the model."""


def split_datasets(datasets) -> tuple[list | None, list[dict]]:
    """``(names or None, list of dicts)`` from any of the accepted forms."""
    if isinstance(datasets, Mapping):
        values = list(datasets.values())
        if values and all(isinstance(v, Mapping) for v in values):
            return list(datasets), [dict(v) for v in values]
        lengths = {len(np.asarray(v)) for v in values}
        if len(lengths) != 1:
            raise DatasetError(
                "A dict of stacked arrays needs the same leading (dataset) length for every "
                f"variable; got lengths {sorted(lengths)}."
            )
        count = lengths.pop()
        return None, [{k: np.asarray(v)[i] for k, v in datasets.items()} for i in range(count)]
    if isinstance(datasets, str) or not hasattr(datasets, "__iter__"):
        raise DatasetError("datasets must be a list of dicts, a dict of dicts, or a dict of arrays.")
    datasets = list(datasets)
    if not datasets or not all(isinstance(d, Mapping) for d in datasets):
        raise DatasetError("datasets must be a non-empty list of dicts of arrays.")
    return None, [dict(d) for d in datasets]


def dataset_values(graph, dataset: Mapping, label) -> tuple[np.ndarray, ...]:
    """The dataset's arrays in the graph's data order, checked against the model."""
    values = []
    for name, model_value in zip(graph.data_names, graph.data_values):
        if name not in dataset:
            raise DatasetError(
                f"Dataset {label} has no value for {name!r}; every dataset needs "
                f"{', '.join(map(repr, graph.data_names))}."
            )
        value = np.asarray(dataset[name])
        if value.ndim != model_value.ndim:
            raise DatasetError(
                f"Dataset {label}: {name!r} has {value.ndim} dimension(s) (shape {value.shape}), "
                f"but the model's {name!r} has {model_value.ndim} (shape {model_value.shape})."
            )
        values.append(value.astype(model_value.dtype, copy=False))
    unknown = sorted(set(dataset) - set(graph.data_names))
    if unknown:
        raise DatasetError(
            f"Dataset {label} gives {', '.join(map(repr, unknown))}, which the model has no "
            f"data for; it takes {', '.join(map(repr, graph.data_names))}."
        )
    return tuple(values)


def _model_for_shapes(model: Model, graph, values: tuple) -> Model:
    """``model`` itself when the shapes match, else a clone holding data of these shapes."""
    import pymc as pm
    from pymc.model.fgraph import clone_model

    if all(v.shape == m.shape for v, m in zip(values, graph.data_values)):
        return model
    shared = {v.name for v in model.data_vars}
    fixed = [n for n, v, m in zip(graph.data_names, values, graph.data_values)
             if v.shape != m.shape and n not in shared]
    if fixed:
        raise DatasetError(
            f"{', '.join(map(repr, fixed))} changes shape between datasets, but the model holds "
            "it as a constant. Wrap it in pm.Data (and give dependent variables "
            "shape=data.shape) to fit datasets of different lengths."
        )
    clone = clone_model(model)
    with clone:
        pm.set_data({n: v for n, v in zip(graph.data_names, values) if n in shared})
    return clone


def _context(model: Model, dataset: Mapping):
    """coords, dims and data groups of one dataset's InferenceData."""
    from hiddenjax.model import data_context

    context = data_context(model)
    observed = {}
    for rv in model.observed_RVs:
        source = model.rvs_to_values[rv].name
        key = source if source in dataset else rv.name
        observed[rv.name] = np.asarray(dataset[key]) if key in dataset else context.observed_data.get(rv.name)
    constant = {k: np.asarray(dataset.get(k, v)) for k, v in context.constant_data.items()}
    return context._replace(observed_data=observed, constant_data=constant)


def _split(result, group: int, chains: int):
    """One dataset's chains out of a batched run's draws."""
    cut = slice(group * chains, (group + 1) * chains)
    return result._replace(
        outputs=tuple(x[cut] for x in result.outputs),
        loglik=tuple(x[cut] for x in result.loglik),
        stats={k: v[cut] for k, v in result.stats.items()},
        warmup_outputs=(tuple(x[cut] for x in result.warmup_outputs)
                        if result.warmup_outputs is not None else None),
        warmup_stats=({k: v[cut] for k, v in result.warmup_stats.items()}
                      if result.warmup_stats is not None else None),
    )


def datasets_per_run(step_bytes: int, chains: int, chunk_size: int, budget: int) -> int:
    """How many datasets one run may hold so its chunk of draws fits ``budget`` bytes."""
    return max(1, budget // max(1, step_bytes * chains * chunk_size))


def _run_group(model, members, request):
    """Sample a group of same-shaped datasets, in as few runs as device memory allows."""
    from hiddenjax.api import _step_bytes, _with_chunk_size
    from hiddenjax.compile.cache import compiled_model
    from hiddenjax.execution.devices import memory_budget

    # Every chain gets its own copy of the data, so constants stay in the program.
    group_model = _model_for_shapes(
        model, compiled_model(model, request.var_names, lift_constants=False)[0], members[0][2])
    graph, compiled = compiled_model(group_model, request.var_names, lift_constants=False)
    budget = memory_budget(request.device)
    request = _with_chunk_size(request, graph, request.chains, budget)
    per_run = datasets_per_run(_step_bytes(graph, request) or 0, request.chains,
                               request.chunk_size, budget)
    runs = -(-len(members) // per_run)
    # Near-equal runs, so at most two run sizes (two compiled programs).
    out = []
    for part in np.array_split(np.arange(len(members)), runs):
        out.extend(_run_datasets(group_model, graph, compiled,
                                 [members[i] for i in part], request))
    return out


def _run_datasets(group_model, graph, compiled, members, request):
    """Sample same-shaped datasets of ``group_model``'s shapes in one run.

    ``graph`` and ``compiled`` are ``group_model``'s (``compiled_model``);
    ``members`` is ``[(label, dataset, values, seed)]``.
    """
    from hiddenjax.api import (
        _inference_data, _plan, _position_shape, _report, _runner, _seeds, _starts,
    )
    from hiddenjax.execution.progress import SamplingProgress
    from hiddenjax.execution.runner import run_chains
    from hiddenjax.model.initial import initial_point_fns

    fns = initial_point_fns(group_model, request.chains, initvals=request.initvals,
                            jitter=request.jitter)
    data = tuple(np.repeat(np.stack(arrays), request.chains, axis=0)
                 for arrays in zip(*(m[2] for m in members)))
    chains = request.chains * len(members)
    runner = _runner(compiled, request, chains, data_per_chain=True)
    check = runner.check(_position_shape(graph, request, chains), data)
    positions, sampler_seeds = [], []
    for label, _, values, seed in members:
        jitter_seeds, sampler_seed = _seeds(seed, request.chains)
        try:
            positions.append(_starts(group_model, graph, partial(check, chain_data=values),
                                     request, jitter_seeds, fns=fns))
        except Exception as error:
            raise type(error)(f"Dataset {label}: {error}") from error
        sampler_seeds.append(sampler_seed)
    plan = _plan(request, sampler_seeds)
    start = time.perf_counter()
    with SamplingProgress(plan.tune + plan.draws, plan.tune, enabled=request.progressbar) as bar:
        result = run_chains(runner, data, np.concatenate(positions), plan, progress=bar.update)
    elapsed = time.perf_counter() - start
    out = []
    for i, (label, dataset, _, seed) in enumerate(members):
        part = _split(result, i, request.chains)
        idata = _inference_data(compiled, part, plan, elapsed, _context(group_model, dataset))
        idata.posterior.attrs["random_seed"] = seed
        idata.posterior.attrs["dataset"] = str(label)
        _report(idata, group_model, part, plan, request._replace(quiet=True), elapsed,
                label=f"Dataset {label}: ")
        out.append(idata)
    return out


def run_batched(model: Model, datasets: list[dict], seeds: list[int], request, names=None):
    """One InferenceData per dataset, datasets of equal shapes sampled together."""
    from hiddenjax.compile.cache import compiled_model

    graph, _ = compiled_model(model, request.var_names, lift_constants=False)
    labels = names if names is not None else list(range(len(datasets)))
    checked = [dataset_values(graph, d, label) for d, label in zip(datasets, labels)]
    groups: dict = {}
    for i, values in enumerate(checked):
        groups.setdefault(tuple(v.shape for v in values), []).append(i)
    results: list = [None] * len(datasets)
    for indices in groups.values():
        members = [(labels[i], datasets[i], checked[i], seeds[i]) for i in indices]
        for i, idata in zip(indices, _run_group(model, members, request)):
            results[i] = idata
    return results
