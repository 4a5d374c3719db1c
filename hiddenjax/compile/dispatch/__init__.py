"""JAX lowerings that PyTensor lacks, one module per Op family.

Importing this package registers them with PyTensor's ``jax_funcify`` and
``jax_sample_fn``. Ops whose PyTensor lowering exists but needs an optional
package get stand-in subclasses (:mod:`.substitutes`), swapped in by the
pre-flight (:mod:`hiddenjax.compile.preflight`).
"""

from hiddenjax.compile.dispatch import (  # noqa: F401  (registration side effects)
    counts,
    host_callback,
    linalg,
    loop,
    polyagamma,
    pymc_ops,
    random,
    special,
    substitutes,
)
