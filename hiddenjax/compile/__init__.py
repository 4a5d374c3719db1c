"""PyTensor graphs to JAX callables."""

from hiddenjax.compile.linker import MODE_NAME, HiddenJaxLinker, hiddenjax_mode

hiddenjax_mode()

__all__ = ["MODE_NAME", "HiddenJaxLinker", "hiddenjax_mode"]
