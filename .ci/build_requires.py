"""Print pyproject's [build-system] requires, one per line (what in-place and sanitizer builds need)."""
import pathlib
try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

pyproject = pathlib.Path(__file__).resolve().parent.parent / "pyproject.toml"
print("\n".join(tomllib.loads(pyproject.read_text())["build-system"]["requires"]))
