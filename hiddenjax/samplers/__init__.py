"""Inference algorithms as pure JAX functions over one flat float position.

Samplers see ``logdensity_fn(position) -> scalar`` and nothing of the model:
no PyMC, no PyTensor, no variable names.
"""

from hiddenjax.samplers.integrators import (
    IntegratorState,
    hamiltonian,
    new_integrator_state,
    velocity_verlet,
)
from hiddenjax.samplers.mass_matrix import (
    ADAPTATIONS,
    MassMatrixAdaptation,
    WelfordState,
    gradient_variance,
    low_rank,
    regularize_variance,
    welford_covariance,
    welford_variance,
)
from hiddenjax.samplers.metrics import (
    Metric,
    dense_metric,
    diagonal_metric,
    is_turning,
    kinetic_energy,
    sample_momentum,
    velocity,
)
from hiddenjax.samplers.nuts import NUTSInfo, NUTSState, build_kernel
from hiddenjax.samplers.nuts import init as nuts_init
from hiddenjax.samplers.program import ChainState, NUTSProgram, StepInfo, build_nuts_program
from hiddenjax.samplers.step_size import (
    DualAveraging,
    DualAveragingState,
    dual_averaging,
    initial_step_size,
)
from hiddenjax.samplers.warmup import (
    WarmupSchedule,
    build_schedule,
    in_window,
    is_window_end,
    nuts_schedule,
)

__all__ = [
    "ADAPTATIONS",
    "ChainState",
    "DualAveraging",
    "DualAveragingState",
    "IntegratorState",
    "MassMatrixAdaptation",
    "Metric",
    "NUTSInfo",
    "NUTSProgram",
    "NUTSState",
    "StepInfo",
    "WarmupSchedule",
    "WelfordState",
    "build_kernel",
    "build_nuts_program",
    "build_schedule",
    "dense_metric",
    "diagonal_metric",
    "dual_averaging",
    "gradient_variance",
    "hamiltonian",
    "in_window",
    "initial_step_size",
    "is_turning",
    "is_window_end",
    "kinetic_energy",
    "low_rank",
    "new_integrator_state",
    "nuts_init",
    "nuts_schedule",
    "regularize_variance",
    "sample_momentum",
    "velocity",
    "velocity_verlet",
    "welford_covariance",
    "welford_variance",
]
