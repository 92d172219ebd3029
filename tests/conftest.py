"""Shared fixtures: every ISA path this CPU can run, forced one at a time."""
import os

import pytest

from vitc import runtime

AVAILABLE_ISAS = runtime.available_isas()


@pytest.fixture(params=AVAILABLE_ISAS)
def isa(request):
    """Kernel code of each ISA path this build and CPU can run (scalar, avx2, avx512)."""
    return runtime.isa_code(request.param)


@pytest.fixture(params=AVAILABLE_ISAS)
def isa_name(request):
    """Name of each ISA path; models loaded inside the test use it (set_isa), restored afterwards."""
    runtime.set_isa(request.param)
    yield request.param
    runtime.set_isa(None)


@pytest.fixture
def subprocess_env():
    """os.environ for a child Python that must import the same vitc as this test run: a development run's
    relative PYTHONPATH (PYTHONPATH=.) is made absolute so it survives another working directory."""
    env = dict(os.environ)
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep))
    return env
