"""The hardware-agnostic spiking IR: node records, plasticity records and the graph that connects them."""
from .graph import Edge, Graph, check_dt
from .nodes import (
    ALIF, IF, LI, LIF, NODE_TYPES, RESET_MODES, Affine, Conv1d, Conv2d, CubaLIF, Delay, Flatten,
    Input, Linear, Neuron, Node, Output, Scale, Shape, SumPool2d,
)
from .plasticity import (
    PLASTICITY_RULES, PLASTICITY_TYPES, STDP, EProp, Plasticity, RewardSTDP, ThreeFactor,
)

__all__ = [
    "ALIF", "IF", "LI", "LIF", "NODE_TYPES", "PLASTICITY_RULES", "PLASTICITY_TYPES", "RESET_MODES",
    "STDP", "Affine", "Conv1d", "Conv2d", "CubaLIF", "Delay", "EProp", "Edge", "Flatten", "Graph",
    "Input", "Linear", "Neuron", "Node", "Output", "Plasticity", "RewardSTDP", "Scale", "Shape",
    "SumPool2d", "ThreeFactor", "check_dt",
]
