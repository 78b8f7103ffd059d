"""Backend registry: compile targets are found through the ``neuromorph.backends``
entry-point group, so a new backend registers from its own package without editing
neuromorph. An entry point names a :class:`BackendSpec`.

    [project.entry-points."neuromorph.backends"]
    lava = "neuromorph.backends.specs:LAVA"
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable

from .errors import IRError, NeuromorphError
from .ir import Graph

GROUP = "neuromorph.backends"


@dataclass(frozen=True)
class BackendSpec:
    """What a backend supports, and where its compile and run functions live (imported
    only when used: a backend's simulator may be slow to import)."""

    name: str
    description: str
    precisions: tuple[str, ...]
    node_types: frozenset[str]
    compile: str  # "module:function" (graph, *, precision, dt, calibration, chips) -> Artifact
    run: str  # "module:function" (netlist, x, *, precision, quantized, probes, progress) -> (outputs, spikes, info)
    limits: str = ""  # where the target's limits are stated (for humans)

    def load(self, which: str) -> Callable[..., Any]:
        module, _, attr = getattr(self, which).partition(":")
        return getattr(importlib.import_module(module), attr)

    def check(self, graph: Graph, precision: str) -> None:
        """Refuse, at compile time, what this backend cannot take, naming the node."""
        if precision not in self.precisions:
            raise NeuromorphError(
                f"backend '{self.name}' has no precision '{precision}' (it has {', '.join(self.precisions)})")
        for name, node in graph.nodes.items():
            if node.type_name not in self.node_types:
                raise IRError(f"backend '{self.name}' cannot take {node.type_name} nodes "
                              f"(it supports {', '.join(sorted(self.node_types))})", node=name)


def backends() -> dict[str, BackendSpec]:
    found: dict[str, BackendSpec] = {}
    for ep in entry_points(group=GROUP):
        try:
            spec = ep.load()
        except Exception as exc:  # a broken third-party plugin must not break neuromorph
            raise NeuromorphError(f"backend entry point '{ep.name}' ({ep.value}) failed to load: {exc}") from None
        if not isinstance(spec, BackendSpec):
            raise NeuromorphError(f"backend entry point '{ep.name}' ({ep.value}) is not a BackendSpec")
        found[spec.name] = spec
    return found


def get(name: str) -> BackendSpec:
    available = backends()
    if name not in available:
        raise NeuromorphError(f"unknown backend '{name}' (available: {', '.join(sorted(available)) or 'none'})")
    return available[name]
