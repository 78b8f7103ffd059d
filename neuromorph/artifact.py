"""Compiled artifacts: the envelope every target's deployment travels in.

An artifact holds the source model as IR data (so ``verify`` can rebuild the reference),
the target's name, precision and time step, the target's own payload (what it needs to
run; encoded and decoded by the target, see neuromorph/target.py) and the compile report.
It is a versioned, checksummed document written atomically (neuromorph/documents.py);
running it needs no Python code from whoever defined the model.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .documents import decode_tree, dumps_document, encode_tree, loads_document, read_file, write_atomic
from .errors import IRError, ModelFileError, NeuromorphError
from .ir import Graph
from .model_file import graph_from_dict, graph_to_dict

FORMAT = "neuromorph-artifact"
VERSION = 2  # 2: target-neutral envelope (target, dt, payload, report)


@dataclass(frozen=True, eq=False)
class Artifact:
    target: str  # registered target name
    precision: str
    graph: Graph  # the source model
    dt: float  # seconds per IR time step
    payload: Any  # the target's own data (decoded)
    report: dict[str, Any]  # JSON data: resources, quantisation, ...


def to_dict(a: Artifact) -> dict[str, Any]:
    from .registry import target

    return {
        "target": a.target,
        "precision": a.precision,
        "dt": a.dt,
        "model": graph_to_dict(a.graph),
        "payload": encode_tree(target(a.target).encode_payload(a.payload)),
        "report": encode_tree(a.report),
    }


def from_dict(d: Any, source: str) -> Artifact:
    from .registry import target

    if not isinstance(d, dict):
        raise ModelFileError(f"{source}: artifact content is malformed (not an object)")
    missing = [k for k in ("target", "precision", "dt", "model", "payload", "report") if k not in d]
    if missing:
        raise ModelFileError(f"{source}: artifact content is malformed (missing {', '.join(missing)})")
    name, precision, dt = d["target"], d["precision"], d["dt"]
    if not isinstance(name, str):
        raise ModelFileError(f"{source}: artifact target must be a name, got {name!r}")
    try:
        tgt = target(name)
    except NeuromorphError as exc:
        raise ModelFileError(f"{source}: compiled for {exc}") from None
    if precision not in tgt.precisions:
        raise ModelFileError(f"{source}: precision {precision!r} is not one of target '{name}'s "
                             f"({', '.join(tgt.precisions)})")
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0:
        raise ModelFileError(f"{source}: dt must be a positive number of seconds, got {dt!r}")
    if not isinstance(d["report"], dict):
        raise ModelFileError(f"{source}: artifact report is malformed (not an object)")
    try:
        graph = graph_from_dict(d["model"])
    except (IRError, ModelFileError) as exc:
        raise ModelFileError(f"{source}: the artifact's model is invalid: {exc}") from None
    try:
        payload = tgt.decode_payload(decode_tree(d["payload"], source), graph=graph, dt=float(dt),
                                     precision=precision, source=source)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, IRError) as exc:
        raise ModelFileError(f"{source}: artifact payload is malformed ({type(exc).__name__}: {exc})") from None
    return Artifact(name, precision, graph, float(dt), payload, d["report"])


def save_artifact(a: Artifact, path: str | os.PathLike[str]) -> Path:
    return write_atomic(path, dumps_document(FORMAT, VERSION, "artifact", to_dict(a)).encode())


def load_artifact(path: str | os.PathLike[str]) -> Artifact:
    payload = loads_document(read_file(path), FORMAT, VERSION, "artifact", str(path),
                             "neuromorph artifact")
    return from_dict(payload, str(path))


def is_artifact(path: str | os.PathLike[str]) -> bool:
    """Cheap sniff: does the file start like an artifact document?"""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return False
    return f'"format": "{FORMAT}"'.encode() in head


__all__ = ["Artifact", "FORMAT", "VERSION", "is_artifact", "load_artifact", "save_artifact"]
