"""Reading a Loihi 2 artifact's payload: every field checked before anything uses it.

An artifact's checksum only catches accidents (anyone can recompute it), so the payload
is untrusted data. ``decode`` rebuilds the :class:`~.netlist.Netlist` (and for fixed point
the :class:`~.quantize.QuantizedNetlist`) only after checking, field by field, what the
compiler guarantees and the chip can hold; anything else is a one-line ModelFileError
naming the field:

- structure: each record has exactly its fields; names are strings; lists and objects
  where they belong;
- consistency with the artifact's own model: one input port per Input node, one
  population per neuron node (of its kind: netlist.KINDS), one output port per Output
  node read from the population that feeds it, every shape the model's; every
  connection joins an existing source (input or population) to a population with a
  ``[target size, source size]`` matrix, or (a convolutional connection, with a ``conv``
  record) a kernel ``[C_out, C_in/groups, *K]`` whose geometry (in/out shapes of the
  source's and target's sizes, stride, padding, dilation, groups) gives exactly the
  out_shape; so no size in the payload can exceed what the model (and the file's own
  data) declares;
- reset: a population's ``reset`` (absent: "value") is its model node's reset mode;
- timing: offsets within ``0..number of populations`` (the compiler's offsets are
  longest paths of at most one step per population), IR delays at most the model's
  total delay, and ``extra_delay = offset(target) - offset(source) - 1 + ir_delay``
  exactly; for fixed point at most :data:`LOIHI_MAX_DELAY` (Loihi 2's 6-bit delays);
- float values: finite (a non-spiking LI population's threshold is +inf), decays in
  ``[0, 1]`` (up to discretize.DECAY_TOLERANCE), adaptation strengths >= 0;
- fixed-point integers within the bit widths of quantize.py / neuron_step.py
  (:data:`FIXED_RANGES`), weight mantissas that Lava's clip/truncate leaves unchanged
  (8-bit), weight exponents in ``WEIGHT_EXP_MIN..WEIGHT_EXP_MAX``, message bits in
  0/8/16/24, positive finite scales.

The stored form of the integers (:func:`encode_quantized`, what ``target.encode_payload``
hands to the container, which keeps each array's dtype): weight mantissas by their sign
mode (``quantized.weight_signs``, one per connection, Lava's determine_sign_mode):
"mixed" (even values -256..254) as ``w >> 1`` in int8, "excitatory" (0..255) as uint8,
"inhibitory" (-255..0) as ``-w`` in uint8; population parameters at the narrowest of
int8/int16/int32 that holds their :data:`FIXED_RANGES` (:data:`PARAM_DTYPES`). Reading
takes exactly those dtypes, or int64 (the JSON text form widens every integer array to
int64), widens them to what the runtime uses (int32 mantissas, int64 parameters) and then
checks the values as before. Artifacts written before (no ``weight_signs``) hold the
mantissas themselves as int32 (binary) or int64 (JSON text), parameters as int64.
"""
from __future__ import annotations

import math
from dataclasses import fields
from typing import Any, NoReturn

import numpy as np

from neuromorph.discretize import DECAY_TOLERANCE
from neuromorph.documents import shown
from neuromorph.errors import IRError, ModelFileError
from neuromorph.ir import RESET_MODES, Delay, Graph, Neuron
from neuromorph.streams import MEMORY_BOUND, format_bytes

from . import neuron_step
from .conv import CONV_FIELDS, MAX_SPATIAL_DIMS, ConvGeometry, work_bytes
from .learning_model import plastic_nodes, plastic_wiring
from .netlist import KINDS, Connection, InputPort, Netlist, OutputPort, Population, plastic_learning
from .resources import Loihi2Limits
from .quantize import (
    BETA_MANT_MAX, BIAS_EXP_MAX, BIAS_MANT_MAX, PAYLOAD_BITS, UV_LIMIT, VTH_MAX, WEIGHT_EXP_MAX,
    WEIGHT_EXP_MIN, QuantizedNetlist, lava_weights, sign_mode,
)

