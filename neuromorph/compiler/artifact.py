"""Compiled artifacts: everything needed to run a deployment, and nothing else.

An artifact holds the netlist (populations, synapse matrices, offsets), the fixed-point
data when compiled for ``fixed``, the resource map and quantisation report, and the
source model as IR data (so ``verify`` can rebuild the reference). It is a versioned,
checksummed document written atomically (see neuromorph/documents.py); running it
needs no Python code from whoever defined the model.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any


from ..documents import decode_tree, dumps_document, encode_tree, loads_document, read_file, write_atomic
from ..errors import IRError, ModelFileError
from ..ir import Graph
from ..model_file import graph_from_dict, graph_to_dict
from .netlist import Connection, InputPort, Netlist, OutputPort, Population

FORMAT = "neuromorph-artifact"
VERSION = 1


@dataclass(frozen=True, eq=False)
class Artifact:
    backend: str
    precision: str  # "float" or "fixed"
    graph: Graph  # the source model
    netlist: Netlist
    quantized: Any  # QuantizedNetlist for fixed, else None
    resources: dict[str, Any]
    quantization: dict[str, Any]

    @property
    def dt(self) -> float:
        return self.netlist.dt


def _record(obj: Any) -> dict[str, Any]:
    return {f.name: encode_tree(getattr(obj, f.name)) for f in fields(obj)}


def netlist_to_dict(net: Netlist) -> dict[str, Any]:
    return {
        "dt": net.dt,
        "inputs": [_record(p) for p in net.inputs],
        "populations": [_record(p) for p in net.populations],
        "connections": [_record(c) for c in net.connections],
        "outputs": [_record(o) for o in net.outputs],
        "source_nodes": net.source_nodes,
    }


def netlist_from_dict(d: dict[str, Any], where: str) -> Netlist:
    def make(cls: type, item: dict[str, Any]) -> Any:
        values = decode_tree(item, where)
        if "shape" in values:
            values["shape"] = tuple(values["shape"])
        return cls(**values)

    return Netlist(
        dt=float(d["dt"]),
        inputs=[make(InputPort, i) for i in d["inputs"]],
        populations=[make(Population, p) for p in d["populations"]],
        connections=[make(Connection, c) for c in d["connections"]],
        outputs=[make(OutputPort, o) for o in d["outputs"]],
        source_nodes=d.get("source_nodes") or {},
    )


def to_dict(a: Artifact) -> dict[str, Any]:
    quantized = None
    if a.quantized is not None:
        quantized = {f.name: encode_tree(getattr(a.quantized, f.name))
                     for f in fields(a.quantized) if f.name != "net"}
    return {
        "backend": a.backend,
        "precision": a.precision,
        "model": graph_to_dict(a.graph),
        "netlist": netlist_to_dict(a.netlist),
        "quantized": quantized,
        "resources": encode_tree(a.resources),
        "quantization": encode_tree(a.quantization),
    }


def from_dict(d: dict[str, Any], source: str) -> Artifact:
    try:
        net = netlist_from_dict(d["netlist"], source)
        quantized = None
        if d["quantized"] is not None:
            from .quantize import QuantizedNetlist

            q = decode_tree(d["quantized"], source)
            quantized = QuantizedNetlist(net=net, **q)
        return Artifact(
            backend=d["backend"], precision=d["precision"], graph=graph_from_dict(d["model"]),
            netlist=net, quantized=quantized, resources=d["resources"],
            quantization=d["quantization"],
        )
    except (KeyError, TypeError, ValueError, IRError) as exc:
        raise ModelFileError(f"{source}: artifact content is malformed ({exc})") from None


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
