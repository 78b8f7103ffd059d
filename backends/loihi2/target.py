"""The Loihi 2 target, registered as ``lava``: compile for Loihi 2, run in Lava's simulator.

    compile:   discretise (neuromorph.discretize) -> lower (netlist.py) -> map onto cores
               (resources.py) -> quantise to Loihi 2 formats when precision is "fixed"
               (quantize.py)
    run:       Lava's Loihi2SimCfg, floating_pt or fixed_pt (lava/runner.py); by default many
               samples side by side ("lanes": copies of the network on the chip's spare
               cores) under Lava's AsyncProtocol, ``lanes=1`` one sample at a time
    reference: float -> the IR semantics (neuromorph.simulate), spike for spike up to
               float rounding; fixed -> the bit-exact numpy model of the integer
               arithmetic (quantize.simulate_fixed), which must agree exactly
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping, Sequence

import numpy as np

from neuromorph.errors import NeuromorphError
from neuromorph.ir import Graph
from neuromorph.rules import RuleTable
from neuromorph.streams import Probe, Recording
from neuromorph.target import Compiled, Progress, Reference, Target

from .netlist import LOWERING_RULES, Netlist, lower
from .conv import CONV_FIELDS
from .resources import map_netlist

FLOAT_AGREEMENT = 0.999
"""Spike agreement a float deployment must reach against the IR semantics: Lava sums
composed matrices (gains folded in) where the reference applies them one by one, so a
membrane within rounding of its threshold may fire one step apart."""


@dataclass(frozen=True, eq=False)
class Deployment:
    """The payload of a Loihi 2 artifact: the netlist, and for fixed point its integers."""

    netlist: Netlist
    quantized: Any = None  # quantize.QuantizedNetlist when precision is "fixed"


class Loihi2Target(Target):
    name = "lava"
    description = "Loihi 2 in Intel Lava 0.10.0's simulator (Loihi2SimCfg floating_pt / fixed_pt)"
    precisions = ("float", "fixed")
    options = {"chips": (int, "number of Loihi 2 chips the network may use (default 1)")}
    run_options = {"lanes": (int, "samples run side by side in Lava, as copies of the network on spare "
                                  "cores (default: as many as fit the chips the artifact was compiled "
                                  "for, asynchronous); 1: one at a time, Lava's Dense, LoihiProtocol")}
    """Options of ``run`` (``neuromorph run`` / ``verify`` flags): name -> (type, help)."""

    @property
    def rules(self) -> RuleTable:
        return LOWERING_RULES

    def compile(self, graph: Graph, *, precision: str, dt: float | None,
                calibration: Mapping[str, np.ndarray] | None, chips: int = 1) -> Compiled:
        net = lower(graph, dt)
        mapping = map_netlist(net, chips_allowed=chips)
        report: dict[str, Any] = {"resources": {**mapping.to_dict(), "table": mapping.table()},
                                  "latency_steps": net.latency}
        quantized = None
        if precision == "fixed":
            from .quantize import quantize

            quantized = quantize(net, calibration)
            report["quantization"] = quantized.report
        return Compiled(Deployment(net, quantized), report, net.dt)

    # ------------------------------------------------------------ payload

    def encode_payload(self, payload: Deployment) -> dict[str, Any]:
        net = payload.netlist
        data: dict[str, Any] = {
            "netlist": {
                "inputs": [_record(p) for p in net.inputs],
                "populations": [_population_record(p) for p in net.populations],
                "connections": [_connection_record(c) for c in net.connections],
                "outputs": [_record(o) for o in net.outputs],
                "source_nodes": net.source_nodes,
            },
            "quantized": None,
        }
        if payload.quantized is not None:
            from .payload import encode_quantized

            # mantissas a byte each by sign mode, parameters at their narrowest dtype (payload.py)
            data["quantized"] = encode_quantized(payload.quantized)
        return data

    def decode_payload(self, data: Any, *, graph: Graph, dt: float, precision: str,
                       source: str) -> Deployment:
        """The deployment, after every field of ``data`` is checked against the artifact's
        model and the chip's limits (payload.py); ModelFileError (one line) otherwise."""
        from .payload import decode

        net, quantized = decode(data, graph=graph, dt=dt, precision=precision, source=source)
        return Deployment(net, quantized)

    # ------------------------------------------------------------ running

    def run(self, artifact: Any, inputs: Mapping[str, np.ndarray], *,
            probes: Sequence[Probe] = (), progress: Progress | None = None,
            lanes: int | None = None) -> Recording:
        from .lava.runner import run_lava

        dep: Deployment = artifact.payload
        wanted = _population_probes(dep.netlist, probes)
        samples = len(next(iter(inputs.values())))
        plan, cores = run_plan(artifact, samples, lanes)
        outputs, spikes, info = run_lava(dep.netlist, dict(inputs), precision=artifact.precision,
                                         quantized=dep.quantized, probes=list(wanted.values()),
                                         progress=progress, plan=plan)
        return Recording(
            outputs, {text: info.probes[sel] for text, sel in wanted.items()}, spikes,
            {"chip_steps": info.chip_steps, "lava_processes": info.processes,
             "latency_steps": dep.netlist.latency, "plan": info.plan.describe(),
             "lanes": info.plan.lanes, "asynchronous": info.plan.asynchronous,
             "cores_per_lane": cores["per_lane"], "cores": cores["per_lane"] * info.plan.lanes,
             "cores_available": cores["available"],
             "seconds_build": round(info.seconds_build, 3), "seconds_run": round(info.seconds_run, 3)})

    def reference(self, artifact: Any, inputs: Mapping[str, np.ndarray], *,
                  probes: Sequence[Probe] = ()) -> Reference:
        if artifact.precision != "fixed":
            ref = super().reference(artifact, inputs, probes=probes)
            return Reference(ref.name, ref.recording, FLOAT_AGREEMENT)
        from .quantize import simulate_fixed

        dep: Deployment = artifact.payload
        wanted = _population_probes(dep.netlist, probes)
        if any(signal != "spikes" for _, signal in wanted.values()):
            raise NeuromorphError("the fixed-point reference records spikes only")
        out, spikes = simulate_fixed(dep.quantized, dict(inputs), record_spikes=True)
        rec = Recording({o.name: out[o.name] for o in dep.netlist.outputs},
                        {text: out[f"{pop}.spikes"] for text, (pop, _) in wanted.items()}, spikes)
        return Reference("bit-exact numpy model of the fixed-point arithmetic", rec, 1.0)

    def summary(self, artifact: Any) -> str:
        lines = [artifact.report["resources"]["table"]]
        q = artifact.report.get("quantization")
        if q:
            lines += ["", "quantization (per connection and population):"]
            for item in [*q.get("connections", []), *q.get("populations", [])]:
                lines.append("  " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                              for k, v in item.items()))
        return "\n".join(lines)


