"""lancbio for PyTorch: hyper-gradients of bilevel problems whose losses are torch tensors.

    >>> from lancbio.torch import HyperGradient
    >>> hg = HyperGradient(model.parameters(), [log_penalty], method="lancbio")
    >>> hg.compute(inner_loss, outer_loss)       # accumulates into log_penalty.grad

PyTorch is an optional dependency: ``pip install 'lancbio[torch]'`` (or any torch build
installed otherwise). docs/torch.md explains the products, what they cost and how vectors
reach the library.
"""

try:
    import torch as _torch  # noqa: F401 - only to fail here, with the extra's name
except ImportError as error:  # pragma: no cover - exercised in a subprocess without torch
    raise ImportError("lancbio.torch needs PyTorch, an optional dependency of lancbio: install it with "
                      "pip install 'lancbio[torch]' (from a checkout: pip install './python[torch]')") from error

from .hypergradient import METHODS, Curvature, HyperGradient

__all__ = ["HyperGradient", "Curvature", "METHODS"]
