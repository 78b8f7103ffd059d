"""The compiler: IR graph -> netlist -> (quantised) artifact for a backend.

``compile_graph`` looks the backend up in the registry (entry points, registry.py); the
``lava`` backend's pipeline (compiler/loihi.py) is:

    discretise (neuromorph.discretize, the one place dt enters)
    -> lower to populations and synapse matrices with pipeline offsets (netlist.py)
    -> quantise to Loihi 2 formats when precision is "fixed" (quantize.py)
    -> map onto cores and check the chip's limits (resources.py)
    -> artifact (artifact.py)
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..ir import Graph
from .artifact import Artifact, is_artifact, load_artifact, save_artifact


def compile_graph(
    graph: Graph,
    *,
    backend: str = "lava",
    precision: str = "float",
    dt: float | None = None,
    calibration: Mapping[str, np.ndarray] | None = None,
    chips: int = 1,
) -> Artifact:
    """Compile ``graph`` for a registered backend; refusals are one-line errors naming
    the node (unsupported node types are refused before anything else)."""
    from ..registry import get

    spec = get(backend)
    spec.check(graph, precision)
    return spec.load("compile")(graph, precision=precision, dt=dt, calibration=calibration, chips=chips)


__all__ = ["Artifact", "compile_graph", "is_artifact", "load_artifact",
           "save_artifact"]