def run_plan(artifact: Any, samples: int, lanes: int | None) -> tuple[Any, dict[str, int]]:
    """The Lava plan of a run (lava/runner.py's ``Plan``) and the cores it takes.

    ``lanes`` None: as many lanes as the chips the artifact was compiled for hold copies
    of the network (``ResourceMap.max_lanes``), spread evenly over the rounds the samples
    need (360 samples, 64 lanes at most: 6 rounds of 60), asynchronous; 1: one sample at
    a time with Lava's own Dense (the plan for anything that needs Lava's phases); B > 1:
    B lanes, asynchronous, refused (one line) when they do not fit the chips."""
    from .lava.runner import Plan

    mapping = map_netlist(artifact.payload.netlist, chips_allowed=_chips_allowed(artifact))
    cores = {"per_lane": mapping.cores, "available": mapping.chips_allowed * mapping.limits.cores_per_chip}
    if lanes is not None:
        mapping.check_lanes(int(lanes))
        lanes = min(int(lanes), max(int(samples), 1))
        return Plan(lanes, asynchronous=lanes > 1), cores
    most = max(1, mapping.max_lanes)
    rounds = -(-max(int(samples), 1) // most)
    return Plan(-(-max(int(samples), 1) // rounds), asynchronous=True), cores


def _chips_allowed(artifact: Any) -> int:
    """The chips the artifact was compiled for (its report; 1 where it does not say)."""
    try:
        chips = artifact.report["resources"]["chips_allowed"]
    except (KeyError, TypeError):
        return 1
    return chips if isinstance(chips, int) and not isinstance(chips, bool) and chips >= 1 else 1


def _record(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _population_record(pop: Any) -> dict[str, Any]:
    """A population's payload record; the default reset "value" is left out, so that the
    artifacts of networks without reset by subtraction are unchanged (payload.py reads
    a record without it as "value")."""
    rec = _record(pop)
    if rec["reset"] == "value":
        del rec["reset"]
    return rec


def _connection_record(conn: Any) -> dict[str, Any]:
    """A connection's payload record: a dense one exactly as before convolutions were kept
    (no ``conv`` field); a convolutional one adds its geometry (the kernel size is the
    weight's shape; payload.py checks each field)."""
    rec = _record(conn)
    geom = rec.pop("conv")
    if geom is not None:
        rec["conv"] = {k: getattr(geom, k) for k in CONV_FIELDS}
    return rec


def _population_probes(net: Netlist, probes: Sequence[Probe]) -> dict[str, tuple[str, str]]:
    """IR probes -> (population, "spikes" | "v"): every neuron node is one population."""
    pops = {p.name: p for p in net.populations}
    out = {}
    for probe in probes:
        if probe.node not in pops or probe.var not in ("", "v"):
            raise NeuromorphError(
                f"cannot record '{probe.text}' on Loihi 2: record a neuron population's output "
                f"('NAME') or membrane ('NAME.v'); populations: {', '.join(sorted(pops))}")
        own = "spikes" if pops[probe.node].spiking else "v"  # an LI population's output is v
        out[probe.text] = (probe.node, probe.var or own)
    return out


LAVA = Loihi2Target()
