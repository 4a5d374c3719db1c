"""Stand-in Op classes for Ops whose PyTensor JAX lowering needs an optional package.

PyTensor registers JAX lowerings for some special functions (``Erfcx``, ``Ive``,
``GammaIncInv`` ...) that only work when TensorFlow Probability is installed and
raise ``NotImplementedError`` otherwise. hiddenjax never replaces a registered
lowering. Instead it declares a subclass of such an Op here, registers its own
lowering for the subclass, and the pre-flight swaps the Op for the subclass in
graphs where PyTensor's lowering is unavailable. The subclass inherits every
other behaviour (Python and C implementations, gradient), so the graph keeps
its meaning.
"""

from __future__ import annotations

import copy

from pytensor.graph.op import Op

_SUBSTITUTES: dict[type, type] = {}


def substitute_for(original: type):
    """Class decorator: declare ``cls`` as hiddenjax's stand-in for ``original``."""

    def register(cls: type) -> type:
        if not issubclass(cls, original):
            raise TypeError(f"{cls.__name__} must subclass {original.__name__} to stand in for it.")
        _SUBSTITUTES[original] = cls
        return cls

    return register


def substitutes() -> dict[type, type]:
    """A copy of the table ``{PyTensor Op class: hiddenjax stand-in class}``."""
    return dict(_SUBSTITUTES)


def stand_in(op: Op) -> Op | None:
    """The stand-in for ``op`` (same state, hiddenjax's lowering), or None if it has none."""
    cls = _SUBSTITUTES.get(type(op))
    if cls is None:
        return None
    new = copy.copy(op)
    new.__class__ = cls
    return new
