"""Compiled artifacts: the envelope every target's deployment travels in.

An artifact holds the source model as IR data (so ``verify`` can rebuild the reference),
the target's name, precision and time step, the target's own payload (what it needs to
run; encoded and decoded by the target, see neuromorph/target.py) and the compile report.
It is a versioned, checksummed document written atomically (neuromorph/documents.py);
running it needs no Python code from whoever defined the model.

Version 3 (written by :func:`save_artifact`) is the binary container: every array of the
model and of the payload is stored as raw bytes at the dtype the target hands over
(float64 stays float64, at 4 bytes a value where float32 holds it exactly, as a weight
trained in torch; an int8 array takes a byte per value). The report is JSON data
and stays so (any array in it is a base64 text record, never decoded). Version 2, JSON
text with base64 float64/int64 arrays (:func:`dumps_text`), still loads; so does JSON
text stamped version 3.
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
    HEADER_BYTES, MAGIC, ArrayWriter, TextArrays, decode_tree, display_path, dumps_document, encode_array,
    encode_tree, is_binary, loads_any, read_document, shown, write_atomic, write_binary,
)
from .errors import IRError, ModelFileError, NeuromorphError
from .ir import Graph
from .model_file import graph_from_dict, graph_to_dict

FORMAT = "neuromorph-artifact"
VERSION = 3  # 3: the binary container; 2: target-neutral envelope (target, dt, payload, report)
TEXT_VERSION = 2
"""The JSON text form (base64 float64/int64 arrays) of version 2, still read; :func:`dumps_text`."""
VERSIONS = (TEXT_VERSION, VERSION)
WHAT = "neuromorph artifact"


@dataclass(frozen=True, eq=False)
class Artifact:
    target: str  # registered target name
    precision: str
    graph: Graph  # the source model
    dt: float  # seconds per IR time step
    payload: Any  # the target's own data (decoded)
    report: dict[str, Any]  # JSON data: resources, quantisation, ...


def to_dict(a: Artifact, encode: Any = encode_array) -> dict[str, Any]:
    """The artifact as JSON data; ``encode`` makes its model's and payload's arrays (JSON
    text records by default, or an ArrayWriter's references). The report is JSON data:
    any array in it becomes a text record either way."""
    from .registry import target

    return {
        "target": a.target,
        "precision": a.precision,
        "dt": a.dt,
        "model": graph_to_dict(a.graph, encode),
        "payload": encode_tree(target(a.target).encode_payload(a.payload), encode),
        "report": encode_tree(a.report),
    }


def from_dict(d: Any, source: str, arrays: Any = None) -> Artifact:
    """The artifact of its JSON data, checked; ``arrays`` decodes its model's and
    payload's array records (documents.TextArrays() by default; the BinaryArrays of a
    binary file, whose layout is checked once both are decoded)."""
    from .registry import target

    arrays = arrays if arrays is not None else TextArrays()

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
        graph = graph_from_dict(d["model"], arrays)
    except (IRError, ModelFileError) as exc:
        raise ModelFileError(f"{source}: the artifact's model is invalid: {exc}") from None
    data = decode_tree(d["payload"], source, arrays)
    arrays.finish()
    try:
        payload = tgt.decode_payload(data, graph=graph, dt=float(dt), precision=precision, source=source)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, IRError) as exc:
        # A target's decode_payload should refuse everything itself; this is the backstop.
        text = " ".join(str(exc).split())[:120]
        raise ModelFileError(f"{source}: artifact payload is malformed ({type(exc).__name__}: {text})") from None
    return Artifact(name, precision, graph, float(dt), payload, d["report"])


def dumps_text(a: Artifact) -> str:
    """The artifact as JSON text, version 2 (base64 float64/int64 arrays): the form
    neuromorph wrote before version 3, which every version reads."""
    return dumps_document(FORMAT, TEXT_VERSION, "artifact", to_dict(a))


def save_artifact(a: Artifact, path: str | os.PathLike[str]) -> Path:
    """Write ``a`` to ``path`` atomically (version 3, the binary container)."""
    arrays = ArrayWriter()
    content = to_dict(a, arrays.encode)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            write_binary(f, FORMAT, VERSION, "artifact", content, arrays)

    return write_atomic(path, write)


def loads_artifact(data: str | bytes, source: str = "<string>") -> Artifact:
    """The artifact in a file's content (binary or JSON text); a one-line ModelFileError otherwise."""
    doc = loads_any(data, FORMAT, "artifact", source, WHAT, versions=VERSIONS, binary_version=VERSION)
    return from_dict(doc.payload, source, doc.arrays)


def load_artifact(path: str | os.PathLike[str]) -> Artifact:
    """The artifact in a file; anything else (not a regular file, too large, malformed,
    inconsistent with its target's limits) is a one-line ModelFileError."""
    source = display_path(path)
    doc = read_document(path, FORMAT, "artifact", WHAT, versions=VERSIONS, binary_version=VERSION)
    return from_dict(doc.payload, source, doc.arrays)


_TARGET_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}")
_FORMAT_KEY = re.compile(rb'"format"\s*:\s*"([^"\\]{0,64})"')
SNIFF_BYTES = 4096


def is_artifact(path: str | os.PathLike[str]) -> bool:
    """Cheap sniff: does the file hold an artifact document? In a binary file, the JSON
    head's first key (our writer puts ``"format"`` first, right after the 64-byte
    header). In JSON text, the top-level ``"format"`` key, whitespace-tolerant, at the
    start (our writer puts it first) or else as the last in the final SNIFF_BYTES (a
    re-save with sorted keys puts it after the content). A wrong guess only changes the
    message of the refusal. Reads nothing but a regular file, and never blocks (a FIFO
    or a device is not an artifact)."""
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
    if is_binary(head):
        found = _FORMAT_KEY.match(head, HEADER_BYTES + 1) if head.startswith(MAGIC) else None
        return found is not None and found.group(1) == FORMAT.encode()
    if not head.lstrip().startswith(b"{"):
        return False
    # The top-level key is the first one in a file as we write it, else (keys sorted:
    # "artifact" < "format") the last one.
    first = _FORMAT_KEY.search(head)
    if first is not None and first.start() < 64:
        return first.group(1) == FORMAT.encode()
    last = [m.group(1) for m in _FORMAT_KEY.finditer(tail or head)]
    return bool(last) and last[-1] == FORMAT.encode()


__all__ = ["Artifact", "FORMAT", "VERSION", "dumps_text", "is_artifact", "load_artifact", "loads_artifact",
           "save_artifact"]
