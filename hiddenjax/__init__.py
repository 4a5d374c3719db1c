"""hiddenjax: PyMC models fitted with NUTS compiled through JAX.

``import hiddenjax as pm`` works in model code: every public PyMC name is
re-exported, and the inference functions hiddenjax implements replace PyMC's.
"""

import pymc as _pymc

# Every fit lowers through PyTensor's JAX dispatch and reads the model's initial
# point through PyTensor's VM (whose C-linker module imports setuptools), so these
# one-time imports happen with hiddenjax rather than inside the first call.
# Importing JAX starts no backend: hiddenjax still sets the host device count
# before JAX creates its devices.
import jax as _jax  # noqa: E402, F401
import pytensor.link.c.exceptions as _c_exceptions  # noqa: E402, F401
import pytensor.link.jax.dispatch as _jax_dispatch  # noqa: E402, F401

__version__ = "0.1.0"

_OWN = {
    "sample",
    "sample_batched",
    "init_distributed",
    "sample_prior_predictive",
    "sample_posterior_predictive",
    "compute_log_likelihood",
    "find_MAP",
    "fit",
}

globals().update(
    {name: getattr(_pymc, name) for name in dir(_pymc) if not name.startswith("_") and name not in _OWN}
)

from hiddenjax.api import sample, sample_batched  # noqa: E402
from hiddenjax.execution.devices import init_distributed  # noqa: E402
from hiddenjax.workflow import (  # noqa: E402
    compute_log_likelihood,
    find_MAP,
    fit,
    sample_posterior_predictive,
    sample_prior_predictive,
)

__all__ = sorted(
    {name for name in dir(_pymc) if not name.startswith("_")} | _OWN | {"__version__"}
)
