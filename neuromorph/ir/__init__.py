"""The hardware-agnostic spiking IR: node records and the graph that connects them."""
from .graph import Edge, Graph, check_dt
from .nodes import (
    ALIF, IF, LI, LIF, NODE_TYPES, PLASTICITY_RULES, RESET_MODES, Affine, Conv1d, Conv2d, CubaLIF,
    Delay, Flatten, Input, Linear, Neuron, Node, Output, Plasticity, Scale, Shape, SumPool2d,
)

__all__ = [
    "ALIF", "IF", "LI", "LIF", "NODE_TYPES", "PLASTICITY_RULES", "RESET_MODES", "Affine", "Conv1d", "Conv2d",
    "CubaLIF", "Delay", "Edge", "Flatten", "Graph", "Input", "Linear", "Neuron", "Node",
    "Output", "Plasticity", "Scale", "Shape", "SumPool2d", "check_dt",
]
