"""HyperGradient across the processes of a torch.distributed group, in its two layouts.

- **Data-parallel** (``sharded=False``): every process holds all of the params and its
  share of the batch; the losses are per-process means whose average over the processes
  is the loss (equal shares, as DistributedDataParallel assumes). grad_y f and every
  Hessian product are averaged across processes before the estimator sees them (one
  all-reduce each), so every process runs the same estimator on the same vectors and holds
  the same state; the hyper-gradient (grad_x f minus the cross term) is averaged in one
  more all-reduce.
- **Sharded** (``sharded=True``): each process holds some of the lower-level tensors (its
  slice of y) and the losses are its contributions (f = sum of the processes' f, g
  likewise; a loss that needs other processes' tensors gets them through autograd-aware
  collectives such as torch.distributed.nn.functional.all_reduce). The estimator works on
  the local slice and sums its inner products through the reduction hook (``comm=``); the
  hyper-gradient contributions are summed in one all-reduce.

A failure on one process must not leave the others waiting in a collective. Every process
therefore goes through the same collectives whatever happens locally: a process whose
gradient, product or cross term raised contributes NaN in its place, every process then
fails on the non-finite value (the estimator unchanged), and the failing process raises its
own exception. docs/torch.md ("Several processes") describes both layouts.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["Group", "TorchComm"]


def _device(group) -> torch.device:
    """Where the group's collectives take their tensors: CUDA for NCCL, else the CPU."""
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


class TorchComm:
    """The ``Allreduce`` of an estimator's ``comm=`` over a torch.distributed group: sums
    float64 numpy arrays across its processes (staged through the device when the
    backend needs one)."""

    def __init__(self, group):
        self.group = group
        self.device = _device(group)
        # The library hands the reducer the same few arrays on every call: their tensors
        # are made once per (address, length).
        self._tensors = {}

    def Allreduce(self, send: np.ndarray, recv: np.ndarray) -> None:  # noqa: N802 - mpi4py's name
        key = (recv.ctypes.data, recv.size)
        tensor = self._tensors.get(key)
        if tensor is None:
            if len(self._tensors) > 64:
                self._tensors.clear()
            tensor = self._tensors[key] = torch.from_numpy(recv)
        np.copyto(recv, send)
        if self.device.type == "cpu":
            dist.all_reduce(tensor, group=self.group)
        else:
            staged = tensor.to(self.device)
            dist.all_reduce(staged, group=self.group)
            tensor.copy_(staged)


class Group:
    """The collectives of one HyperGradient: which layout, and how its vectors combine."""

    def __init__(self, process_group, sharded: bool):
        if not dist.is_available() or not dist.is_initialized():
            raise ValueError("process_group needs torch.distributed initialised (torch.distributed.init_process_group)")
        if not isinstance(sharded, bool):
            raise TypeError(f"sharded must be True or False, got {sharded!r}")
        try:
            self.size = dist.get_world_size(process_group)
        except (RuntimeError, ValueError, TypeError) as error:
            raise TypeError(f"process_group must be a torch.distributed process group (e.g. "
                            f"torch.distributed.group.WORLD), got {process_group!r}: {error}") from None
        self.group = process_group
        self.sharded = sharded
        self.comm = TorchComm(process_group) if sharded else None

    def average(self, flat: torch.Tensor) -> None:
        """Data-parallel: ``flat`` (this process's vector) becomes the processes' mean, in place."""
        dist.all_reduce(flat, group=self.group)
        flat.mul_(1.0 / self.size)

    def combine(self, flat: torch.Tensor) -> None:
        """The hyper-gradient: the mean of the processes' (data-parallel) or their sum
        (sharded: each is a contribution), in place."""
        if self.sharded:
            dist.all_reduce(flat, group=self.group)
        else:
            self.average(flat)
