"""Finds and loads liblancbio.so: the only place the native library is opened.

Candidates, in order:

1. ``$LANCBIO_LIBRARY`` when set. It is an explicit choice, so nothing else is tried
   when it fails (falling back would silently run a different build).
2. ``liblancbio.so`` inside this package (put there by ``pip install``).
3. ``<repository>/.build/release/liblancbio.so`` (``make lib`` in a source checkout).

The first file that loads is checked right away: its ABI version must equal the
header's (``_ffi.ABI_VERSION``) and it must export every symbol of the wrapper's table; a
library that fails either check is stale and gives an ImportError naming the file.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

__all__ = ["LIBRARY_NAME", "candidates", "load"]

LIBRARY_NAME = "liblancbio.so"
ENV_VARIABLE = "LANCBIO_LIBRARY"

_PACKAGE_DIR = Path(__file__).resolve().parent
_REPO_BUILD = _PACKAGE_DIR.parent.parent / ".build" / "release" / LIBRARY_NAME

_HOW_TO_BUILD = (
    "Build it with `make lib` (or `swift build -c release --product lancbio`) in the "
    "repository and set LANCBIO_LIBRARY=<repository>/.build/release/liblancbio.so, or "
    "install the package with `pip install ./python`, which builds it. liblancbio.so "
    "also needs the Swift runtime (libswiftCore.so and friends) on the loader path: it is "
    "found through the library's RUNPATH when the toolchain is where it was at build "
    "time, otherwise add the toolchain's usr/lib/swift/linux to LD_LIBRARY_PATH."
)


def candidates() -> list[tuple[str, Path]]:
    """The paths to try, in order, each with a short note of where it comes from."""
    explicit = os.environ.get(ENV_VARIABLE)
    if explicit:
        return [(f"${ENV_VARIABLE}", Path(explicit))]
    return [("package copy", _PACKAGE_DIR / LIBRARY_NAME), ("repository build", _REPO_BUILD)]


def _stale(path: Path, reason: str) -> ImportError:
    return ImportError(
        f"{path} is a stale or foreign liblancbio: {reason}. Rebuild it with `make lib` "
        f"(or `swift build -c release --product lancbio`), or reinstall the package with "
        f"`pip install ./python`, so that the library matches this wrapper."
    )


def load(functions: dict, abi_version: int) -> ctypes.CDLL:
    """Loads the library, checks it, and declares every function of ``functions``.

    Args:
        functions: ``{name: (restype, [argtypes])}``, every function of the header.
        abi_version: the header's LANCBIO_ABI_VERSION, which the library must report.

    Returns:
        The ``ctypes.CDLL`` with ``restype``/``argtypes`` set on each function.

    Raises:
        ImportError: no candidate loads (the message lists each path and why it failed,
            and how to build the library), or the one that loads is stale.
    """
    tried = []
    for origin, path in candidates():
        if not path.exists():
            tried.append(f"  {path} ({origin}): no such file")
            continue
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as exc:
            tried.append(f"  {path} ({origin}): {exc}")
            continue
        _check_library(lib, path, functions, abi_version)
        lib._lancbio_path = str(path)
        return lib
    note = ""
    if os.environ.get(ENV_VARIABLE):
        note = f" ({ENV_VARIABLE} is set, so no other location was tried)"
    raise ImportError(
        "lancbio could not load its native library liblancbio.so. Tried" + note + ":\n"
        + "\n".join(tried) + "\n" + _HOW_TO_BUILD
    )


def _check_library(lib: ctypes.CDLL, path: Path, functions: dict, expected: int) -> None:
    try:
        abi_version = lib.lancbio_abi_version
    except AttributeError:
        raise _stale(path, "it does not export lancbio_abi_version") from None
    abi_version.restype = ctypes.c_int32
    abi_version.argtypes = []
    found = abi_version()
    if found != expected:
        raise _stale(path, f"its ABI version is {found}, this wrapper needs {expected}")
    missing = [name for name in functions if not hasattr(lib, name)]
    if missing:
        raise _stale(path, "it lacks the symbols " + ", ".join(missing))
    for name, (restype, argtypes) in functions.items():
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes
