"""The pre-flight names every Op JAX cannot lower, and runs it on the host or refuses."""

import jax
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.compile.builders import OpFromGraph
from pytensor.graph.basic import Apply
from pytensor.graph.fg import FunctionGraph
from pytensor.graph.op import Op
from pytensor.scan.utils import until
from pytensor.tensor.random.op import RandomVariable

from hiddenjax.compile.dispatch.special import JaxErfcx
from hiddenjax.compile.preflight import (
    HostCallbackWarning,
    UnsupportedOpError,
    find_unsupported,
    make_lowerable,
)
from tests.compile import oracle


class Cube(Op):
    """An Op with no JAX lowering: x ** 3, with a gradient."""

    __props__ = ()

    def make_node(self, x):
        x = pt.as_tensor_variable(x)
        return Apply(self, [x], [x.type()])

    def perform(self, node, inputs, outputs):
        outputs[0][0] = np.asarray(inputs[0] ** 3)

    def grad(self, inputs, grads):
        return [grads[0] * 3 * inputs[0] ** 2]


cube = Cube()


def _graph():
    x = pt.vector("x", shape=(3,))
    y = cube(x + 1.0)
    y.name = "cubed"
    return x, (y * 2.0).sum()


def test_finds_unknown_op_with_the_variable_it_feeds():
    x, out = _graph()
    fgraph = FunctionGraph([x], [out], clone=True)
    [found] = find_unsupported(fgraph)
    assert found.op_type.endswith("Cube")
    assert found.variable == "cubed"
    assert found.on_host
    assert "cubed" in found.describe()
    assert any(isinstance(n.op, Cube) for n in fgraph.apply_nodes)  # not modified


def test_finds_ops_inside_inner_graphs():
    a = pt.scalar("a")
    inner = OpFromGraph([a], [cube(a) + 1.0])
    x = pt.vector("x", shape=(3,))
    out = inner(x.sum())
    out.name = "wrapped"
    xs = pytensor.scan(lambda v: cube(v), sequences=[x], return_updates=False)
    xs.name = "scanned"
    found = find_unsupported(FunctionGraph([x], [out, xs.sum()], clone=True))
    assert len(found) == 2
    assert all(f.inside for f in found)
    assert {f.variable for f in found} == {"wrapped", "scanned"}


def test_stand_ins_count_as_supported_and_are_swapped_in():
    x = pt.vector("x", shape=(3,))
    fgraph = FunctionGraph([x], [pt.log(pt.erfcx(x) + 1.0)], clone=True)
    assert find_unsupported(fgraph) == []
    assert make_lowerable(fgraph) == []
    scalar_ops = [getattr(n.op, "scalar_op", None) for n in fgraph.apply_nodes]
    assert any(isinstance(op, JaxErfcx) for op in scalar_ops)


def test_strict_refuses_with_the_full_list():
    x, out = _graph()
    fgraph = FunctionGraph([x], [out], clone=True)
    with pytest.raises(UnsupportedOpError, match="Cube.*cubed"):
        make_lowerable(fgraph, strict=True)


def test_host_callback_matches_c_values_and_gradients():
    x, out = _graph()
    values = [np.array([0.5, -1.0, 2.0])]
    with pytest.warns(HostCallbackWarning, match="cubed"):
        oracle.assert_matches_c([x], [out], values)
    with pytest.warns(HostCallbackWarning):
        fn = oracle.lower_graph([x], [out], strict=False)
    grad = jax.jit(jax.grad(lambda v: fn(v)[0]))(values[0])
    np.testing.assert_allclose(grad, 6 * (values[0] + 1.0) ** 2)
    batched = jax.vmap(lambda v: fn(v)[0])(np.stack([values[0], values[0] + 1]))
    np.testing.assert_allclose(batched, [2 * ((values[0] + 1) ** 3).sum(),
                                         2 * ((values[0] + 2) ** 3).sum()])


def test_while_scan_is_reported():
    x = pt.scalar("x")

    def halve(v):
        return v / 2, until(v < 1)

    out = pytensor.scan(halve, outputs_info=[x], n_steps=50, return_updates=False)
    out.name = "halvings"
    # Without PyTensor's memory rewrite the loop keeps its whole history, whose length
    # depends on when it stops (the HIDDENJAX mode lowers it once only out[-1] is kept).
    [found] = find_unsupported(FunctionGraph([x], [out[-1]], clone=True))
    assert "whole history" in found.reason
    assert found.variable == "halvings"


class ShiftedExponentialRV(RandomVariable):
    """A random variable with no JAX sampler: loc + Exponential(1)."""

    name = "shifted_exponential"
    signature = "()->()"
    dtype = "floatX"

    @classmethod
    def rng_fn(cls, rng, loc, size):
        return loc + rng.exponential(size=size)


def test_random_variable_without_sampler_draws_on_the_host():
    draws = ShiftedExponentialRV()(np.array([1.0, 5.0]), size=(4000, 2))
    with pytest.warns(HostCallbackWarning, match="shifted_exponential"):
        fn = pytensor.function([], draws, mode="HIDDENJAX")
    got = fn()
    assert got.shape == (4000, 2)
    # Mean loc + 1 and standard deviation 1: five standard errors.
    np.testing.assert_allclose(got.mean(0), [2.0, 6.0], atol=5 / np.sqrt(4000))
    assert got.min() >= 1.0
