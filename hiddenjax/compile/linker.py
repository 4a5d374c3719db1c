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

    def fgraph_convert(self, fgraph, input_storage, storage_map, **kwargs):
        """Detach unused shared random generators, then lower like ``JAXLinker``.

        A graph can keep a shared generator among its inputs after rewrites
        removed every node that read it (``pm.logp`` of a mixture keeps its
        components' generator). ``JAXLinker`` swaps each shared generator for a
        copy by replacing its uses, which fails for one without uses.
        """
        for index in _unused_shared_rngs(fgraph):
            _detach_input(fgraph, index, input_storage, storage_map)
        return super().fgraph_convert(fgraph, input_storage, storage_map, **kwargs)


def _unused_shared_rngs(fgraph) -> list[int]:
    """Positions of the shared random-generator inputs of ``fgraph`` that nothing reads."""
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.tensor.random.type import RandomType

    return [i for i, inp in enumerate(fgraph.inputs)
            if isinstance(inp, SharedVariable) and isinstance(inp.type, RandomType)
            and not fgraph.clients[inp]]


def _detach_input(fgraph, index: int, input_storage: list, storage_map: dict) -> None:
    """Put a plain variable holding a copy of the shared input's value at ``index``.

    The linker converts generator inputs to JAX keys in their storage; the copy
    keeps the user's shared generator untouched, as ``JAXLinker`` does for the
    generators it replaces.
    """
    import copy

    old = fgraph.inputs[index]
    new = old.type()
    old_storage = storage_map.pop(old)
    new_storage = [copy.deepcopy(old_storage[0])]
    storage_map[new] = new_storage
    position = next(i for i, s in enumerate(input_storage) if s is old_storage)
    input_storage[position] = new_storage
    fgraph.add_input(new, check=False)
    fgraph.remove_input(index, reason="HiddenJaxLinker.fgraph_convert")
    fgraph.inputs.remove(new)
    fgraph.inputs.insert(index, new)


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
