"""JAX lowerings that PyTensor lacks, one module per Op family.

Importing this package registers them with ``jax_funcify``.
"""
