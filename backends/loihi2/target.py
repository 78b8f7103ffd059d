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

from neuromorph.errors import IRError, NeuromorphError
from neuromorph.ir import Graph
from neuromorph.ir.plasticity import frozen
from neuromorph.rules import RuleTable
from neuromorph.streams import Probe, Recording
from neuromorph.target import Compiled, Progress, Reference, Target

from .learning_model import FLOAT_ONLY_RULES, RULES as LEARNING_RULES
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
    plasticity = frozenset(LEARNING_RULES)
    """Rules run on the chip (learning_model.py, docs/onchip-learning.md); a run learns
    only when asked (``run(..., learn=True)``), otherwise the weights stay as compiled."""
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

            for spec in net.learning.values():
                if spec.rule in FLOAT_ONLY_RULES:
                    raise IRError(f"plasticity '{spec.rule}' on Loihi 2 runs in float precision only for now (its "
                                  "fixed-point engine constants are not derived yet): compile with "
                                  "precision=\"float\"", node=spec.name)

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
            lanes: int | None = None, learn: bool = False, rng_seed: int = 1) -> Recording:
        """Run ``inputs`` through the artifact in Lava. ``learn``: its plastic connections
        learn on the chip, one sample after another (one at a time: ``lanes`` must be None
        or 1), the weights carrying from sample to sample; the recording then holds, for
        each plastic connection NAME, the probe ``"NAME.weight"``: ``[N, out, in]``, its
        weights (model units, dequantised in fixed point) after each sample
        (:func:`learned_weights`). ``rng_seed``: the fixed-point learning engine's seed."""
        from .lava.runner import run_lava

        dep: Deployment = artifact.payload
        wanted = _population_probes(dep.netlist, [p for p in probes if not (learn and _is_weight(dep, p))])
        samples = len(next(iter(inputs.values())))
        if learn:
            if lanes not in (None, 1):
                raise NeuromorphError(f"a learning run takes one sample at a time: lanes must be 1, not {lanes}")
            from .lava.runner import Plan

            plan, cores = Plan(1), run_plan(artifact, 1, 1)[1]
        else:
            plan, cores = run_plan(artifact, samples, lanes)
        outputs, spikes, info = run_lava(dep.netlist, dict(inputs), precision=artifact.precision,
                                         quantized=dep.quantized, probes=list(wanted.values()),
                                         progress=progress, plan=plan, learn=learn, rng_seed=rng_seed)
        recorded = {text: info.probes[sel] for text, sel in wanted.items()}
        for name, weights in info.learned.items():
            recorded[f"{name}.weight"] = model_weights(dep, name, weights)
        return Recording(
            outputs, recorded, spikes,
            {"chip_steps": info.chip_steps, "lava_processes": info.processes,
             "latency_steps": dep.netlist.latency, "plan": info.plan.describe(),
             "lanes": info.plan.lanes, "asynchronous": info.plan.asynchronous,
             "cores_per_lane": cores["per_lane"], "cores": cores["per_lane"] * info.plan.lanes,
             "cores_available": cores["available"],
             "seconds_build": round(info.seconds_build, 3), "seconds_run": round(info.seconds_run, 3)})

    def learned(self, artifact: Any, recording: Recording) -> Any:
        return with_weights(artifact, learned_weights(recording))

    def reference(self, artifact: Any, inputs: Mapping[str, np.ndarray], *,
                  probes: Sequence[Probe] = ()) -> Reference:
        if artifact.precision != "fixed":  # a run without learning: the weights as compiled
            import dataclasses

            ref = super().reference(dataclasses.replace(artifact, graph=frozen(artifact.graph)), inputs,
                                    probes=probes)
            return Reference(ref.name, ref.recording, FLOAT_AGREEMENT)
        from .quantize import simulate_fixed

        dep: Deployment = artifact.payload
        wanted = _population_probes(dep.netlist, probes)
        if any(signal != "spikes" for _, signal in wanted.values()):
            raise NeuromorphError("the fixed-point reference records spikes only")
        out, spikes = simulate_fixed(dep.quantized, dict(inputs), record_spikes=True)
        from .learning_model import error_output

        for spec in dep.netlist.learning.values():  # an error Output, where its readout is recorded
            read = next((o.name for o in dep.netlist.outputs if o.population == spec.target), None)
            if spec.error_output and read is not None:
                label = inputs.get(spec.label) if spec.label else None
                out[spec.error_output] = error_output(spec, label, out[read].reshape(len(out[read]), -1, spec.gain.size))
        rec = Recording({o: out[o] for o in artifact.graph.outputs if o in out},
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
    if rec.pop("plastic") is not None:  # a plastic connection names its IR node (payload.py)
        rec["plastic"] = conn.plastic
    return rec


# ---------------------------------------------------------------- learnt weights


def _is_weight(dep: Deployment, probe: Probe) -> bool:
    return probe.var == "weight" and probe.node in dep.netlist.learning


def model_weights(dep: Deployment, name: str, chip: np.ndarray) -> np.ndarray:
    """Plastic connection ``name``'s weights in the model's units (the IR node's
    ``weight``) from the chip's (``[..., out, in]``: the netlist's gain-scaled float
    weights, or fixed point's mantissas)."""
    spec = dep.netlist.learning[name]
    chip = np.asarray(chip, dtype=np.float64)
    if dep.quantized is None:
        return chip / spec.gain[:, None]
    i, conn = dep.netlist.plastic(name)
    return chip * (2.0 ** dep.quantized.weight_exps[i] / weight_gain(dep.quantized, i)) / spec.gain[:, None]


def weight_gain(q: Any, i: int) -> float:
    """Integer weight units per float netlist weight of connection ``i`` (quantize.py:
    ``W_eff = W * S / (64 c)``)."""
    c = q.net.connections[i]
    return q.v_scale[c.target] / (64 * q.input_scale.get(c.source, 1.0))


def learned_weights(recording: Recording) -> dict[str, np.ndarray]:
    """The final weights ``[out, in]`` (model units) of each plastic connection of a
    learning run (:meth:`Loihi2Target.run` with ``learn=True``), by connection name."""
    return {k[:-len(".weight")]: v[-1] for k, v in recording.probes.items() if k.endswith(".weight")}


def model_with_weights(graph: Graph, weights: Mapping[str, np.ndarray]) -> Graph:
    """``graph`` with the weights of the named (plastic) connections replaced: the model
    to save after a learning run (``nm.save(model_with_weights(artifact.graph, learned_weights(rec)), path)``)."""
    return graph.replace_nodes(**{name: graph.nodes[name].replace(weight=np.array(w, dtype=np.float64))
                                  for name, w in weights.items()})


def with_weights(artifact: Any, weights: Mapping[str, np.ndarray]) -> Any:
    """The artifact with its plastic connections holding ``weights`` ({name: [out, in]},
    model units; typically :func:`learned_weights`) and its model updated to match. Fixed
    point keeps every scale and exponent of the artifact and rounds the weights to the
    nearest mantissa in -256..255 (odd ones too: the learning engine's 8 bits + sign,
    which a frozen run applies exactly: lava/runner.py gives a plastic synapse's Dense 9
    weight bits); weights beyond that range are refused (one line). Learnt weights are
    mantissas already: they come back unchanged."""
    import dataclasses

    from .learning_model import WEIGHT_HI, WEIGHT_LO

    dep: Deployment = artifact.payload
    net, q = dep.netlist, dep.quantized
    conns, mantissas = list(net.connections), None if q is None else list(q.weights)
    for name, w in weights.items():
        if name not in net.learning:
            raise NeuromorphError(f"'{name}' is not a plastic connection of this artifact "
                                  f"(it has: {', '.join(net.learning) or 'none'})")
        i, conn = net.plastic(name)
        w = np.asarray(w, dtype=np.float64)
        if w.shape != conn.weight.shape or not np.all(np.isfinite(w)):
            raise NeuromorphError(f"weights for '{name}' must be finite, of shape {conn.weight.shape}")
        chip = net.learning[name].gain[:, None] * w
        conns[i] = dataclasses.replace(conn, weight=chip)
        if q is not None:  # the learning engine's mantissas: 8 bits + sign, odd ones too
            m = np.rint(chip * weight_gain(q, i) / 2.0 ** q.weight_exps[i])
            if np.any(m < WEIGHT_LO) or np.any(m > WEIGHT_HI):
                raise NeuromorphError(f"weights for '{name}' do not fit its 8-bit mantissas (+ sign) with "
                                      f"exponent {q.weight_exps[i]} (largest {np.abs(m).max():g})")
            mantissas[i] = m.astype(np.int32)  # type: ignore[index]
    net = dataclasses.replace(net, connections=conns)
    if q is not None:
        q = dataclasses.replace(q, net=net, weights=mantissas)
    return dataclasses.replace(artifact, graph=model_with_weights(artifact.graph, weights),
                               payload=Deployment(net, q))


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
