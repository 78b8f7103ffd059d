"""The pass driver: IR graph -> artifact for a registered target.

    check (the target's node rules and precisions: refusals name the node)
    -> the target's compile (for Loihi 2: discretise, lower, quantise, map; see
       backends/loihi2/target.py)
    -> artifact envelope (neuromorph/artifact.py)
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .artifact import Artifact, is_artifact, load_artifact, save_artifact
from .errors import NeuromorphError
from .ir import Graph
from .registry import DEFAULT_TARGET, target


def compile_graph(
    graph: Graph,
    *,
    backend: str = DEFAULT_TARGET,
    precision: str = "float",
    dt: float | None = None,
    calibration: Mapping[str, np.ndarray] | None = None,
    **options: Any,
) -> Artifact:
    """Compile ``graph`` for a registered target. ``options``: the target's own compile
    options (``Target.options``, e.g. ``chips`` for Loihi 2)."""
    tgt = target(backend)
    unknown = sorted(set(options) - set(tgt.options))
    if unknown:
        raise NeuromorphError(f"target '{backend}' takes no option {', '.join(unknown)} "
                              f"(it takes: {', '.join(tgt.options) or 'none'})")
    tgt.check(graph, precision)
    compiled = tgt.compile(graph, precision=precision, dt=dt, calibration=calibration, **options)
    return Artifact(backend, precision, graph, compiled.dt, compiled.payload, compiled.report)


__all__ = ["Artifact", "compile_graph", "is_artifact", "load_artifact", "save_artifact"]
