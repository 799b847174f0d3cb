"""lancbio.torch.HyperGradient(process_group=...) under torch.distributed (gloo, CPU):
torch_distributed_worker.py run by torchrun on 2 and 3 processes checks both layouts
against one process on the whole problem (1e-12), the processes' states against each
other (bitwise), and a failure inside autograd on one process (every process raises, none
hangs, the estimators unchanged). Without torch this module is skipped, except under
CI=true, where a missing torch is a failure."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import import_torch

torch = import_torch()

from lancbio.torch import HyperGradient  # noqa: E402

HERE = Path(__file__).resolve().parent


def torchrun(processes: int, script: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``script`` on ``processes`` local processes, the package and library of this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               str(script)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("processes", [2, 3])
def test_both_layouts_agree_with_one_process_and_a_failure_on_one_process_fails_all(processes):
    result = torchrun(processes, HERE / "torch_distributed_worker.py")
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    assert f"all checks passed on {processes} processes" in result.stdout, result.stdout + result.stderr[-4000:]


def test_sharded_without_a_process_group_is_refused():
    y = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="sharded=True needs a process_group"):
        HyperGradient([y], [x], sharded=True)


def test_a_process_group_without_torch_distributed_initialised_is_a_clear_error():
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        pytest.skip("a process group is initialised in this process")
    y = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="init_process_group"):
        HyperGradient([y], [x], process_group=object())


def test_comm_is_not_an_option_of_hypergradient():
    y = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    with pytest.raises(TypeError, match="comm"):
        HyperGradient([y], [x], comm=object())