KIND_OF = {"IF": "if", "LIF": "lif", "CubaLIF": "cuba", "ALIF": "alif", "LI": "li"}
"""The population kind the lowering gives each neuron node type."""
assert set(KIND_OF.values()) == set(KINDS)

LOIHI_MAX_DELAY = Loihi2Limits().max_delay
"""Loihi 2 synaptic delays are 6 bits (lava/runner.py MAX_DELAY; Lava's fixed DelayDense
refuses more)."""

BETA_SHIFT_RANGE = (-27, 62)
"""beta_shift: (beta_mant * a) >> beta_shift, a left shift when negative. |beta_mant * a|
< 2**35, so a left shift of at most 27 keeps the int64 threshold exact, and a right
shift of at most 62 is defined for int64."""

FIXED_RANGES: dict[str, tuple[int, int]] = {
    "du": (0, 4095), "dv": (0, 4095), "da": (0, 4095),  # 12-bit decays
    "bias_u": (-UV_LIMIT, UV_LIMIT),  # 24-bit signed
    "bias_mant": (-BIAS_MANT_MAX - 1, BIAS_MANT_MAX), "bias_exp": (0, BIAS_EXP_MAX),  # 13-bit << 0..7
    "vth": (0, VTH_MAX),  # 17-bit unsigned
    "v_init": (-UV_LIMIT, UV_LIMIT),  # 24-bit signed
    "a_inc": (0, UV_LIMIT),  # the trace saturates at 24 bits
    "beta_mant": (-BETA_MANT_MAX - 1, BETA_MANT_MAX), "beta_shift": BETA_SHIFT_RANGE,
}
"""Inclusive range of every fixed-point population parameter (neuron_step.FIXED_PARAMS)."""
assert set(FIXED_RANGES) == set(neuron_step.FIXED_PARAMS)


def _narrowest(lo: int, hi: int) -> np.dtype:
    return next(np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64)
                if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max)


PARAM_DTYPES: dict[str, np.dtype] = {k: _narrowest(lo, hi) for k, (lo, hi) in FIXED_RANGES.items()}
"""The dtype each fixed-point population parameter is stored at: the narrowest signed
integer that holds its FIXED_RANGES."""

SIGN_MODES = ("mixed", "excitatory", "inhibitory", "learned")

WEIGHT_DTYPES: dict[str, np.dtype] = {"mixed": np.dtype(np.int8), "excitatory": np.dtype(np.uint8),
                                      "inhibitory": np.dtype(np.uint8), "learned": np.dtype(np.int16)}
"""The dtype a connection's weight mantissas are stored at, by sign mode: mixed as
``w >> 1`` (int8), excitatory as ``w``, inhibitory as ``-w`` (uint8)."""

_STORED_RANGE = {"mixed": (-128, 127), "excitatory": (0, 255), "inhibitory": (0, 255), "learned": (-256, 255)}
_STORED_AS = {"mixed": "w >> 1", "excitatory": "w", "inhibitory": "-w", "learned": "w"}
""""learned": a plastic connection's mantissas after on-chip learning, 8 bits + sign with
odd values (the learning engine's weights, learning_model.py), int16; only on a plastic
connection, which the runner gives Lava's Dense 9 weight bits."""

V_SCALE_MAX = 2.0**30  # quantize._v_scale's cap

GEOMETRY_MAX = 2**31 - 1
"""Largest stride, padding, dilation or group count read (a convolution's work and memory
are bounded by its kernel and its target's size, not by these: conv.ConvOp gathers the
taps that exist)."""

_FLOAT_ARRAYS = ("du", "dv", "bias_u", "bias_v", "vth", "v_init", "v_shift", "da", "beta")
_DECAYS = ("du", "dv", "da")
_QUANTIZED_KEYS = tuple(f.name for f in fields(QuantizedNetlist) if f.name != "net")


