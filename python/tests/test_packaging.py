"""What `pip install ./python` installs: the wrapper, the problems and the command line
(the benchmark stays in the repository), and how setup.py reports its build."""

from pathlib import Path

import pytest

PYTHON_DIR = Path(__file__).resolve().parents[1]


def test_the_installed_packages_are_the_wrapper_problems_and_command_line():
    setuptools = pytest.importorskip("setuptools")
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        tomllib = pytest.importorskip("tomli")
    config = tomllib.loads((PYTHON_DIR / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = setuptools.find_packages(where=str(PYTHON_DIR), include=config["packages"]["find"]["include"])
    assert sorted(found) == ["lancbio", "lancbio.cli", "lancbio.problems"]
    assert config["package-data"] == {"lancbio": ["liblancbio.so"]}
