"""ArviZ InferenceData built from host numpy arrays, laid out as PyMC lays it out."""

from hiddenjax.results.inference_data import (
    SAMPLE_STATS,
    TIMING_STATS,
    StatSpec,
    build_inference_data,
)

__all__ = ["SAMPLE_STATS", "TIMING_STATS", "StatSpec", "build_inference_data"]
