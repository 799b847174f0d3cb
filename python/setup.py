"""Builds liblancbio.so with SwiftPM and ships it inside the lancbio package.

`pip install ./python` runs `swift build -c release --product lancbio` in the repository
(the parent of this directory, or $LANCBIO_SOURCE_DIR) and copies the library to
lancbio/liblancbio.so in the wheel; `pip install -e ./python` copies it next to the
sources in python/lancbio/ (gitignored). Metadata lives in pyproject.toml.

The build takes about 40 s, so each stage is announced on stderr and the Swift build's
progress lines are passed through. pip captures a build's stderr and shows it only with
`pip install -v ./python`, so the stages and a one-line progress display also go to the
controlling terminal when there is one.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.develop import develop
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent
LIBRARY = "liblancbio.so"


def _terminal():
    """The controlling terminal when stderr is not it (pip has captured stderr), else None."""
    if sys.stderr.isatty():
        return None
    try:
        return open("/dev/tty", "w")  # noqa: SIM115 - held for the build
    except OSError:  # no terminal: CI, a daemon
        return None


_TERMINAL = _terminal()


def stage(message: str) -> None:
    """One line on stderr (and the terminal) saying what the build is doing."""
    print(f"lancbio: {message}", file=sys.stderr, flush=True)
    if _TERMINAL is not None:
        print(f"\rlancbio: {message}", file=_TERMINAL, flush=True)


def progress(line: str) -> None:
    """A line of the Swift build: passed through on stderr, and shown in place on the terminal."""
    sys.stderr.write(f"lancbio: swift: {line}")
    sys.stderr.flush()
    if _TERMINAL is not None and line.startswith("["):
        _TERMINAL.write(f"\r\033[Klancbio: swift: {line.rstrip()[:100]}")
        _TERMINAL.flush()


def repository_root() -> Path:
    """The Swift package to build: the parent of this directory, else $LANCBIO_SOURCE_DIR."""
    candidates = [HERE.parent]
    override = os.environ.get("LANCBIO_SOURCE_DIR")
    if override:
        candidates.append(Path(override).resolve())
    for root in candidates:
        if (root / "Package.swift").is_file():
            return root
    raise SystemExit(
        "lancbio: cannot find the Swift package to build liblancbio.so: no Package.swift in "
        + " or ".join(str(c) for c in candidates)
        + ". Install from a checkout of the repository (pip install ./python), or set "
        "LANCBIO_SOURCE_DIR to the repository root."
    )


def build_library() -> Path:
    """Runs the release build and returns the path of the built liblancbio.so."""
    root = repository_root()
    swift = os.environ.get("SWIFT", "swift")
    command = [swift, "build", "-c", "release", "--product", "lancbio", "--package-path", str(root)]
    stage(f"building {LIBRARY} from {root} with SwiftPM (about 40 s from scratch): {' '.join(command)}")
    started = time.monotonic()
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   errors="replace")
    except FileNotFoundError:
        raise SystemExit(
            f"lancbio: `{swift}` was not found; a Swift 6 toolchain is needed to build liblancbio.so "
            "(set SWIFT to its swift executable)."
        ) from None
    with process:
        for line in process.stdout:  # "[12/40] Compiling LancbioCore ...": the build's progress
            progress(line)
    if process.returncode != 0:
        raise SystemExit(f"lancbio: the Swift build failed (exit status {process.returncode}); see its output above.")
    stage(f"Swift build done in {time.monotonic() - started:.0f} s")
    # --show-bin-path gives the build directory SwiftPM really used (it may be relocated).
    shown = subprocess.run([swift, "build", "-c", "release", "--show-bin-path", "--package-path", str(root)],
                           check=True, capture_output=True, text=True).stdout.strip()
    built = Path(shown) / LIBRARY
    if not built.is_file():
        raise SystemExit(f"lancbio: the Swift build succeeded but {built} does not exist.")
    return built


def install_library(destination: Path) -> None:
    destination.mkdir(parents=True, exist_ok=True)
    target = destination / LIBRARY
    shutil.copy2(build_library(), target)
    stage(f"copied {LIBRARY} to {target}")


class BuildPyWithLibrary(build_py):
    """build_py that also builds liblancbio.so and puts it in the package."""

    def run(self):
        if getattr(self, "editable_mode", False):
            # Editable installs import from the source tree.
            install_library(HERE / "lancbio")
        else:
            install_library(Path(self.build_lib) / "lancbio")
        super().run()


class DevelopWithLibrary(develop):
    """Legacy `setup.py develop` / old pip editable installs."""

    def run(self):
        install_library(HERE / "lancbio")
        super().run()


class BinaryDistribution(Distribution):
    """The wheel holds a native library, so it is platform-specific."""

    def has_ext_modules(self):
        return True


cmdclass = {"build_py": BuildPyWithLibrary, "develop": DevelopWithLibrary}

try:  # tag wheels py3-none-<platform>: the library does not depend on the Python ABI
    try:
        from setuptools.command.bdist_wheel import bdist_wheel
    except ImportError:
        from wheel.bdist_wheel import bdist_wheel

    class PlatformWheel(bdist_wheel):
        def finalize_options(self):
            super().finalize_options()
            self.root_is_pure = False

        def get_tag(self):
            _, _, platform = super().get_tag()
            return "py3", "none", platform

    cmdclass["bdist_wheel"] = PlatformWheel
except ImportError:
    pass

setup(cmdclass=cmdclass, distclass=BinaryDistribution)
