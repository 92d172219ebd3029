"""Packaging facts that CI and README's commands rely on."""
import pathlib
try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_dev_extra_is_the_build_requirements():
    # README's contributor commands install `.[dev]` and then build in place: it must hold what pip's
    # isolated build environment gets, no more and no less.
    p = _pyproject()
    assert sorted(p["project"]["optional-dependencies"]["dev"]) == sorted(p["build-system"]["requires"])


def test_torch_is_pinned_everywhere():
    # an unpinned torch pulls a multi-GB CUDA build; every extra that names it pins the CPU build's version
    for extra, reqs in _pyproject()["project"]["optional-dependencies"].items():
        for req in reqs:
            if req.replace(" ", "").startswith("torch") and not req.startswith("torchvision"):
                assert "==" in req, f"extra {extra!r}: {req!r} is not pinned"
