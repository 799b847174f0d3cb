"""A list of tensors as the one flat vector an estimator sees.

The library reads b and each product from, and writes v into, host buffers. On the CPU
these buffers are tensors that share their memory with the numpy arrays handed to the
library, so a vector crosses the boundary without a copy: the gradients are concatenated
straight into the buffer the library reads, and the vector to multiply is viewed, not
copied, as one tensor per parameter. On another device each vector is staged: gathered on
the device, then one copy to (or from) a host buffer, pinned where CUDA can pin it.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

__all__ = ["Layout", "NUMPY_DTYPES"]

#: The estimator's dtype for each tensor dtype it accepts.
NUMPY_DTYPES = {torch.float64: np.float64, torch.float32: np.float32}


class Layout:
    """Where each tensor of a list lies in the flat vector, and that vector's host buffers.

    Args:
        tensors: the tensors (any shapes), all of one dtype of NUMPY_DTYPES and one device.
        staged: stage through host buffers even on the CPU (default: only off the CPU);
            tests use it to run the device path without a device.
    """

    def __init__(self, tensors, staged: bool | None = None):
        first = tensors[0]
        self.dtype, self.device = first.dtype, first.device
        self.shapes = [t.shape for t in tensors]
        self.slices = []
        offset = 0
        for t in tensors:
            self.slices.append(slice(offset, offset + t.numel()))
            offset += t.numel()
        self.n = offset
        self.staged = self.device.type != "cpu" if staged is None else staged
        self._pin = self.staged and self.device.type == "cuda"
        # The request buffer the estimator hands out (a read-only numpy view, always the
        # same array), as a tensor and per-tensor views; made on first use.
        self._request = None
        self._request_pieces = None

    def host(self) -> tuple[torch.Tensor, np.ndarray]:
        """A new host buffer of n entries: the tensor and the numpy array sharing its memory."""
        buffer = torch.empty(self.n, dtype=self.dtype, pin_memory=self._pin)
        return buffer, buffer.numpy()

    def pieces(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Views of the flat vector ``flat`` shaped like the tensors."""
        return [flat[s].view(shape) for s, shape in zip(self.slices, self.shapes)]

    def gather(self, tensors, out: torch.Tensor, combine=None) -> None:
        """Writes the concatenation of ``tensors`` (one per slot, None for zeros) into the
        host buffer ``out``; ``combine(flat)``, when given, then changes the concatenation
        in place on the device (an all-reduce across processes), before the host copy."""
        flat = [torch.zeros(s.stop - s.start, dtype=self.dtype, device=self.device) if t is None else t.reshape(-1)
                for t, s in zip(tensors, self.slices)]
        if self.staged:
            joined = torch.cat(flat)
            if combine is not None:
                combine(joined)
            out.copy_(joined)
        else:
            torch.cat(flat, out=out)
            if combine is not None:
                combine(out)

    def request(self, x: np.ndarray) -> list[torch.Tensor]:
        """The estimator's vector to multiply as tensors shaped like the slots, on the device
        (views of the estimator's own buffer on the CPU)."""
        if x is not self._request:
            with warnings.catch_warnings():
                # The estimator's request view is read-only; the tensor is only ever read.
                warnings.simplefilter("ignore", UserWarning)
                tensor = torch.from_numpy(x)
            self._request, self._request_pieces = x, self.pieces(tensor)
            self._request_tensor = tensor
        if self.staged:
            return self.pieces(self._request_tensor.to(self.device, copy=True))
        return self._request_pieces

    def to_device(self, host: torch.Tensor) -> list[torch.Tensor]:
        """The host buffer ``host`` as tensors shaped like the slots, on the device."""
        return self.pieces(host.to(self.device, copy=True) if self.staged else host)
