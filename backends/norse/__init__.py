"""The Norse/PyTorch backend: the project's reference simulator and training engine."""
from .network import GraphNetwork
from .surrogate import SURROGATES, Surrogate

__all__ = ["GraphNetwork", "SURROGATES", "Surrogate"]
