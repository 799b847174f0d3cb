"""What `pip install ./python` installs: the wrapper, the problems and the command line
(the benchmark stays in the repository), and how setup.py reports its build."""

import os
import runpy
import stat
from pathlib import Path

import pytest

PYTHON_DIR = Path(__file__).resolve().parents[1]


def test_the_installed_packages_are_the_wrapper_problems_command_line_and_torch_adapter():
    setuptools = pytest.importorskip("setuptools")
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        tomllib = pytest.importorskip("tomli")
    config = tomllib.loads((PYTHON_DIR / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = setuptools.find_packages(where=str(PYTHON_DIR), include=config["packages"]["find"]["include"])
    assert sorted(found) == ["lancbio", "lancbio.cli", "lancbio.problems", "lancbio.torch"]
    assert config["package-data"] == {"lancbio": ["liblancbio.so"]}


FAKE_SWIFT = """#!/bin/sh
case "$*" in
  *--show-bin-path*) echo "$FAKE_BIN" ;;
  *) echo "[1/3] Compiling LancbioCore Estimator.swift"; echo "[3/3] Linking liblancbio.so";
     echo "Build of product 'lancbio' complete!"; echo "a warning" >&2 ;;
esac
"""


def test_setup_announces_each_stage_and_passes_the_swift_progress_through(tmp_path, monkeypatch, capsys):
    setuptools = pytest.importorskip("setuptools")
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: None)  # load setup.py without running it
    setup = runpy.run_path(str(PYTHON_DIR / "setup.py"))
    swift = tmp_path / "swift"
    swift.write_text(FAKE_SWIFT)
    swift.chmod(swift.stat().st_mode | stat.S_IXUSR)
    built = tmp_path / "bin"
    built.mkdir()
    (built / "liblancbio.so").write_bytes(b"not really a library")
    monkeypatch.setenv("SWIFT", str(swift))
    monkeypatch.setenv("FAKE_BIN", str(built))
    setup["install_library"](tmp_path / "package")
    err = capsys.readouterr().err.splitlines()
    assert (tmp_path / "package" / "liblancbio.so").read_bytes() == b"not really a library"
    assert err[0].startswith("lancbio: building liblancbio.so") and "--product lancbio" in err[0]
    assert "lancbio: swift: [1/3] Compiling LancbioCore Estimator.swift" in err
    assert "lancbio: swift: [3/3] Linking liblancbio.so" in err
    assert "lancbio: swift: a warning" in err  # the build's stderr too
    assert any(line.startswith("lancbio: Swift build done in") for line in err)
    assert err[-1] == f"lancbio: copied liblancbio.so to {tmp_path / 'package' / 'liblancbio.so'}"


def test_setup_reports_a_failed_swift_build(tmp_path, monkeypatch):
    setuptools = pytest.importorskip("setuptools")
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: None)
    setup = runpy.run_path(str(PYTHON_DIR / "setup.py"))
    swift = tmp_path / "swift"
    swift.write_text("#!/bin/sh\necho 'error: no such module'\nexit 3\n")
    swift.chmod(swift.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("SWIFT", str(swift))
    with pytest.raises(SystemExit, match="exit status 3"):
        setup["build_library"]()
    monkeypatch.setenv("SWIFT", os.fspath(tmp_path / "no-swift-here"))
    with pytest.raises(SystemExit, match="was not found"):
        setup["build_library"]()
