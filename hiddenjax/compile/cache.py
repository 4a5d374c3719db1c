"""Compiled models kept per model and structure, so new data of the same shapes reuse them."""

from __future__ import annotations

import weakref

from pymc.model import Model

from hiddenjax.compile.model_functions import CompiledModel, compile_model
from hiddenjax.model import ModelGraph, extract_model_graph, structure_key

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_MAX_PER_MODEL = 8


class CacheStats:
    """How often a compiled model was built or reused (tests read these)."""

    built = 0
    reused = 0


def compiled_model(model: Model, var_names: list[str] | None = None,
                   lift_constants: bool = True) -> tuple[ModelGraph, CompiledModel]:
    """The model's graph and compiled functions, built once per structure key.

    Data values are not part of the key: callers read them with
    :func:`hiddenjax.model.current_data`. ``lift_constants`` is passed to
    :func:`~hiddenjax.model.extract_model_graph`.
    """
    key = (structure_key(model, var_names), lift_constants)
    per_model = _CACHE.setdefault(model, {})
    if key in per_model:
        CacheStats.reused += 1
        return per_model[key]
    graph = extract_model_graph(model, var_names, lift_constants)
    entry = (graph, compile_model(graph))
    if len(per_model) >= _MAX_PER_MODEL:
        per_model.pop(next(iter(per_model)))
    per_model[key] = entry
    CacheStats.built += 1
    return entry
