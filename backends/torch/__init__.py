"""The torch backend: neuromorph's PyTorch simulator and training engine.

- ``network.py``   ``GraphNetwork``: an IR graph as a batched, differentiable torch module
                   (node rules keyed by type; Norse's forward-Euler neuron updates)
- ``surrogate.py`` the surrogate gradients of the spike function
- ``bptt.py``      surrogate-gradient BPTT, registered as the training method ``bptt``,
                   and the epoch loop every gradient method shares (``fit``)
- ``eprop.py``     online e-prop, registered as the training method ``eprop`` (docs/eprop.md)
- ``distributed.py`` data parallelism over torch.distributed (torchrun)
- ``target.py``    the ``torch`` target: runs model files in float64

Norse is not imported here: the neuron updates are its equations, written over
neuromorph.discretize's coefficients, and tests/test_torch_backend.py checks them bit for
bit against Norse's own step functions. Importing this package does not import torch
(the registry loads ``target.py`` cheaply); ``GraphNetwork`` and ``Surrogate`` import it
when first used.
"""
from typing import Any

__all__ = ["GraphNetwork", "SURROGATES", "Surrogate"]


def __getattr__(name: str) -> Any:
    if name == "GraphNetwork":
        from .network import GraphNetwork

        return GraphNetwork
    if name in ("Surrogate", "SURROGATES"):
        from . import surrogate

        return getattr(surrogate, name)
    raise AttributeError(name)
