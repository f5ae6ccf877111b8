"""What a user installs: every package the code imports is declared, with the floors the code needs."""

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTIONS = {"PIL": "pillow", "sklearn": "scikit-learn", "yaml": "pyyaml"}  # import -> distribution name
FLOORS = {"scikit-learn": "1.6", "pillow": "9.1", "torch": "2.6",  # validate_data; Image.Resampling; dynamo export
          "pandas": "1.5"}  # read_csv's C parser with sep=r"\s+", errors.ParserError / EmptyDataError

tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else pytest.importorskip("tomli")


def _declared() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {re.split(r"[<>=!~ ]", spec)[0].lower(): spec for spec in project["dependencies"]}


def _extras() -> set[str]:
    """Packages of the extras (export, baselines, yaml), imported only where they are used."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return {re.split(r"[<>=!~ \[]", spec)[0].lower() for specs in extras.values() for spec in specs}


def _imported() -> set[str]:
    names = set()
    for path in (ROOT / "src" / "meta_neighborhoods").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    extras = _extras()
    return {n for n in names if n not in sys.stdlib_module_names and n != "meta_neighborhoods"
            and DISTRIBUTIONS.get(n, n).lower() not in extras}


def test_every_imported_package_is_declared():
    declared = _declared()
    missing = sorted(DISTRIBUTIONS.get(name, name) for name in _imported() if DISTRIBUTIONS.get(name, name).lower()
                     not in declared)
    assert not missing, f"imported but not in pyproject's dependencies: {missing}"


@pytest.mark.parametrize("distribution, floor", sorted(FLOORS.items()))
def test_the_floors_are_those_the_code_needs(distribution, floor):
    assert f">={floor}" in _declared()[distribution]


def test_the_licence_is_a_file_and_an_spdx_expression():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_the_version_has_one_home_and_the_package_is_typed():
    from importlib.metadata import version

    import meta_neighborhoods

    assert version("meta-neighborhoods") == meta_neighborhoods.__version__
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert (ROOT / "src" / "meta_neighborhoods" / "py.typed").is_file()


def test_the_package_exports_what_the_readme_names_and_the_errors_it_raises():
    import meta_neighborhoods
    from meta_neighborhoods import checkpoint, estimators, io, model, validation

    assert meta_neighborhoods.MetaNeighborhoods is model.MetaNeighborhoods
    assert meta_neighborhoods.MetaNeighborhoodsRegressor is estimators.MetaNeighborhoodsRegressor
    assert meta_neighborhoods.ConfigError is validation.ConfigError
    assert meta_neighborhoods.CheckpointError is checkpoint.CheckpointError
    assert meta_neighborhoods.RunFolderError is io.RunFolderError
    assert set(meta_neighborhoods.__all__) <= set(dir(meta_neighborhoods))


def test_the_console_command_is_the_one_that_guards_its_imports():
    """``__main__.console`` says Ctrl-C during the command line's imports in one line (test_cli)."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"meta-neighborhoods": "meta_neighborhoods.__main__:console"}