def store_weights(w: np.ndarray, label: str = "", plastic: bool = False) -> tuple[str, np.ndarray]:
    """(sign mode, stored array) of a connection's mantissas; mantissas that Lava's clip
    and truncate would change (an odd one with mixed signs, one outside 8 bits) cannot
    come from quantize.py: an AssertionError, not a file. ``plastic``: learnt mantissas
    (-256..255, any parity) are stored as "learned"."""
    if plastic and not np.array_equal(lava_weights(w), w):
        if np.any(np.asarray(w) < -256) or np.any(np.asarray(w) > 255):
            raise AssertionError(f"connection {label}: learnt mantissas beyond 8 bits + sign")
        return "learned", np.asarray(w).astype(np.int16)
    mode = sign_mode(w)
    if mode == "mixed" and np.any(np.asarray(w) & 1):
        raise AssertionError(f"connection {label}: an odd weight mantissa with mixed signs (Lava "
                             "keeps only even ones): quantize.py must not emit it")
    if not np.array_equal(lava_weights(w), w):
        raise AssertionError(f"connection {label}: weight mantissas that Lava's clip and truncate "
                             "would change: quantize.py must not emit them")
    if mode == "mixed":
        return mode, (np.asarray(w) >> 1).astype(np.int8)
    return mode, (np.asarray(w) if mode == "excitatory" else -np.asarray(w)).astype(np.uint8)


def encode_quantized(q: QuantizedNetlist) -> dict[str, Any]:
    """The fixed-point integers of a payload in their stored form (the module docstring):
    mantissas by sign mode in a byte each, parameters at :data:`PARAM_DTYPES`."""
    out: dict[str, Any] = {f.name: getattr(q, f.name) for f in fields(q) if f.name != "net"}
    stored = [store_weights(w, f"{c.source}->{c.target}", c.plastic is not None)
              for c, w in zip(q.net.connections, q.weights)]
    out["weights"] = [arr for _, arr in stored]
    out["weight_signs"] = [mode for mode, _ in stored]
    out["populations"] = {name: {k: _store_param(v, k, name) for k, v in params.items()}
                          for name, params in q.populations.items()}
    return out


def _store_param(value: np.ndarray, key: str, population: str) -> np.ndarray:
    lo, hi = FIXED_RANGES[key]
    value = np.asarray(value)
    if value.size and (int(value.min()) < lo or int(value.max()) > hi):
        raise AssertionError(f"population '{population}': {key} outside {lo}..{hi}: quantize.py must "
                             "not emit it")
    return value.astype(PARAM_DTYPES[key])


