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

import re
import stat

from .documents import (
    decode_tree, display_path, dumps_document, encode_tree, loads_document, read_file, shown, write_atomic,
)
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
    if not isinstance(name, str) or not _TARGET_NAME.fullmatch(name):
        raise ModelFileError(f"{source}: artifact target must be a name, got {shown(name)}")
    try:
        tgt = target(name)
    except NeuromorphError as exc:
        raise ModelFileError(f"{source}: compiled for {exc}") from None
    if not isinstance(precision, str) or precision not in tgt.precisions:
        raise ModelFileError(f"{source}: precision {shown(precision)} is not one of target '{name}'s "
                             f"({', '.join(tgt.precisions)})")
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0:
        raise ModelFileError(f"{source}: dt must be a positive number of seconds, got {shown(dt)}")
    if not isinstance(d["report"], dict):
        raise ModelFileError(f"{source}: artifact report is malformed (not an object)")
    if not isinstance(d["model"], dict):
        raise ModelFileError(f"{source}: the artifact's model is malformed (not an object)")
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
        # A target's decode_payload should refuse everything itself; this is the backstop.
        text = " ".join(str(exc).split())[:120]
        raise ModelFileError(f"{source}: artifact payload is malformed ({type(exc).__name__}: {text})") from None
    return Artifact(name, precision, graph, float(dt), payload, d["report"])


def save_artifact(a: Artifact, path: str | os.PathLike[str]) -> Path:
    return write_atomic(path, dumps_document(FORMAT, VERSION, "artifact", to_dict(a)).encode())


def load_artifact(path: str | os.PathLike[str]) -> Artifact:
    """The artifact in a file; anything else (not a regular file, too large, malformed,
    inconsistent with its target's limits) is a one-line ModelFileError."""
    source = display_path(path)
    payload = loads_document(read_file(path), FORMAT, VERSION, "artifact", source,
                             "neuromorph artifact")
    return from_dict(payload, source)


_TARGET_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}")
_FORMAT_KEY = re.compile(rb'"format"\s*:\s*"([^"\\]{0,64})"')
SNIFF_BYTES = 4096


def is_artifact(path: str | os.PathLike[str]) -> bool:
    """Cheap sniff: does the file hold an artifact document? Looks for the top-level
    ``"format"`` key, whitespace-tolerant, at the start (our writer puts it first) or else
    as the last in the final SNIFF_BYTES (a re-save with sorted keys puts it after the
    content). A wrong guess only changes the message of the refusal. Reads nothing but a
    regular file, and never blocks (a FIFO or a device is not an artifact)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError):
        return False
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            return False
        head = f.read(SNIFF_BYTES)
        tail = b""
        if st.st_size > SNIFF_BYTES:
            f.seek(max(SNIFF_BYTES, st.st_size - SNIFF_BYTES))
            tail = f.read(SNIFF_BYTES)
    if not head.lstrip().startswith(b"{"):
        return False
    # The top-level key is the first one in a file as we write it, else (keys sorted:
    # "artifact" < "format") the last one.
    first = _FORMAT_KEY.search(head)
    if first is not None and first.start() < 64:
        return first.group(1) == FORMAT.encode()
    last = [m.group(1) for m in _FORMAT_KEY.finditer(tail or head)]
    return bool(last) and last[-1] == FORMAT.encode()


__all__ = ["Artifact", "FORMAT", "VERSION", "is_artifact", "load_artifact", "save_artifact"]
