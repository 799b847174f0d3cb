"""`make test` installs what the Python tests import: every module a test imports outside
the standard library, other than lancbio itself and the tests' own helpers, is in the
Makefile's TEST_DEPS, unless the test skips without it (pytest.importorskip, or an import
inside ``try: ... except ImportError``)."""

import ast
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAKEFILE = REPO / "Makefile"
TEST_DIRS = (REPO / "python" / "tests", REPO / "bench" / "tests")
LOCAL = {"lancbio", "bench", "conftest"}

pytestmark = pytest.mark.skipif(not MAKEFILE.exists(), reason="not a source checkout (no Makefile)")


def make_variable(name: str) -> list[str]:
    match = re.search(rf"^{name}\s*:=\s*(.*)$", MAKEFILE.read_text(), re.M)
    assert match, f"the Makefile has no {name} := ..."
    return match.group(1).split()


def guarded(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside a try whose handlers catch ImportError."""
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                or isinstance(h.type, ast.Tuple) and any(getattr(e, "id", "") == "ImportError" for e in h.type.elts)
                for h in node.handlers):
            inside.update(id(child) for statement in node.body for child in ast.walk(statement))
    return inside


def required_imports() -> dict[str, set[str]]:
    """{top-level module: files} of the third-party imports the tests cannot skip."""
    found: dict[str, set[str]] = {}
    for directory in TEST_DIRS:
        for path in sorted(directory.glob("*.py")):
            source = path.read_text()
            tree = ast.parse(source)
            optional = set(re.findall(r"importorskip\(\s*[\"'](\w+)", source)) | set(
                re.findall(r"find_spec\(\s*[\"'](\w+)", source))
            skip = guarded(tree)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if (top in sys.stdlib_module_names or top in LOCAL or top.startswith("test_")
                            or top in optional or id(node) in skip):
                        continue
                    found.setdefault(top, set()).add(path.name)
    return found


def test_make_test_installs_every_module_the_tests_need():
    deps = set(make_variable("TEST_DEPS"))
    missing = {module: sorted(files) for module, files in required_imports().items() if module not in deps}
    assert not missing, f"imported by the tests but not in the Makefile's TEST_DEPS: {missing}"
    assert {"pytest", "hypothesis", "scipy", "numpy"} <= deps


def test_test_python_depends_on_test_deps_which_installs_with_pip():
    text = MAKEFILE.read_text()
    prerequisites = re.search(r"^test-python:(.*)$", text, re.M).group(1).split()
    assert "test-deps" in prerequisites
    recipe = text.split("\ntest-deps:", 1)[1].split("\n\n", 1)[0]
    assert "$(TEST_DEPS)" in recipe and "pip install" in recipe
