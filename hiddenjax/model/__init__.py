"""Reading PyMC models into plain graphs (no JAX here)."""

from hiddenjax.model.errors import ModelNotSupportedError, check_continuous
from hiddenjax.model.graph import FlatLayout, ModelGraph, extract_model_graph

__all__ = [
    "FlatLayout",
    "ModelGraph",
    "ModelNotSupportedError",
    "check_continuous",
    "extract_model_graph",
]
