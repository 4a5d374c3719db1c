"""Model checks that turn modelling mistakes into messages in PyMC terms."""

from __future__ import annotations

from pymc.model import Model
from pytensor.tensor.type import discrete_dtypes


class ModelNotSupportedError(TypeError):
    """The model cannot be sampled by hiddenjax's gradient-based samplers."""


def check_continuous(model: Model) -> None:
    """Refuse models with discrete free variables, naming them and the way out."""
    discrete = [rv.name for rv in model.free_RVs if rv.dtype in discrete_dtypes]
    if discrete:
        raise ModelNotSupportedError(
            f"NUTS needs continuous free variables, but {', '.join(map(repr, discrete))} "
            f"{'is' if len(discrete) == 1 else 'are'} discrete. Marginalise "
            "the discrete variables out of the model (for example with "
            "pymc_extras.marginalize, or by writing the mixture with pm.Mixture), "
            "or make them observed."
        )
