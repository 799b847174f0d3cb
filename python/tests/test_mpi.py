"""Estimators, solves and the bilevel loop with ``comm=`` under MPI: mpi_worker.py (estimators,
solves) and mpi_bilevel_worker.py (lancbio.Bilevel, y sliced, x replicated) run by mpirun on 2 and 3 processes
(uneven slices against one process, infos bitwise equal across ranks, reduction counts,
a failing operator on one rank). Skipped without mpirun or mpi4py, except under CI=true,
where their absence is a failure."""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
MISSING = [what for what, present in (("mpirun", shutil.which("mpirun")),
                                      ("mpi4py", importlib.util.find_spec("mpi4py"))) if not present]

if MISSING and os.environ.get("CI") == "true":
    pytest.fail(f"CI=true but {', '.join(MISSING)} is missing (.ci/run installs them)", pytrace=False)
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)}")


def mpirun(processes: int, script: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``script`` on ``processes`` processes, the package and library of this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
    env.setdefault("OMPI_MCA_rmaps_base_oversubscribe", "1")
    command = ["mpirun", "--oversubscribe", "-np", str(processes)]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.insert(1, "--allow-run-as-root")
    return subprocess.run(command + [sys.executable, str(script)], env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("processes", [2, 3])
def test_sliced_estimators_agree_with_one_process_and_across_ranks(processes):
    result = mpirun(processes, HERE / "mpi_worker.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"all checks passed on {processes} processes" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("processes", [2, 3])
def test_sliced_bilevel_agrees_with_one_process_and_a_failing_rank_fails_every_rank(processes):
    result = mpirun(processes, HERE / "mpi_bilevel_worker.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"all bilevel checks passed on {processes} processes" in result.stdout, result.stdout + result.stderr
