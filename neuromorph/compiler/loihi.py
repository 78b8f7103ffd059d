"""The Loihi 2 pipeline behind the ``lava`` backend: lower, quantise, map, package."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..ir import Graph
from .artifact import Artifact
from .netlist import lower
from .resources import map_netlist


def compile_loihi(
    graph: Graph,
    *,
    precision: str = "float",
    dt: float | None = None,
    calibration: Mapping[str, np.ndarray] | None = None,
    chips: int = 1,
) -> Artifact:
    net = lower(graph, dt)
    mapping = map_netlist(net, chips_allowed=chips)
    resources = {**mapping.to_dict(), "table": mapping.table()}
    quantized = None
    quantization: dict[str, Any] = {"precision": precision}
    if precision == "fixed":
        from .quantize import quantize

        quantized = quantize(net, calibration)
        quantization.update(quantized.report)
    return Artifact("lava", precision, graph, net, quantized, resources, quantization)
