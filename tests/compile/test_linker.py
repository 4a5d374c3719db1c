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
