"""Stand-in Op classes for Ops whose PyTensor JAX lowering needs an optional package.

PyTensor registers JAX lowerings for some special functions (``Erfcx``, ``Ive``,
``GammaIncInv`` ...) that only work when TensorFlow Probability is installed and
raise ``NotImplementedError`` otherwise. hiddenjax never replaces a registered
lowering. Instead it declares a subclass of such an Op here, registers its own
lowering for the subclass, and the pre-flight swaps the Op for the subclass in
graphs where PyTensor's lowering is unavailable. The subclass inherits every
other behaviour (Python and C implementations, gradient), so the graph keeps
its meaning.

A few PyTensor lowerings exist but compute the wrong thing (PyTensor's JAX
sampler for ``CategoricalRV`` reads ``logit(p)`` as log-probabilities) or miss
a derivative PyTensor itself has (``BetaInc`` in ``a`` and ``b``), and PyTensor's
samplers for ``GammaRV``, ``StudentTRV``, ``BetaRV`` and ``DirichletRV`` go
through ``jax.random.gamma``, a per-entry rejection loop about ten times slower
on CPU than a vectorised one. ``PoissonRV``'s and ``BinomialRV``'s go through
``jax.random.poisson`` and NumPyro's binomial, per-entry loops too (JAX's Poisson
also takes threefry keys only, while hiddenjax's forward draws use SplitMix64
keys), and ``NormalRV``'s through ``erf_inv``, slower than the quantile
hiddenjax draws with (:mod:`.random`, :mod:`.counts`). Their
stand-ins are declared with :func:`correction_for` and swapped in by the
pre-flight whenever the Op appears, so only graphs compiled by hiddenjax see
the difference: ``jax_sample_fn`` and ``jax_funcify`` dispatch on the exact
class, and PyTensor's own ``JAX`` mode keeps its behaviour for everyone else.
"""

from __future__ import annotations

import copy

from pytensor.graph.op import Op

_SUBSTITUTES: dict[type, type] = {}
_CORRECTIONS: dict[type, type] = {}


def _registrar(table: dict, original: type, role: str):
    """Class decorator entering ``cls`` in ``table`` as the stand-in for ``original``."""

    def register(cls: type) -> type:
        if not issubclass(cls, original):
            raise TypeError(f"{cls.__name__} must subclass {original.__name__} to {role} it.")
        table[original] = cls
        return cls

    return register


def substitute_for(original: type):
    """Class decorator: declare ``cls`` as hiddenjax's stand-in for ``original``."""
    return _registrar(_SUBSTITUTES, original, "stand in for")


def correction_for(original: type):
    """Class decorator: declare ``cls`` as hiddenjax's always-used stand-in for ``original``.

    For Ops whose PyTensor JAX lowering exists but gives wrong results or lacks
    a derivative; the pre-flight swaps the stand-in in wherever the Op appears.
    """
    return _registrar(_CORRECTIONS, original, "correct")


def corrections() -> dict[type, type]:
    """A copy of the table ``{PyTensor Op class: hiddenjax correcting class}``."""
    return dict(_CORRECTIONS)


def substitutes() -> dict[type, type]:
    """A copy of the table ``{PyTensor Op class: hiddenjax stand-in class}``."""
    return dict(_SUBSTITUTES)


def stand_in(op: Op, *, corrections_only: bool = False) -> Op | None:
    """The stand-in for ``op`` (same state, hiddenjax's lowering), or None if it has none.

    With ``corrections_only``, only stand-ins declared by :func:`correction_for`.
    """
    cls = _CORRECTIONS.get(type(op))
    if cls is None and not corrections_only:
        cls = _SUBSTITUTES.get(type(op))
    if cls is None:
        return None
    new = copy.copy(op)
    new.__class__ = cls
    return new
