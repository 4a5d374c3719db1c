"""Reading PyMC models into plain graphs (no JAX here)."""

from hiddenjax.model.errors import ModelNotSupportedError, check_continuous
from hiddenjax.model.graph import (
    FlatLayout,
    ModelGraph,
    DataContext,
    current_data,
    data_context,
    draw_bytes,
    extract_model_graph,
    structure_key,
)

__all__ = [
    "FlatLayout",
    "ModelGraph",
    "ModelNotSupportedError",
    "DataContext",
    "check_continuous",
    "current_data",
    "data_context",
    "draw_bytes",
    "extract_model_graph",
    "structure_key",
]
