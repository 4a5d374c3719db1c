"""Checkpoints in netCDF: the draws so far and everything needed to go on.

A checkpoint holds the finished steps (stacked steps-first, as chunks return
them), the sampler state of every chain, the number of finished steps, the
sampler seed, and a fingerprint of the run. It is written to a temporary file
and renamed over the old one, so a process killed mid-write leaves the last
complete checkpoint behind.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np
import xarray as xr

FORMAT_VERSION = 1


class Checkpoint(NamedTuple):
    """A run's progress as plain host arrays."""

    steps: list[np.ndarray]
    """Leaves of the finished steps' outputs, each ``(steps, chains, ...)``."""
    states: list[np.ndarray]
    """Leaves of the sampler states, each ``(chains, ...)``."""
    done: int
    """Finished steps per chain, warmup included."""
    seed: int
    """Seed of the sampler's keys."""
    fingerprint: str
    """What the run was: resuming requires the same."""


class CheckpointMismatchError(ValueError):
    """A checkpoint was written by a different run than the one asking to resume."""


def _variables(prefix: str, leaves: list[np.ndarray]) -> dict:
    out = {}
    for i, leaf in enumerate(leaves):
        leaf = np.asarray(leaf)
        # netCDF has no booleans: store as int8 and remember the dtype.
        stored = leaf.astype(np.int8) if leaf.dtype == np.bool_ else leaf
        dims = [f"{prefix}{i}_dim{j}" for j in range(leaf.ndim)]
        out[f"{prefix}{i}"] = xr.Variable(dims, stored, attrs={"dtype": leaf.dtype.str})
    return out


def save(path: str, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` to ``path`` atomically."""
    dataset = xr.Dataset(
        {**_variables("step", checkpoint.steps), **_variables("state", checkpoint.states)},
        attrs={
            "done": checkpoint.done,
            "seed": checkpoint.seed,
            "fingerprint": checkpoint.fingerprint,
            "n_steps_leaves": len(checkpoint.steps),
            "n_state_leaves": len(checkpoint.states),
            "format_version": FORMAT_VERSION,
            "library": "hiddenjax",
        },
    )
    tmp = f"{path}.tmp-{os.getpid()}"
    dataset.to_netcdf(tmp, engine="h5netcdf")
    os.replace(tmp, path)


def _leaves(dataset: xr.Dataset, prefix: str, count: int) -> list[np.ndarray]:
    return [
        np.asarray(dataset[f"{prefix}{i}"].values).astype(np.dtype(dataset[f"{prefix}{i}"].attrs["dtype"]))
        for i in range(count)
    ]


def load(path: str, fingerprint: str) -> Checkpoint | None:
    """The checkpoint at ``path``, or None if there is none yet.

    Raises :class:`CheckpointMismatchError` when it belongs to another run.
    """
    if not os.path.exists(path):
        return None
    with xr.open_dataset(path, engine="h5netcdf") as dataset:
        dataset.load()
    attrs = dataset.attrs
    if attrs.get("library") != "hiddenjax" or attrs.get("format_version") != FORMAT_VERSION:
        raise CheckpointMismatchError(
            f"{path} is not a hiddenjax checkpoint of this version; delete it or choose another path."
        )
    if attrs["fingerprint"] != fingerprint:
        raise CheckpointMismatchError(
            f"The checkpoint {path} was written by a different run (another model, data "
            "shapes, number of chains, tune, or sampler settings). Delete it to start "
            "afresh, or pass another checkpoint path."
        )
    return Checkpoint(
        steps=_leaves(dataset, "step", int(attrs["n_steps_leaves"])),
        states=_leaves(dataset, "state", int(attrs["n_state_leaves"])),
        done=int(attrs["done"]),
        seed=int(attrs["seed"]),
        fingerprint=fingerprint,
    )
