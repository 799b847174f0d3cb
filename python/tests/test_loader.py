"""The loader: where liblancbio.so comes from, and how a missing or stale one is reported."""

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PYTHON_DIR = Path(__file__).resolve().parents[1]


def import_lancbio_with(library: str) -> subprocess.CompletedProcess:
    """Imports lancbio in a fresh interpreter with LANCBIO_LIBRARY=library (the library
    already loaded in this process must not interfere)."""
    env = dict(os.environ, LANCBIO_LIBRARY=library, PYTHONPATH=str(PYTHON_DIR))
    return subprocess.run([sys.executable, "-c", "import lancbio"], env=env, capture_output=True, text=True,
                          timeout=60)


def compile_shared_library(tmp_path: Path, source: str) -> Path:
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build a fake library")
    c_file = tmp_path / "fake.c"
    c_file.write_text(textwrap.dedent(source))
    so = tmp_path / "liblancbio.so"
    subprocess.run([cc, "-shared", "-fPIC", str(c_file), "-o", str(so)], check=True)
    return so


def test_version_is_library_version_and_pyproject_version():
    import lancbio
    from lancbio import _ffi

    assert lancbio.__version__ == _ffi.lib.lancbio_version().decode()
    pyproject = PYTHON_DIR / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip("not a source checkout")
    declared = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.M).group(1)
    assert declared == lancbio.__version__


def test_library_abi_version_is_the_wrappers():
    from lancbio import _ffi

    assert _ffi.lib.lancbio_abi_version() == _ffi.ABI_VERSION


def test_candidates_env_variable_alone_then_package_then_build(monkeypatch):
    from lancbio import _library

    monkeypatch.setenv("LANCBIO_LIBRARY", "/somewhere/liblancbio.so")
    assert [str(p) for _, p in _library.candidates()] == ["/somewhere/liblancbio.so"]
    monkeypatch.delenv("LANCBIO_LIBRARY")
    paths = [p for _, p in _library.candidates()]
    package = Path(_library.__file__).resolve().parent
    assert paths == [package / "liblancbio.so", package.parent.parent / ".build" / "release" / "liblancbio.so"]


def test_missing_file_gives_import_error_listing_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "liblancbio.so"
    result = import_lancbio_with(str(missing))
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert f"{missing} ($LANCBIO_LIBRARY): no such file" in result.stderr
    assert "swift build -c release --product lancbio" in result.stderr
    assert "make lib" in result.stderr
    assert "libswiftCore.so" in result.stderr


def test_non_library_file_gives_import_error_with_the_loaders_reason(tmp_path):
    bogus = tmp_path / "liblancbio.so"
    bogus.write_text("this is not an ELF file\n")
    result = import_lancbio_with(str(bogus))
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert str(bogus) in result.stderr
    assert f"{bogus} ($LANCBIO_LIBRARY): {bogus}: " in result.stderr  # then dlopen's own reason


def test_library_with_another_abi_version_is_reported_stale(tmp_path):
    so = compile_shared_library(tmp_path, "int lancbio_abi_version(void) { return 2; }\n")
    result = import_lancbio_with(str(so))
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert str(so) in result.stderr
    assert "ABI version is 2" in result.stderr and "needs 1" in result.stderr
    assert "make lib" in result.stderr


def test_library_missing_symbols_is_reported_stale(tmp_path):
    so = compile_shared_library(tmp_path, "int lancbio_abi_version(void) { return 1; }\n"
                                          "const char *lancbio_version(void) { return \"0.1.0\"; }\n")
    result = import_lancbio_with(str(so))
    assert result.returncode != 0
    assert str(so) in result.stderr
    assert "lacks the symbols" in result.stderr and "lancbio_estimator_step_f64" in result.stderr


def test_library_without_abi_symbol_is_reported_stale(tmp_path):
    so = compile_shared_library(tmp_path, "int unrelated(void) { return 0; }\n")
    result = import_lancbio_with(str(so))
    assert result.returncode != 0
    assert str(so) in result.stderr and "lancbio_abi_version" in result.stderr


def test_good_library_through_env_variable_imports():
    import lancbio

    result = import_lancbio_with(lancbio.library_path)
    assert result.returncode == 0, result.stderr
