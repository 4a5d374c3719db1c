"""Running an Op JAX cannot lower on the host, from inside a JAX program.

The pre-flight (:mod:`hiddenjax.compile.preflight`) wraps such an Op in
:class:`HostCallback`. Its lowering calls PyTensor's own compiled (C or Python)
implementation of the Op through ``jax.pure_callback``; reverse-mode derivatives
call the Op's PyTensor gradient the same way, so ``jax.grad`` works through it.
Random variables draw with the Op's NumPy sampler, seeded from the JAX key.
Runs on CPU and GPU alike, but every call is a round trip to the host.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytensor
from pytensor.compile.mode import Mode
from pytensor.gradient import DisconnectedType, NullType
from pytensor.graph.basic import Apply, Constant
from pytensor.graph.op import Op
from pytensor.link.jax.dispatch.basic import jax_funcify
from pytensor.tensor.random.op import RandomVariable
from pytensor.tensor.type import TensorType

# No rewrites: the host runs exactly the Op it was given, with its C code when it has one.
_HOST_MODE = Mode(linker="cvm", optimizer=None)


class HostCallback(Op):
    """Wraps ``op`` so that its JAX lowering calls PyTensor's implementation on the host."""

    __props__ = ("op",)

    def __init__(self, op: Op):
        self.op = op
        # Same outputs as ``op``, so the same one is the default (a random variable's draw).
        self.default_output = op.default_output

    def make_node(self, *inputs):
        inner = self.op.make_node(*inputs)
        return Apply(self, inner.inputs, [out.type() for out in inner.outputs])

    def perform(self, node, inputs, output_storage):
        inner = Apply(self.op, node.inputs, [out.type() for out in node.outputs])
        self.op.perform(inner, inputs, output_storage)

    def __str__(self):
        return f"HostCallback{{{self.op}}}"


def can_run_on_host(node: Apply) -> bool:
    """Whether ``node`` can run through a host callback: tensors in and out, static RV shapes."""
    if isinstance(node.op, RandomVariable):
        rv = node.outputs[1]
        return None not in rv.type.shape and all(
            isinstance(i.type, TensorType) for i in node.op.dist_params(node)
        )
    variable_inputs = [i for i in node.inputs if not isinstance(i, Constant)]
    return all(isinstance(v.type, TensorType) for v in [*variable_inputs, *node.outputs])


def _host_function(op: Op, node: Apply, with_gradient: bool):
    """A C-compiled PyTensor function of the node's non-constant inputs (and output gradients)."""
    ins = [i if isinstance(i, Constant) else i.type() for i in node.inputs]
    variables = [i for i in ins if not isinstance(i, Constant)]
    outs = op.make_node(*ins).outputs
    if not with_gradient:
        return pytensor.function(variables, outs, mode=_HOST_MODE, on_unused_input="ignore")
    out_grads = [o.type() for o in outs]
    grads = op.L_op(ins, outs, out_grads)
    wanted = [g for i, g in zip(ins, grads, strict=True) if not isinstance(i, Constant)]
    kinds, computed = [], []
    for v, g in zip(variables, wanted, strict=True):
        if isinstance(g.type, DisconnectedType) or not v.type.dtype.startswith("float"):
            kinds.append("zero")
        elif isinstance(g.type, NullType):
            kinds.append("undefined")
        else:
            kinds.append("value")
            computed.append(g)
    fn = pytensor.function([*variables, *out_grads], computed, mode=_HOST_MODE,
                           on_unused_input="ignore")
    return fn, kinds


def _result_shapes(node: Apply):
    shapes = [out.type.shape for out in node.outputs]
    if any(None in s for s in shapes):
        raise NotImplementedError(
            f"{node.op} runs on the host, which needs static output shapes, but its outputs "
            f"have shapes {shapes}. Give the model's variables fixed shapes (shape= or dims)."
        )
    return [jax.ShapeDtypeStruct(s, out.type.dtype) for s, out in zip(shapes, node.outputs)]


def _callback_tensor_op(op: Op, node: Apply):
    variable_idx = [k for k, i in enumerate(node.inputs) if not isinstance(i, Constant)]
    results = _result_shapes(node)
    forward = functools.cache(lambda: _host_function(op, node, with_gradient=False))
    backward = functools.cache(lambda: _host_function(op, node, with_gradient=True))

    def run_forward(*xs):
        return [np.asarray(o, r.dtype) for o, r in zip(forward()(*xs), results, strict=True)]

    def run_backward(*xs_and_gs):
        fn, kinds = backward()
        computed = iter(fn(*xs_and_gs))
        n = len(variable_idx)
        grads = []
        for x, kind in zip(xs_and_gs[:n], kinds, strict=True):
            x = np.asarray(x)
            if kind == "value":
                grads.append(np.asarray(next(computed), x.dtype))
            else:  # an undefined gradient is NaN, never a silent zero
                grads.append(np.full(x.shape, np.nan if kind == "undefined" else 0.0, x.dtype))
        return grads

    @jax.custom_vjp
    def host(*xs):
        return jax.pure_callback(run_forward, results, *xs, vmap_method="sequential")

    def host_fwd(*xs):
        return host(*xs), xs

    def host_bwd(xs, gs):
        shapes = [jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)) for x in xs]
        grads = jax.pure_callback(run_backward, shapes, *xs, *gs, vmap_method="sequential")
        # JAX wants float0 cotangents for integer inputs.
        return tuple(
            g if jnp.issubdtype(s.dtype, jnp.inexact) else np.zeros(s.shape, jax.dtypes.float0)
            for g, s in zip(grads, shapes, strict=True)
        )

    host.defvjp(host_fwd, host_bwd)

    def host_callback(*inputs):
        outs = host(*(inputs[k] for k in variable_idx))
        return outs[0] if len(outs) == 1 else tuple(outs)

    return host_callback


def _callback_random_variable(op: RandomVariable, node: Apply):
    rv = node.outputs[1]
    result = jax.ShapeDtypeStruct(rv.type.shape, rv.type.dtype)
    # The batch shape is static (see can_run_on_host), so it serves as ``size`` either way.
    size = tuple(rv.type.shape[: rv.type.ndim - op.ndim_supp])

    def draw(key_data, *params):
        generator = np.random.default_rng(np.asarray(key_data, np.uint32).tolist())
        sample = op.rng_fn(generator, *params, size)
        return np.asarray(sample, dtype=result.dtype).reshape(result.shape)

    def host_random_variable(rng, size_value, *params):
        key, sampling_key = jax.random.split(rng["jax_state"], 2)
        rng["jax_state"] = key
        if jax.dtypes.issubdtype(sampling_key.dtype, jax.dtypes.prng_key):
            sampling_key = jax.random.key_data(sampling_key)  # a typed key (forward draws)
        sample = jax.pure_callback(draw, result, sampling_key, *params, vmap_method="sequential")
        return rng, sample

    return host_random_variable


@jax_funcify.register(HostCallback)
def funcify_HostCallback(op, node, **kwargs):
    inner = op.op
    if isinstance(inner, RandomVariable):
        return _callback_random_variable(inner, node)
    return _callback_tensor_op(inner, node)
