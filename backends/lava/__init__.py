"""The Lava backend: a compiled netlist in Lava's Loihi 2 CPU simulator.

``run_lava(net, x, precision="float" | "fixed", quantized=...)`` builds one Lava
process per input, population and connection, runs every chip step in one Lava run,
and returns the outputs aligned to IR time steps (see runner.py); ``NeuronGroup`` is
the project-owned Lava Process of a population (process.py). Importing this package
imports Lava (through neuromorph.lava_compat's Python 3.11 fix).
"""
from neuromorph.backends.lava.process import NeuronGroup
from neuromorph.backends.lava.runner import LavaInfo, run_lava

__all__ = ["LavaInfo", "NeuronGroup", "run_lava"]
