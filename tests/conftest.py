import pytest

from hiddenjax.execution.devices import configure

configure("float64")
