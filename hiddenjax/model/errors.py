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


def check_likelihood_based(model: Model) -> None:
    """Refuse likelihood-free variables (``pm.Simulator``), naming them and PyMC's way out.

    A Simulator's log-density is a random ABC distance recomputed from fresh
    simulations: it has no gradient, so NUTS cannot sample it.
    """
    from pymc.distributions.simulator import SimulatorRV

    simulators = [
        rv.name for rv in model.basic_RVs
        if rv.owner is not None and isinstance(rv.owner.op, SimulatorRV)
    ]
    if simulators:
        raise ModelNotSupportedError(
            f"{', '.join(map(repr, simulators))} "
            f"{'is a pm.Simulator' if len(simulators) == 1 else 'are pm.Simulator variables'}: "
            "a likelihood-free (ABC) term whose log-density is a random distance with no "
            "gradient, so NUTS cannot sample the model. Sample it with PyMC's "
            "pm.sample_smc, or write the likelihood with a pm.CustomDist logp. "
            "Prior predictive sampling (hj.sample_prior_predictive) works."
        )


def check_deterministic_logp(model: Model, logp) -> None:
    """Refuse a log-density that draws random numbers (``pm.Minibatch`` data), naming the data.

    NUTS needs the same log-density at every evaluation; a minibatch is a
    new random slice of the data each time.
    """
    from pytensor.graph.traversal import ancestors
    from pytensor.tensor.random.type import RandomType

    def is_random(var) -> bool:
        # A random generator anywhere upstream (pm.Minibatch's index draw hides
        # inside its own Op, so look for generators, not for draws).
        return any(isinstance(v.type, RandomType) for v in ancestors([var]))

    if not is_random(logp):
        return
    minibatched = [rv.name for rv in model.observed_RVs if is_random(model.rvs_to_values[rv])]
    named = f" (observed {', '.join(map(repr, minibatched))})" if minibatched else ""
    raise ModelNotSupportedError(
        f"The model's log-density draws random numbers{named}: pm.Minibatch data give a new "
        "random batch at every evaluation, which NUTS, find_MAP and hiddenjax's ADVI cannot "
        "use. Pass the full data arrays (pm.Data or plain arrays) instead of pm.Minibatch."
    )
