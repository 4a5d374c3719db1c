"""The hiddenjax PyTensor linker and the ``HIDDENJAX`` compilation mode."""

from __future__ import annotations

from pytensor.compile.mode import Mode, predefined_modes, register_mode
from pytensor.graph.rewriting.db import RewriteDatabaseQuery
from pytensor.link.jax.linker import JAXLinker

MODE_NAME = "HIDDENJAX"

# PyMC registers this rewrite by name only: it turns parameter checks inside
# log-densities into ``switch(cond, logp, -inf)``, so an invalid parameter is a
# rejected proposal instead of an assertion JAX would silently drop.
CHECK_TO_NINF = "local_check_parameter_to_ninf_switch"


class HiddenJaxLinker(JAXLinker):
    """PyTensor's JAX linker with hiddenjax's lowerings registered.

    Lowerings PyTensor lacks are added from :mod:`hiddenjax.compile.dispatch`
    through ``jax_funcify.register``; PyTensor's own are never replaced.
    """

    def accept(self, fgraph, no_recycling=None, profile=None):
        from hiddenjax.compile.preflight import make_lowerable

        # Before the linker plans storage and node order: the pre-flight may replace nodes
        # (stand-ins, host callbacks) or raise naming every Op JAX cannot lower.
        make_lowerable(fgraph, stacklevel=5)
        return super().accept(fgraph, no_recycling=no_recycling, profile=profile)


def rewrite_query() -> RewriteDatabaseQuery:
    """The graph rewrites every hiddenjax compilation applies before lowering."""
    import pymc.logprob.utils  # noqa: F401  (registers CHECK_TO_NINF in PyTensor's optdb)

    from hiddenjax.compile.rewrites import TAG

    return RewriteDatabaseQuery(include=["fast_run", "jax", TAG]).including(CHECK_TO_NINF)


def hiddenjax_mode() -> Mode:
    """The ``HIDDENJAX`` mode, registered with PyTensor on first use."""
    if MODE_NAME not in predefined_modes:
        register_mode(MODE_NAME, Mode(linker=HiddenJaxLinker(), optimizer=rewrite_query()))
    return predefined_modes[MODE_NAME]
