"""Shared fixtures: every ISA path this CPU can run, forced one at a time."""
import os
from pathlib import Path

import pytest

import vitc
from vitc import runtime

REPO_ROOT = Path(__file__).resolve().parent.parent

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


@pytest.fixture(autouse=True, scope="session")
def _run_outside_the_source_tree(tmp_path_factory):
    """When the vitc under test is an installed one (CI: `pip install ".[test]" && pytest` at the repository
    root), a child started with `python -c` / `python -m`, or a Ray worker, puts its working directory first
    on sys.path and would import the repository's uncompiled vitc/ instead. The session then runs from an
    empty folder (tests name their files through __file__, never the working directory)."""
    if Path(vitc.__file__).resolve().parent.parent == REPO_ROOT:
        yield  # an in-place build: the source tree is the vitc under test
        return
    before = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    try:
        yield
    finally:
        os.chdir(before)
