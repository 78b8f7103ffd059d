"""Model files: a versioned, checksummed JSON document that round-trips a Graph exactly.

Layout (UTF-8 JSON)::

    {"format": "neuromorph-model", "version": 1, "sha256": "<hex>", "model": {...}}

``sha256`` is taken over the canonical JSON text of ``model`` (sorted keys, no spaces),
so any change to the payload is detected. Arrays are stored as base64 of their
little-endian float64 bytes with shape and dtype: bit-exact, and compact enough for
trained weights. Files are written atomically (temporary file in the same folder, then
``os.replace``), so a crash never leaves a half-written model behind.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import IRError, ModelFileError
from .ir import NODE_TYPES, Edge, Graph, Node, Plasticity

FORMAT = "neuromorph-model"
VERSION = 1


# ------------------------------------------------------------------ encode / decode


def _encode_value(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value, dtype="<f8")
        return {
            "__array__": base64.b64encode(data.tobytes()).decode("ascii"),
            "dtype": "float64",
            "shape": list(value.shape),
        }
    if isinstance(value, Plasticity):
        return {"__plasticity__": value.rule, "params": dict(value.params)}
    if isinstance(value, tuple):
        return list(value)
    return value


def _decode_value(value: Any, where: str) -> Any:
    if isinstance(value, dict) and "__array__" in value:
        if value.get("dtype") != "float64":
            raise ModelFileError(f"{where}: unsupported array dtype {value.get('dtype')!r}")
        try:
            raw = base64.b64decode(value["__array__"], validate=True)
            shape = tuple(int(s) for s in value["shape"])
            return np.frombuffer(raw, dtype="<f8").reshape(shape).astype(np.float64)
        except (ValueError, TypeError, KeyError) as exc:
            raise ModelFileError(f"{where}: corrupted array data ({exc})") from None
    if isinstance(value, dict) and "__plasticity__" in value:
        return Plasticity(value["__plasticity__"], value.get("params", {}))
    return value


def graph_to_dict(graph: Graph) -> dict[str, Any]:
    return {
        "dt": graph.dt,
        "metadata": dict(graph.metadata),
        "nodes": [
            {
                "name": name,
                "type": node.type_name,
                "params": {k: _encode_value(v) for k, v in node.params().items()},
            }
            for name, node in graph.nodes.items()
        ],
        "edges": [[e.source, e.target, e.delay] for e in graph.edges],
    }


def graph_from_dict(data: dict[str, Any]) -> Graph:
    try:
        nodes: dict[str, Node] = {}
        for entry in data["nodes"]:
            name, type_name = entry["name"], entry["type"]
            cls = NODE_TYPES.get(type_name)
            if cls is None:
                raise IRError(f"unknown node type '{type_name}'", node=name)
            params = {k: _decode_value(v, f"node '{name}'") for k, v in entry["params"].items()}
            try:
                nodes[name] = cls(**params)
            except TypeError as exc:
                raise IRError(f"bad parameters for {type_name}: {exc}", node=name) from None
            except IRError as exc:
                raise IRError(str(exc), node=name) from None
        edges = [Edge(*e) for e in data["edges"]]
        return Graph(nodes, edges, dt=data.get("dt"), metadata=data.get("metadata") or {})
    except (KeyError, TypeError) as exc:
        raise ModelFileError(f"model data is malformed (missing or wrong field: {exc})") from None


def _canonical(payload: Any) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


# ------------------------------------------------------------------ files


def dumps(graph: Graph) -> str:
    payload = graph_to_dict(graph)
    try:
        digest = hashlib.sha256(_canonical(payload)).hexdigest()
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"model metadata is not JSON-serialisable: {exc}") from None
    doc = {"format": FORMAT, "version": VERSION, "sha256": digest, "model": payload}
    return json.dumps(doc, indent=1, allow_nan=False) + "\n"


def loads(text: str | bytes, source: str = "<string>") -> Graph:
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelFileError(
            f"{source}: not a neuromorph model file (not valid JSON; truncated or foreign?)"
        ) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ModelFileError(f"{source}: not a neuromorph model file (no '{FORMAT}' header)")
    version = doc.get("version")
    if version != VERSION:
        raise ModelFileError(
            f"{source}: model file version {version!r} is not supported (this neuromorph reads {VERSION})"
        )
    payload = doc.get("model")
    if hashlib.sha256(_canonical(payload)).hexdigest() != doc.get("sha256"):
        raise ModelFileError(f"{source}: checksum mismatch, the file is corrupted")
    try:
        return graph_from_dict(payload)
    except IRError as exc:
        raise ModelFileError(f"{source}: invalid model: {exc}") from None


def save(graph: Graph, path: str | os.PathLike[str]) -> Path:
    """Write ``graph`` to ``path`` atomically; returns the path."""
    return write_atomic(path, dumps(graph).encode())


def load(path: str | os.PathLike[str]) -> Graph:
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{p}: is a directory, not a model file") from None
    except OSError as exc:
        raise ModelFileError(f"{p}: cannot read ({exc.strerror})") from None
    return loads(data, str(p))


def write_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write bytes so that readers see either the old file or the complete new one."""
    p = Path(path)
    directory = p.parent if str(p.parent) else Path(".")
    if not directory.is_dir():
        raise ModelFileError(f"{p}: folder {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return p
