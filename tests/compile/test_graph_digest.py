"""Graph digests: equal for the same model in any process, different for any real change."""

import subprocess
import sys
import textwrap

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from hiddenjax.compile.graph_digest import graph_digest
from hiddenjax.model import extract_model_graph


def _digest(model):
    graph = extract_model_graph(model, None)
    return graph_digest([graph.theta, *graph.data_inputs], [graph.logp, *graph.outputs])


def _regression(prior_sd=1.0, likelihood=pm.Normal, rows=20, upper=None):
    x = np.linspace(-1, 1, rows)
    with pm.Model() as model:
        xs = pm.Data("x", x)
        slope = pm.Normal("slope", 0, prior_sd)
        sigma = pm.HalfNormal("sigma", 1) if upper is None else pm.Uniform("sigma", 0, upper)
        likelihood("y", slope * xs, sigma, observed=np.sin(3 * x))
    return model


def _student_t(name, mu, sigma, observed):
    return pm.StudentT(name, nu=4, mu=mu, sigma=sigma, observed=observed)


_SCRIPT = textwrap.dedent("""
    from tests.compile.test_graph_digest import _digest, _regression
    print(_digest(_regression()))
""")


def test_the_same_model_has_the_same_digest_in_every_process():
    here = _digest(_regression())
    assert here is not None and here == _digest(_regression())
    there = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True,
                           check=True, timeout=300).stdout.split()[-1]
    assert there == here


@pytest.mark.parametrize("change", [
    dict(prior_sd=2.0),              # a constant's value
    dict(likelihood=_student_t),     # another likelihood
    dict(rows=21),                   # a data shape
    dict(upper=5.0),                 # a transform and its bounds
])
def test_any_change_to_the_model_changes_the_digest(change):
    assert _digest(_regression(**change)) != _digest(_regression())


def test_observed_values_are_data_and_stay_out_of_the_digest():
    first, second = _regression(), _regression()
    second.set_data("x", np.linspace(-2, 2, 20))
    assert _digest(first) == _digest(second)


class _NoProps(Op):
    """An op PyTensor cannot compare by props: nothing says what it computes."""

    def make_node(self, x):
        return Apply(self, [x], [x.type()])

    def perform(self, node, inputs, outputs):
        outputs[0][0] = inputs[0] * 2


def test_input_types_and_constants_are_part_of_the_digest():
    def digest(dtype="float64", shape=(3,), constant=2.0):
        x = pt.tensor("x", dtype=dtype, shape=shape)
        return graph_digest([x], [(x * constant).sum()])

    base = digest()
    assert base == digest()
    assert len({base, digest(dtype="float32"), digest(shape=(4,)), digest(shape=(None,)),
                digest(constant=2.5)}) == 5


def test_a_graph_it_cannot_describe_has_no_digest():
    x = pt.vector("x", shape=(3,))
    assert graph_digest([x], [pt.exp(x).sum()]) is not None
    assert graph_digest([x], [_NoProps()(x).sum()]) is None
    free = pt.vector("free", shape=(3,))  # an input the caller did not name
    assert graph_digest([x], [(x + free).sum()]) is None
