"""README.md as a newcomer meets it: every code block runs as written, and what it says
about the entry points agrees with the Makefile and the command line.

Code blocks are fenced with a language: ``python`` blocks run in a fresh interpreter from a
copy of the repository root (links to include/, .build/, python/ and the lancbio link, as
the README says for a checkout), the ``c`` block is saved as example.c and built with the
README's own link line, ``sh`` lines run from that copy unless they are in LONG, and
``text`` blocks are not code."""

import argparse
import importlib.util
import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
LANGUAGES = {"python", "c", "sh", "text"}
# Shell lines the test does not run, by prefix: each is a job of minutes (the demo, every
# test including this one). Every prefix must match a line, so the list cannot go stale.
LONG = ("make demo", "make test")

pytestmark = pytest.mark.skipif(not README.exists(), reason="not a source checkout (no README.md)")


def blocks() -> list[tuple[str, str, int]]:
    """(language, text, line number) of every fenced block, in order."""
    found, language, start, lines = [], None, 0, []
    for number, line in enumerate(README.read_text().splitlines(), start=1):
        if language is None and line.startswith("```"):
            language, start, lines = line[3:].strip(), number, []
        elif language is not None and line.startswith("```"):
            found.append((language, "\n".join(lines) + "\n", start))
            language = None
        elif language is not None:
            lines.append(line)
    assert language is None, f"README.md:{start}: unterminated code block"
    return found


def of(language: str) -> list[tuple[str, int]]:
    return [(text, number) for lang, text, number in blocks() if lang == language]


def sandbox(tmp_path: Path) -> Path:
    """A directory that looks like the repository root to the README's commands."""
    for name in ("include", ".build", "python", "lancbio", "examples"):
        (tmp_path / name).symlink_to(REPO / name)
    return tmp_path


def clean_env() -> dict:
    """The environment of a newcomer's shell: no PYTHONPATH or LD_LIBRARY_PATH of ours."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "LD_LIBRARY_PATH"):
        env.pop(name, None)
    env["MPLBACKEND"] = "Agg"
    return env


def test_every_code_block_is_fenced_with_a_known_language():
    text = README.read_text().splitlines()
    fenced = False
    for number, line in enumerate(text, start=1):
        if line.startswith("```"):
            fenced = not fenced
            continue
        previous = text[number - 2] if number > 1 else ""
        if not fenced and line.startswith("    ") and not previous.strip():
            pytest.fail(f"README.md:{number}: an indented code block; fence it with ```python, ```c, ```sh "
                        f"or ```text so that this test runs it (or knows it is not code)")
    for language, _, number in blocks():
        assert language in LANGUAGES, f"README.md:{number}: code block language {language!r} not in {LANGUAGES}"
    assert of("python") and len(of("c")) == 1 and of("sh")


@pytest.mark.parametrize("index", range(len(of("python")) if README.exists() else 0))
def test_python_block_runs_as_written(index, tmp_path):
    code, number = of("python")[index]
    if "lancbio.torch" in code and importlib.util.find_spec("torch") is None:
        # PyTorch is optional; CI installs it (.ci/run), so there its absence is a failure.
        if os.environ.get("CI") == "true":
            pytest.fail(f"README.md:{number}: CI=true but torch is not installed for the PyTorch block")
        pytest.skip(f"README.md:{number} needs PyTorch, which is not installed")
    result = subprocess.run([sys.executable, "-c", code], cwd=sandbox(tmp_path), env=clean_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"README.md:{number}:\n{result.stderr}"
    printed = result.stdout.strip().splitlines()
    assert 1 <= len(printed) <= 4, f"README.md:{number}: prints {len(printed)} lines:\n{result.stdout}"
    assert all(len(line) <= 100 for line in printed), f"README.md:{number}: prints a long line:\n{result.stdout}"


def shell_lines() -> list[tuple[str, int]]:
    return [(line, number) for text, number in of("sh")
            for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_shell_lines_run_as_written(tmp_path):
    root = sandbox(tmp_path)
    (root / "example.c").write_text(of("c")[0][0])
    if not (REPO / ".build" / "release" / "liblancbio.so").exists():
        pytest.skip("the README's commands need `make lib` first")
    skipped = set()
    ran = 0
    for line, number in shell_lines():
        long = next((prefix for prefix in LONG if line.startswith(prefix)), None)
        if long:
            skipped.add(long)
            continue
        if "mpirun " in line and not (shutil.which("mpirun") and importlib.util.find_spec("mpi4py")):
            if os.environ.get("CI") == "true":
                pytest.fail("CI=true but mpirun or mpi4py is missing for the README's MPI example")
            continue
        if "torch.distributed.run " in line and not importlib.util.find_spec("torch"):
            if os.environ.get("CI") == "true":
                pytest.fail("CI=true but torch is missing for the README's torch.distributed example")
            continue
        if line.startswith("cc ") and shutil.which("cc") is None:
            if os.environ.get("CI") == "true":
                pytest.fail("CI=true but no cc to build the README's C example")
            continue
        env = clean_env()
        # Open MPI refuses root without these (the README says so).
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        result = subprocess.run(["sh", "-c", line], cwd=root, env=env, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, f"README.md:{number}: `{line}`\n{result.stdout}\n{result.stderr}"
        assert result.stdout.strip(), f"README.md:{number}: `{line}` printed nothing"
        ran += 1
    assert skipped == set(LONG), f"LONG lists commands the README no longer has: {set(LONG) - skipped}"
    assert ran >= 2


def test_the_c_example_is_built_with_a_link_line_that_runs():
    line = next(line for line, _ in shell_lines() if line.startswith("cc "))
    assert "example.c" in line and "-llancbio" in line and "-Wl,-rpath," in line and "./example" in line


def test_the_demo_help_command_is_the_one_the_readme_shows():
    assert any(line == "python3 -m lancbio demo --help" for line, _ in shell_lines())


# -- what the README says about the entry points -------------------------------------------

def test_make_hyperclean_the_cli_and_the_readme_agree_on_the_corruption():
    from lancbio.cli import hyperclean
    from lancbio.problems import HyperCleaning

    parser = argparse.ArgumentParser()
    hyperclean.build_parser(parser)
    default = parser.parse_args([]).corruption
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\nhyperclean:", 1)[1].split("\n\n", 1)[0]
    assert "--corruption" not in recipe  # make hyperclean runs the command line's default
    assert f"default, {default:g};" in makefile
    row = next(line for line in README.read_text().splitlines() if line.startswith("| `make hyperclean`"))
    assert f"{default:.0%} of the training labels corrupted as in the paper" in row
    assert inspect.signature(HyperCleaning.digits).parameters["corruption"].default == default
