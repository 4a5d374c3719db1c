import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt

from hiddenjax.compile import MODE_NAME, HiddenJaxLinker
from hiddenjax.compile.linker import hiddenjax_mode


def test_mode_is_registered_with_pytensor_and_uses_our_linker():
    x = pt.vector("x")
    fn = pytensor.function([x], (x**2).sum(), mode=MODE_NAME)
    assert isinstance(fn.maker.linker, HiddenJaxLinker)
    assert fn(np.arange(3.0)) == 5.0


def test_parameter_checks_become_minus_infinity():
    x, sigma = pt.vector("x"), pt.scalar("sigma")
    logp = pm.logp(pm.Normal.dist(0.0, sigma), x).sum()
    fn = pytensor.function([x, sigma], logp, mode=MODE_NAME)
    assert np.isfinite(fn(np.ones(2), 1.0))
    assert fn(np.ones(2), -1.0) == -np.inf


def test_mode_is_reused():
    assert hiddenjax_mode() is hiddenjax_mode()


def test_unused_shared_generator_input_compiles_and_is_left_alone():
    # pm.logp of a mixture keeps its components' shared generator as an input
    # that no node reads after rewriting; PyTensor's JAX linker fails on it.
    mixture = pm.NormalMixture.dist(w=np.array([0.3, 0.7]), mu=np.array([-1.0, 1.0]),
                                    sigma=np.array([0.5, 1.0]), size=3)
    value = pt.vector("value", shape=(3,))
    logp = pm.logp(mixture, value).sum()
    rngs = [v for v in pytensor.graph.traversal.graph_inputs([logp])
            if isinstance(v, pytensor.compile.SharedVariable)]
    assert rngs
    before = [r.get_value().bit_generator.state for r in rngs]
    point = np.array([-1.0, 0.2, 1.5])
    got = pytensor.function([value], logp, mode=MODE_NAME)(point)
    want = pytensor.function([value], logp, mode="FAST_RUN")(point)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert [r.get_value().bit_generator.state for r in rngs] == before
