"""Model-level coverage: distributions inside models and PyMC's model features.

The full set is slow (``make test-slow``); by default a few cases run that
exercise hiddenjax's own lowerings and forward sampling. Print the table with
``.venv/bin/python -m tests.compile.coverage --models``.
"""

import pytest

from hiddenjax.execution.devices import configure
from tests.compile.model_cases import FEATURES, check_model, model_cases, model_passed

DEFAULT = ["Truncated (free)", "CustomDist dist=", "CustomDist numpy random", "HSGP"]


@pytest.fixture(autouse=True)
def _float64():
    configure("float64")


def _run(name, build):
    result = check_model(name, build)
    assert model_passed(result), f"{name}: {result}\n{result.detail}"


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", DEFAULT)
def test_model_case(name):
    _run(name, FEATURES[name])


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", list(model_cases()))
def test_every_model_case(name):
    _run(name, model_cases()[name])
