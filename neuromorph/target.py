"""The target interface: what a backend that compiles and runs networks provides.

Core code (compile, run, verify, the CLI) talks to targets only through this interface
and finds them through the registry (``neuromorph/registry.py``); it never names one.
A target is one object, registered under the ``neuromorph.targets`` entry-point group:

    [project.entry-points."neuromorph.targets"]
    mychip = "mypackage.target:MYCHIP"

What a target does, in the order a network meets it:

``check``      refuse at compile time what it cannot take, naming the node (its node
               rule table, :mod:`neuromorph.rules`, and its precisions)
``compile``    IR graph -> its payload (whatever it needs to run) and a report (JSON data:
               resources, quantisation error, ...)
``encode_payload`` / ``decode_payload``  the payload as JSON data inside the artifact
               envelope (:mod:`neuromorph.artifact`), checked field by field when read
``run``        streams through the deployment: inputs ``{Input: [N, T, *shape]}`` ->
               :class:`~neuromorph.streams.Recording`, outputs aligned to IR time steps
``reference``  what ``verify`` compares ``run`` against, and how exactly it should agree.
               By default the IR's own semantics, :func:`neuromorph.simulate.simulate`
               (float64); a bit-accurate target returns its integer model instead.

Heavy dependencies (Lava, torch) are imported inside ``compile``/``run``, never when
the registry loads the target.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from .errors import IRError, NeuromorphError
from .ir import Graph
from .rules import RuleTable, check_graph
from .streams import Probe, Recording

if TYPE_CHECKING:
    from .artifact import Artifact

Progress = Callable[[int, int], None]
"""``progress(steps done, steps in total)``, called while a long run goes on."""


@dataclass(frozen=True)
class Compiled:
    """What ``Target.compile`` returns: the payload to run, and a JSON-able report."""

    payload: Any
    report: dict[str, Any]
    dt: float


@dataclass(frozen=True)
class Reference:
    """What ``verify`` compares a deployment with: its name, its recording, and the spike
    agreement the deployment must reach (1.0 where the two compute the same arithmetic)."""

    name: str
    recording: Recording
    expected_agreement: float


class Target(ABC):
    """A compile-and-run backend. Subclasses set the class attributes and the methods."""

    name: str = ""
    description: str = ""
    precisions: tuple[str, ...] = ("float",)
    plasticity: frozenset[str] = frozenset()
    """Plasticity rules (ir.PLASTICITY_RULES) this target executes; others are refused."""
    options: Mapping[str, tuple[type, str]] = {}
    run_options: Mapping[str, tuple[type, str]] = {}
    """How a run may be done, {name: (type, help)} (CLI flags of run and verify; the
    Loihi 2 target's ``lanes``); passed to :meth:`run` as keyword arguments."""
    """Extra compile options this target takes: name -> (type, help). Each becomes a
    ``neuromorph compile --NAME`` flag and a keyword argument of ``compile``."""

    @property
    @abstractmethod
    def rules(self) -> RuleTable:
        """Node type -> this target's rule for it, or a Refusal (neuromorph.rules)."""

    def check(self, graph: Graph, precision: str) -> None:
        """Refuse, at compile time, what this target cannot take (one line, naming the node)."""
        if precision not in self.precisions:
            raise NeuromorphError(f"target '{self.name}' has no precision '{precision}' "
                                  f"(it has {', '.join(self.precisions)})")
        check_graph(self.rules, graph, f"target '{self.name}'")
        for name, node in graph.nodes.items():
            rule = getattr(node, "plasticity", None)
            if rule is not None and rule.rule not in self.plasticity:
                raise IRError(f"target '{self.name}' cannot run plasticity rule '{rule.rule}' "
                              f"(it runs: {', '.join(sorted(self.plasticity)) or 'none'}); the "
                              "weights would silently stay fixed", node=name)

    @abstractmethod
    def compile(self, graph: Graph, *, precision: str, dt: float | None,
                calibration: Mapping[str, np.ndarray] | None, **options: Any) -> Compiled:
        """Lower ``graph``; ``calibration``: sample inputs {Input: [N, T, *shape]}."""

    @abstractmethod
    def encode_payload(self, payload: Any) -> dict[str, Any]:
        """The payload as JSON data (numpy arrays allowed: the envelope encodes them)."""

    @abstractmethod
    def decode_payload(self, data: Any, *, graph: Graph, dt: float, precision: str,
                       source: str) -> Any:
        """Rebuild the payload, refusing (ModelFileError, one line) anything malformed."""

    @abstractmethod
    def run(self, artifact: "Artifact", inputs: Mapping[str, np.ndarray], *,
            probes: Sequence[Probe] = (), progress: Progress | None = None) -> Recording:
        """Run ``inputs`` ({Input: float64 [N, T, *shape]}, already checked)."""

    def reference(self, artifact: "Artifact", inputs: Mapping[str, np.ndarray], *,
                  probes: Sequence[Probe] = ()) -> Reference:
        """The IR's semantics in float64 numpy (neuromorph.simulate)."""
        from .simulate import simulate

        out = simulate(artifact.graph, dict(inputs), dt=artifact.dt, record=[p.text for p in probes])
        rec = Recording({o: out[o] for o in artifact.graph.outputs}, {p.text: out[p.text] for p in probes})
        return Reference("IR semantics (numpy float64)", rec, 1.0)

    def learned(self, artifact: "Artifact", recording: Recording) -> "Artifact":
        """The artifact holding the weights a learning run (``run(..., learn=True)``, for a
        target that runs plasticity) ended with: what later runs and ``--save-learned`` use."""
        raise NeuromorphError(f"target '{self.name}' does not learn on chip")

    def summary(self, artifact: "Artifact") -> str:
        """The report as text for people (a resource map, a quantisation table ...)."""
        return ""