def _keys(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


class _Reader:
    """Field checks that raise one-line ModelFileErrors naming the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, what: str) -> NoReturn:
        raise ModelFileError(f"{self.source}: artifact payload: {where}: {what}")

    def record(self, value: Any, where: str, keys: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(where, f"must be an object, got {shown(value)}")
        missing = [k for k in keys if k not in value]
        extra = [k for k in value if k not in keys]
        if missing:
            self.fail(where, f"missing {', '.join(missing)}")
        if extra:
            self.fail(where, f"unknown field(s) {shown(extra)}")
        return value

    def list(self, value: Any, where: str, length: int | None = None) -> list[Any]:
        if not isinstance(value, list):
            self.fail(where, f"must be a list, got {shown(value)}")
        if length is not None and len(value) != length:
            self.fail(where, f"has {len(value)} entries, expected {length}")
        return value

    def mapping(self, value: Any, where: str, keys: list[str]) -> dict[str, Any]:
        """An object whose keys are exactly ``keys`` (in any order)."""
        if not isinstance(value, dict):
            self.fail(where, f"must be an object, got {shown(value)}")
        if set(value) != set(keys):
            self.fail(where, f"has keys {shown(sorted(value))}, expected {shown(sorted(keys))}")
        return value

    def name(self, value: Any, where: str, allowed: Any, what: str) -> str:
        if not isinstance(value, str) or value not in allowed:
            self.fail(where, f"{shown(value)} is not {what}")
        return value

    def integer(self, value: Any, where: str, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(where, f"must be an int, got {shown(value)}")
        if not lo <= value <= hi:
            self.fail(where, f"{value} is outside {lo}..{hi}")
        return value

    def number(self, value: Any, where: str, lo: float, hi: float) -> float:
        """A finite number in ``(lo, hi]``."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(where, f"must be a number, got {shown(value)}")
        x = float(value)
        if not math.isfinite(x) or not lo < x <= hi:
            self.fail(where, f"{shown(value)} is outside ({lo:g}, {hi:g}]")
        return x

    def shape(self, value: Any, where: str, expected: tuple[int, ...]) -> tuple[int, ...]:
        if (not isinstance(value, list) or tuple(value) != expected
                or any(isinstance(s, bool) or not isinstance(s, int) for s in value)):
            self.fail(where, f"shape {shown(value)} is not the model's {list(expected)}")
        return expected

    def array(self, value: Any, where: str, shape: tuple[int, ...], kind: str) -> np.ndarray:
        """A decoded array of float64 (kind "f") or int64 (kind "i") of exactly ``shape``."""
        if not isinstance(value, np.ndarray):
            self.fail(where, f"must be an array, got {shown(value)}")
        if value.dtype.kind != kind:
            self.fail(where, f"must be {'float64' if kind == 'f' else 'int64'}, got {value.dtype}")
        if value.shape != shape:
            self.fail(where, f"has shape {list(value.shape)}, expected {list(shape)}")
        return value

    def finite(self, arr: np.ndarray, where: str) -> None:
        if not np.all(np.isfinite(arr)):
            self.fail(where, f"contains {'NaN' if np.any(np.isnan(arr)) else 'an infinity'}")

    def within(self, arr: np.ndarray, where: str, lo: float, hi: float) -> None:
        if arr.size and (np.min(arr) < lo or np.max(arr) > hi):
            bad = arr[(arr < lo) | (arr > hi)].flat[0]
            self.fail(where, f"value {bad:g} is outside {lo:g}..{hi:g}")


def delay_bound(graph: Graph, dt: float) -> int:
    """The longest delay (steps) any path of the model can have: the sum of its edge
    delays and of its Delay nodes' largest delays. An IR delay in the payload above it
    cannot have come from this model."""
    total = sum(e.delay for e in graph.edges)
    for node in graph.nodes.values():
        if isinstance(node, Delay) and node.delay.size:
            steps = float(np.max(node.delay)) / dt
            total += int(math.ceil(min(steps, 2.0**62)))
    return total


def decode(data: Any, *, graph: Graph, dt: float, precision: str,
           source: str) -> tuple[Netlist, QuantizedNetlist | None]:
    """The payload's netlist (and its integers for fixed point), checked against the
    artifact's model and the chip's limits; ModelFileError (one line) otherwise."""
    r = _Reader(source)
    top = r.record(data, "payload", ("netlist", "quantized"))
    net = _netlist(r, top["netlist"], graph, dt, fixed=precision == "fixed")
    if precision != "fixed":
        if top["quantized"] is not None:
            r.fail("quantized", "a float artifact carries no integer data")
        return net, None
    if not isinstance(top["quantized"], dict):
        raise ModelFileError(f"{source}: a fixed-point artifact without its integer data")
    return net, _quantized(r, top["quantized"], net)


def _netlist(r: _Reader, data: Any, graph: Graph, dt: float, fixed: bool) -> Netlist:
    d = r.record(data, "netlist", ("inputs", "populations", "connections", "outputs", "source_nodes"))

    inputs: list[InputPort] = []
    for i, item in enumerate(r.list(d["inputs"], "netlist.inputs", len(graph.inputs))):
        where = f"netlist.inputs[{i}]"
        rec = r.record(item, where, _keys(InputPort))
        name = r.name(rec["name"], f"{where}.name", graph.inputs, "an Input node of the model")
        if any(p.name == name for p in inputs):
            r.fail(where, f"input '{name}' appears twice")
        inputs.append(InputPort(name, r.shape(rec["shape"], f"input '{name}'", graph.shape(name))))

    neurons = {n: node for n, node in graph.nodes.items() if isinstance(node, Neuron)}
    pops: dict[str, Population] = {}
    for i, item in enumerate(r.list(d["populations"], "netlist.populations", len(neurons))):
        # "reset" is written only when it is not the default "value" (target.py)
        keys = _keys(Population)
        if not (isinstance(item, dict) and "reset" in item):
            keys = tuple(k for k in keys if k != "reset")
        rec = r.record(item, f"netlist.populations[{i}]", keys)
        name = r.name(rec["name"], f"netlist.populations[{i}].name", neurons, "a neuron node of the model")
        if name in pops:
            r.fail(f"netlist.populations[{i}]", f"population '{name}' appears twice")
        pops[name] = _population(r, rec, name, neurons[name], graph.shape(name), len(neurons))

    sizes = {**{p.name: p.size for p in inputs}, **{p.name: p.size for p in pops.values()}}
    offsets = {**{p.name: 0 for p in inputs}, **{p.name: p.offset for p in pops.values()}}
    longest = delay_bound(graph, dt)
    connections: list[Connection] = []
    for i, item in enumerate(r.list(d["connections"], "netlist.connections")):
        where = f"netlist.connections[{i}]"
        # "conv" is written only for a convolutional connection (target.py)
        keys = _keys(Connection)
        for optional in ("conv", "plastic"):  # written only when set (target.py)
            if not (isinstance(item, dict) and optional in item):
                keys = tuple(k for k in keys if k != optional)
        rec = r.record(item, where, keys)
        src = r.name(rec["source"], f"{where}.source", sizes, "an input port or population")
        dst = r.name(rec["target"], f"{where}.target", pops, "a population")
        where = f"connection {src}->{dst}"
        geom = None
        if "conv" in rec:
            geom = _conv_geometry(r, rec["conv"], rec["weight"], where, sizes[src], sizes[dst])
        shape = geom.kernel_shape if geom is not None else (sizes[dst], sizes[src])
        weight = r.array(rec["weight"], f"{where}: weight", shape, "f")
        r.finite(weight, f"{where}: weight")
        ir_delay = r.integer(rec["ir_delay"], f"{where}: ir_delay", 0, longest)
        extra = offsets[dst] - offsets[src] - 1 + ir_delay
        if rec["extra_delay"] != extra or isinstance(rec["extra_delay"], bool):
            r.fail(f"{where}: extra_delay", f"{shown(rec['extra_delay'])} does not match the offsets and the "
                   f"IR delay (offset {offsets[dst]} - offset {offsets[src]} - 1 + {ir_delay} = {extra})")
        if extra < 0:
            r.fail(where, f"arrives {-extra} step(s) before its target runs (offsets {offsets[src]} -> "
                   f"{offsets[dst]}, IR delay {ir_delay})")
        if fixed and extra > LOIHI_MAX_DELAY:
            r.fail(f"{where}: extra_delay", f"{extra} chip steps; Loihi 2 delays are at most {LOIHI_MAX_DELAY}")
        plastic = None
        if "plastic" in rec:
            plastic = r.name(rec["plastic"], f"{where}: plastic", plastic_nodes(graph), "a plastic connection of the model")
            if geom is not None or plastic_wiring(graph, plastic)[1] != dst:
                r.fail(f"{where}: plastic", f"'{plastic}' does not feed '{dst}' with a weight matrix")
            if any(c.plastic == plastic for c in connections):
                r.fail(f"{where}: plastic", f"'{plastic}' appears twice")
        connections.append(Connection(src, dst, weight, ir_delay, extra, geom, plastic))

    outputs: list[OutputPort] = []
    errors = {getattr(graph.nodes[p].plasticity, "error", None) for p in plastic_nodes(graph)}  # type: ignore[attr-defined]
    n_outputs = len([o for o in graph.outputs if o not in errors])
    for i, item in enumerate(r.list(d["outputs"], "netlist.outputs", n_outputs)):
        where = f"netlist.outputs[{i}]"
        rec = r.record(item, where, _keys(OutputPort))
        name = r.name(rec["name"], f"{where}.name", graph.outputs, "an Output node of the model")
        if any(o.name == name for o in outputs):
            r.fail(where, f"output '{name}' appears twice")
        feeds = {e.source for e in graph.incoming(name)}
        pop = r.name(rec["population"], f"output '{name}': population", pops.keys() & feeds,
                     f"the population that feeds Output '{name}'")
        signal = "v" if pops[pop].kind == "li" else "spikes"
        if rec["signal"] != signal:
            r.fail(f"output '{name}': signal", f"{shown(rec['signal'])}, but a '{pops[pop].kind}' "
                   f"population's output is '{signal}'")
        outputs.append(OutputPort(name, pop, signal, r.shape(rec["shape"], f"output '{name}'", graph.shape(name))))

    source_nodes = d["source_nodes"]
    if not isinstance(source_nodes, dict) or not all(
            k in pops and isinstance(v, list) and all(isinstance(n, str) and n in graph.nodes for n in v)
            for k, v in source_nodes.items()):
        r.fail("netlist.source_nodes", "must map populations to lists of the model's node names")
    missing = [p for p in plastic_nodes(graph) if not any(c.plastic == p for c in connections)]
    if missing:
        r.fail("netlist.connections", f"no synapse for the plastic connection '{missing[0]}'")
    try:  # the chip form of the plastic connections follows from the model (learning_model.py)
        learning = plastic_learning(graph, dt, connections, list(pops.values()))
    except IRError as exc:
        r.fail("netlist.connections", str(exc))
    return Netlist(dt, inputs, list(pops.values()), connections, outputs,
                   {k: list(v) for k, v in source_nodes.items()}, learning)


def _dims(r: _Reader, value: Any, where: str, length: int | None, lo: int) -> tuple[int, ...]:
    """A list of ints in ``lo..GEOMETRY_MAX`` (of ``length`` entries when given)."""
    if not isinstance(value, list) or not value or (length is not None and len(value) != length):
        r.fail(where, f"must be a list of {length or 'some'} ints, got {shown(value)}")
    return tuple(r.integer(v, where, lo, GEOMETRY_MAX) for v in value)


def _conv_geometry(r: _Reader, data: Any, weight: Any, where: str, n_in: int, n_out: int) -> ConvGeometry:
    """A convolutional connection's geometry, checked field by field: shapes whose sizes
    are the source's and the target's, 1 or 2 spatial dims, strides and dilations >= 1,
    paddings >= 0, groups dividing both channel counts, a kernel ``[C_out, C_in/groups,
    *K]`` (the weight's shape), and the output size those give."""
    rec = r.record(data, f"{where}: conv", CONV_FIELDS)
    in_shape = _dims(r, rec["in_shape"], f"{where}: conv.in_shape", None, 1)
    if not 2 <= len(in_shape) <= MAX_SPATIAL_DIMS + 1 or math.prod(in_shape) != n_in:
        r.fail(f"{where}: conv.in_shape", f"{list(in_shape)} is not (C, 1 or 2 dims) of the source's {n_in} values")
    n = len(in_shape) - 1
    out_shape = _dims(r, rec["out_shape"], f"{where}: conv.out_shape", n + 1, 1)
    if math.prod(out_shape) != n_out:
        r.fail(f"{where}: conv.out_shape", f"{list(out_shape)} is not the target's {n_out} neurons")
    stride = _dims(r, rec["stride"], f"{where}: conv.stride", n, 1)
    padding = _dims(r, rec["padding"], f"{where}: conv.padding", n, 0)
    dilation = _dims(r, rec["dilation"], f"{where}: conv.dilation", n, 1)
    groups = r.integer(rec["groups"], f"{where}: conv.groups", 1, GEOMETRY_MAX)
    if in_shape[0] % groups or out_shape[0] % groups:
        r.fail(f"{where}: conv.groups", f"{groups} does not divide {in_shape[0]} input and "
               f"{out_shape[0]} output channels")
    if not isinstance(weight, np.ndarray) or weight.ndim != n + 2 or min(weight.shape, default=0) < 1:
        r.fail(f"{where}: weight", f"must be a [C_out, C_in/groups, {n} kernel dims] array, "
               f"got {shown(getattr(weight, 'shape', weight))}")
    geom = ConvGeometry(in_shape, out_shape, tuple(int(k) for k in weight.shape[2:]), stride, padding,
                        dilation, groups)
    if geom.expected_out() != out_shape[1:]:
        r.fail(f"{where}: conv", f"input {list(in_shape)}, kernel {list(geom.kernel)}, stride "
               f"{list(stride)}, padding {list(padding)}, dilation {list(dilation)} give "
               f"{list(geom.expected_out())}, not the out_shape {list(out_shape)}")
    if work_bytes(geom) > MEMORY_BOUND:  # the lowering refuses such a convolution too
        r.fail(f"{where}: conv", f"one step would gather {format_bytes(work_bytes(geom))} of inputs, more "
               f"than the bound of {format_bytes(MEMORY_BOUND)} (neuromorph.streams.MEMORY_BOUND)")
    return geom


def _population(r: _Reader, rec: dict[str, Any], name: str, node: Neuron, shape: tuple[int, ...],
                count: int) -> Population:
    where = f"population '{name}'"
    type_name = node.type_name
    kind = rec["kind"]
    if not isinstance(kind, str) or kind not in KINDS:
        r.fail(f"{where}: kind", f"{shown(kind)} is not one of {', '.join(KINDS)}")
    if kind != KIND_OF.get(type_name):
        r.fail(f"{where}: kind", f"'{kind}', but the model's node is a {type_name}")
    r.shape(rec["shape"], where, shape)
    n = math.prod(shape)
    arrays = {}
    for key in _FLOAT_ARRAYS:
        arr = r.array(rec[key], f"{where}: {key}", (n,), "f")
        if key == "vth" and kind == "li":
            if not np.all(arr == np.inf):
                r.fail(f"{where}: vth", "an LI population has no threshold (+inf)")
        else:
            r.finite(arr, f"{where}: {key}")
        arrays[key] = arr
    for key in _DECAYS:
        r.within(arrays[key], f"{where}: {key}", 0.0, 1.0 + DECAY_TOLERANCE)
    r.within(arrays["beta"], f"{where}: beta", 0.0, np.inf)
    offset = r.integer(rec["offset"], f"{where}: offset", 0, count)
    reset = r.name(rec.get("reset", "value"), f"{where}: reset", RESET_MODES,
                   f"a reset mode ({', '.join(RESET_MODES)})")
    expected = getattr(node, "reset", "value")
    if reset != expected:
        r.fail(f"{where}: reset", f"'{reset}', but the model's node resets by '{expected}'")
    return Population(name=name, kind=kind, shape=shape, offset=offset, reset=reset, **arrays)


def _quantized(r: _Reader, data: dict[str, Any], net: Netlist) -> QuantizedNetlist:
    # "weight_signs" is in every artifact written since the stored form (module docstring)
    keys = _QUANTIZED_KEYS + (("weight_signs",) if isinstance(data, dict) and "weight_signs" in data else ())
    q = r.record(data, "quantized", keys)
    pops = {p.name: p for p in net.populations}
    ins = [p.name for p in net.inputs]

    populations: dict[str, dict[str, np.ndarray]] = {}
    for name, params in r.mapping(q["populations"], "quantized.populations", list(pops)).items():
        where = f"quantized population '{name}'"
        r.mapping(params, where, list(FIXED_RANGES))
        populations[name] = {}
        for key, (lo, hi) in FIXED_RANGES.items():
            arr = _stored(r, params[key], f"{where}: {key}", (pops[name].size,), PARAM_DTYPES[key],
                          f"its range {lo}..{hi}", "JSON text, older artifacts")
            r.within(arr, f"{where}: {key}", lo, hi)
            populations[name][key] = np.asarray(arr, dtype=np.int64)

    n = len(net.connections)
    signs = None
    if "weight_signs" in q:
        signs = r.list(q["weight_signs"], "quantized.weight_signs", n)
    weights, exps = [], []
    for i, (c, w, e) in enumerate(zip(net.connections,
                                      r.list(q["weights"], "quantized.weights", n),
                                      r.list(q["weight_exps"], "quantized.weight_exps", n))):
        where = f"quantized connection {c.source}->{c.target}"
        if signs is None:  # written before the stored form: the mantissas themselves
            w = r.array(w, f"{where}: weights", c.weight.shape, "i")
            if w.dtype not in (np.int32, np.int64):
                r.fail(f"{where}: weights", f"{w.dtype} without quantized.weight_signs (older artifacts store "
                       "the mantissas as int32, or int64 in JSON text)")
        else:
            mode = r.name(signs[i], f"{where}: weight_signs", SIGN_MODES, f"a sign mode ({', '.join(SIGN_MODES)})")
            w = _stored(r, w, f"{where}: weights", c.weight.shape, WEIGHT_DTYPES[mode],
                        f"'{mode}' mantissas as {_STORED_AS[mode]}", "JSON text")
            if w.dtype == np.int64:  # the exact dtypes hold nothing else
                r.within(w, f"{where}: weights (stored as {_STORED_AS[mode]})", *_STORED_RANGE[mode])
            w = w.astype(np.int32)
            if mode == "mixed":
                w <<= 1
            elif mode == "inhibitory":
                np.negative(w, out=w)
        r.within(w, f"{where}: weights", -256, 255)  # before an int64 is narrowed
        w = np.asarray(w, dtype=np.int32)
        learned = signs is not None and signs[i] == "learned"
        if learned and c.plastic is None:
            r.fail(f"{where}: weight_signs", "'learned', but the connection is not plastic")
        if not learned and not np.array_equal(lava_weights(w), w):
            r.fail(f"{where}: weights", "not 8-bit mantissas that Lava's clip and truncate leave "
                   "unchanged (0..255, -255..0, or even -256..254 for mixed signs)")
        if signs is not None and not learned and sign_mode(w) != signs[i]:
            r.fail(f"{where}: weight_signs", f"'{signs[i]}', but the mantissas are {sign_mode(w)} (Lava's "
                   "determine_sign_mode)")
        weights.append(w)
        exps.append(r.integer(e, f"{where}: weight_exp", WEIGHT_EXP_MIN, WEIGHT_EXP_MAX))

    input_scale = {k: r.number(v, f"quantized input '{k}': input_scale", 0.0, math.inf)
                   for k, v in r.mapping(q["input_scale"], "quantized.input_scale", ins).items()}
    bits = {}
    for k, v in r.mapping(q["num_message_bits"], "quantized.num_message_bits", ins).items():
        if isinstance(v, bool) or v not in (0, *PAYLOAD_BITS) or not isinstance(v, int):
            r.fail(f"quantized input '{k}': num_message_bits", f"{shown(v)} is not one of 0, "
                   f"{', '.join(map(str, PAYLOAD_BITS))}")
        bits[k] = v
    v_scale = {k: r.number(v, f"quantized population '{k}': v_scale", 0.0, V_SCALE_MAX)
               for k, v in r.mapping(q["v_scale"], "quantized.v_scale", list(pops)).items()}
    if not isinstance(q["report"], dict):
        r.fail("quantized.report", "must be an object")
    return QuantizedNetlist(net=net, populations=populations, weights=weights, weight_exps=exps,
                            input_scale=input_scale, num_message_bits=bits, v_scale=v_scale,
                            report=q["report"])


def _stored(r: _Reader, value: Any, where: str, shape: tuple[int, ...], dtype: np.dtype, why: str,
            wide: str) -> np.ndarray:
    """A stored integer array of exactly ``shape`` and ``dtype``, or int64 (``wide``: where
    that comes from); a one-line refusal naming the expected dtype otherwise."""
    if not isinstance(value, np.ndarray):
        r.fail(where, f"must be an array, got {shown(value)}")
    if value.dtype != dtype and value.dtype != np.int64:
        r.fail(where, f"stored as {value.dtype}, expected {dtype} ({why}) or int64 ({wide})")
    if value.shape != shape:
        r.fail(where, f"has shape {list(value.shape)}, expected {list(shape)}")
    return value
