"""neuromorph: define a spiking network once, train it, deploy it to Loihi-class hardware.

The IR (``neuromorph.ir``) is plain data; its discrete-time meaning is written in
docs/semantics.md. Model files: ``neuromorph.save`` / ``neuromorph.load``.
"""
from .build import conv1d, conv2d, dense, feedforward, recurrent, sequential
from .errors import IRError, ModelFileError, NeuromorphError, NIRConversionError
from .ir import (
    ALIF, IF, LI, LIF, STDP, Affine, Conv1d, Conv2d, CubaLIF, Delay, Edge, EProp, Flatten, Graph,
    Input, Linear, Node, Output, Plasticity, RewardSTDP, Scale, SumPool2d, ThreeFactor,
)
from .model_file import load, save
from . import models  # noqa: E402  (the zoo: nm.models.get(name))

__version__ = "0.1.0"

__all__ = [
    "ALIF", "IF", "LI", "LIF", "STDP", "Affine", "Conv1d", "Conv2d", "CubaLIF", "Delay", "EProp",
    "Edge", "Flatten", "Graph", "IRError", "Input", "Linear", "ModelFileError", "NIRConversionError",
    "NeuromorphError", "Node", "Output", "Plasticity", "RewardSTDP", "Scale", "SumPool2d",
    "ThreeFactor", "conv1d", "conv2d",
    "dense", "feedforward", "load", "recurrent", "save", "sequential",
]
