"""The compiler: IR graph -> netlist -> (quantised) artifact for a backend.

    discretise (neuromorph.discretize, the one place dt enters)
    -> lower to populations and synapse matrices with pipeline offsets (netlist.py)
    -> quantise to Loihi 2 formats when precision is "fixed" (quantize.py)
    -> map onto cores and check the chip's limits (resources.py)
    -> artifact (artifact.py)
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..errors import NeuromorphError
from ..ir import Graph
from .artifact import Artifact, is_artifact, load_artifact, save_artifact
from .netlist import Netlist, lower

PRECISIONS = ("float", "fixed")


def compile_graph(
    graph: Graph,
    *,
    backend: str = "lava",
    precision: str = "float",
    dt: float | None = None,
    calibration: Mapping[str, np.ndarray] | None = None,
    chips: int = 1,
) -> Artifact:
    """Compile ``graph`` for ``backend``; refusals are one-line errors naming the node."""
    if backend != "lava":
        raise NeuromorphError(f"unknown compile backend '{backend}' (available: lava)")
    if precision not in PRECISIONS:
        raise NeuromorphError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    net = lower(graph, dt)
    from .resources import map_netlist

    mapping = map_netlist(net, chips_allowed=chips)
    resources = {**mapping.to_dict(), "table": mapping.table()}
    quantized = None
    quantization: dict[str, Any] = {"precision": precision}
    if precision == "fixed":
        from .quantize import quantize

        quantized = quantize(net, calibration)
        quantization.update(quantized.report)
    return Artifact(backend, precision, graph, net, quantized, resources, quantization)


__all__ = ["Artifact", "Netlist", "PRECISIONS", "compile_graph", "is_artifact", "load_artifact",
           "lower", "save_artifact"]
