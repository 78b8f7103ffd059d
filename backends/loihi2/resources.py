"""Resource mapping of a netlist onto Loihi 2 cores, reported like a linker's map file.

``map_netlist(net)`` places every neuron population on one or more consecutive neuron
cores, counts the synapses and synaptic memory each core holds, checks the target's
limits and returns a :class:`ResourceMap` (``to_dict()`` for JSON, ``table()`` to read).
A network that does not fit is refused with a one-line :class:`NeuromorphError` that
names the layer, the limit and the number.

The memory model (an estimate; Intel does not publish Loihi 2's synapse encodings):

* A synapse is one *nonzero* weight: zeros are not stored (a sparse encoding), so a
  convolution's or a pruned layer's matrix costs only what it really connects; a
  plastic connection stores every weight, zeros included (they learn).
* Bits per synapse = ``weight_bits`` (8 by default: Lava's 8-bit weight mantissa, sign
  included; the weight exponent is one per connection and not counted per synapse)
  + ``delay_bits`` (6) when the connection has ``extra_delay > 0`` -- conservative: the
  delay is stored per synapse as in Lava's ``DelayDense``, although one netlist connection
  has a single delay. Index/pointer overhead of the encoding is not counted. A synapse
  that learns on chip holds the learning engine's 9-bit weight and 9 bits per tag its
  rule keeps (:func:`plastic_bits`; e-prop and reward-STDP keep one).
* Synapses are stored on the core of their *target* neuron (the fan-in side), as on Loihi.
* A convolutional connection (netlist ``conv``) shares its weights: a core stores the
  nonzero kernel entries ``[C_in/groups, *K]`` of each output channel it holds neurons
  of, once, however many positions of that channel it holds, at the same bits per
  weight (+ delay bits) as a dense synapse. ``synapses`` still counts connections made
  (the nonzero entries of the matrix the convolution expands to), so synapse totals do
  not depend on how a connection is stored; ``memory`` counts what is stored.
  Sources: lava-dl 0.3.0's release notes (github.com/lava-nc/lava-dl/discussions/111:
  NetX "can leverage Loihi 2's convolutional network compression ... for improved
  memory usage") say that Loihi 2 stores convolutions compressed; Lava 0.10.0's
  ``lava/magma/compiler/var_model.py`` (``ConvInVarModel``: ``x_split``, ``f_split``,
  one region per core) that a convolutional layer is split over cores by position and
  by feature. The encoding itself is not public: one copy of the kernel rows per core,
  8 bits per shared weight and no index overhead are this model's *assumptions*.
* A population never shares a core with another one (one Lava process per core group);
  it is split into consecutive slices, each as large as both the neurons-per-core and the
  synaptic-memory-per-core limits allow (greedy, which gives the fewest slices).
* Input ports are off-chip spike sources: no cores, but their fan-out is reported.

Fan-in / fan-out per neuron: no public Loihi 2 source gives a per-neuron (or per-core
axon) limit -- Lava's sources check none, and Intel's brief only gives memory sizes.
A neuron's fan-in is bounded here by what one core's synaptic memory can hold (its
incoming synapses cannot be split across cores); fan-out is reported, not checked.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from neuromorph.errors import NeuromorphError
from .conv import channel_synapses, connection_fan_in, connection_fan_out
from .netlist import Connection, Netlist


@dataclass(frozen=True)
class Loihi2Limits:
    """The Loihi 2 limits the mapper checks; every number has its source next to it."""

    # Lava 0.10.0, lava/magma/compiler/subcompilers/constants.py: NUM_VIRTUAL_CORES_L2 = 128
    # (lava/magma/compiler/mapper.py splits logical core ids into chip_id = id // 128,
    # core_id = id % 128 for Loihi 2 neuro cores). Intel's Loihi 2 brief: 128 neural cores.
    cores_per_chip: int = 128
    # Intel, "Taking Neuromorphic Computing to the Next Level with Loihi 2" (technology
    # brief, 2021): up to 8k neurons per core (8192; 1M neurons per chip / 128 cores).
    neurons_per_core: int = 8192
    # Same Intel brief: 192 KB of synaptic memory per neural core (read as 192 KiB).
    # The core's SRAM is flexibly partitioned between synapses, neuron state and
    # routing; some secondary reports quote 128 KB per core: lower it here to be stricter.
    synaptic_memory_bytes_per_core: int = 192 * 1024
    # Lava 0.10.0, lava/proc/dense/models.py: weights LavaPyType(..., precision=8) with a
    # per-connection weight_exp; lava/utils/weightutils.py (optimize_weight_bits,
    # truncate_weights: max_num_weight_bits=8, sign bit included in mixed sign mode).
    weight_bits: int = 8
    # Lava 0.10.0, lava/proc/dense/models.py, PyDelayDenseModelBitAcc: "Loihi 2 has a
    # maximum of 6 bits for delays, meaning a spike can be delayed by 0 to 63 time steps"
    # (delays precision=6; raises if np.max(delays) > 63).
    delay_bits: int = 6
    # Lava 0.10.0, lava/magma/core/learning/constants.py: W_TRACE = 7 (x1, x2, y1, y2, y3).
    trace_bits: int = 7
    # Same file: the learning engine keeps a plastic synapse's weight in W_WEIGHTS_S = 9 bits
    # (8 + sign, odd mantissas included: docs/onchip-learning.md) and each tag it uses
    # (tag_1, tag_2) in W_TAG_1_S = W_TAG_2_S = 9 bits.
    plastic_weight_bits: int = 9
    tag_bits: int = 9

    @property
    def max_delay(self) -> int:
        """Largest extra synaptic delay in steps (63 for 6 bits)."""
        return (1 << self.delay_bits) - 1

    @property
    def synaptic_memory_bits_per_core(self) -> int:
        return self.synaptic_memory_bytes_per_core * 8


@dataclass(frozen=True)
class CoreSlice:
    """One neuron core: neurons ``[start, stop)`` of a population (flat index)."""

    core: int  # global core index, 0-based, consecutive across chips
    chip: int
    start: int
    stop: int
    synapses: int
    memory_bytes: int

    @property
    def neurons(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class LayerMap:
    """Resources of one population (kind: its neuron kind) or input port (kind 'input')."""

    name: str
    kind: str
    neurons: int
    synapses: int  # incoming nonzero weights (0 for an input port)
    memory_bytes: int  # synaptic memory of its incoming synapses
    fan_out: int  # outgoing nonzero weights
    max_fan_in: int  # largest number of incoming synapses of one neuron
    max_fan_out: int  # largest number of outgoing synapses of one neuron
    slices: tuple[CoreSlice, ...] = ()
    neurons_per_core: int = 0  # capacity, for utilisation
    memory_bytes_per_core: int = 0

    @property
    def is_input(self) -> bool:
        return self.kind == "input"

    @property
    def cores(self) -> int:
        return len(self.slices)

    @property
    def core_range(self) -> str:
        """'-' (off chip), '3' or '3-6'."""
        if not self.slices:
            return "-"
        a, b = self.slices[0].core, self.slices[-1].core
        return str(a) if a == b else f"{a}-{b}"

    @property
    def neuron_utilisation(self) -> float:
        """Percent of its cores' neuron capacity in use (0 for an input port)."""
        return 100.0 * self.neurons / (self.cores * self.neurons_per_core) if self.slices else 0.0

    @property
    def memory_utilisation(self) -> float:
        """Percent of its cores' synaptic memory in use (0 for an input port)."""
        return 100.0 * self.memory_bytes / (self.cores * self.memory_bytes_per_core) if self.slices else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "cores": self.cores,
            "core_range": self.core_range,
            "neurons": self.neurons,
            "synapses": self.synapses,
            "memory_bytes": self.memory_bytes,
            "fan_out": self.fan_out,
            "max_fan_in": self.max_fan_in,
            "max_fan_out": self.max_fan_out,
            "neuron_utilisation_pct": round(self.neuron_utilisation, 3),
            "memory_utilisation_pct": round(self.memory_utilisation, 3),
            "slices": [
                {"core": s.core, "chip": s.chip, "neurons": [s.start, s.stop],
                 "synapses": s.synapses, "memory_bytes": s.memory_bytes}
                for s in self.slices
            ],
        }


@dataclass(frozen=True)
class ResourceMap:
    """Where every layer of a netlist sits on Loihi 2, and what it costs."""

    layers: tuple[LayerMap, ...]
    limits: Loihi2Limits = field(default_factory=Loihi2Limits)
    weight_bits: int = 8
    chips_allowed: int = 1

    def layer(self, name: str) -> LayerMap:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    @property
    def cores(self) -> int:
        return sum(layer.cores for layer in self.layers)

    @property
    def neurons(self) -> int:
        """On-chip neurons (input ports are off chip and not counted)."""
        return sum(layer.neurons for layer in self.layers if not layer.is_input)

    @property
    def synapses(self) -> int:
        return sum(layer.synapses for layer in self.layers)

    @property
    def memory_bytes(self) -> int:
        return sum(layer.memory_bytes for layer in self.layers)

    @property
    def chips(self) -> int:
        """Chips needed (at least 1)."""
        return max(1, math.ceil(self.cores / self.limits.cores_per_chip))

    @property
    def max_lanes(self) -> int:
        """Copies of the network that fit the allowed chips side by side, each on cores of
        its own and within one chip (or, when one copy needs several chips, on chips of
        its own): how many samples a lane plan may run at once."""
        per_chip = self.limits.cores_per_chip
        if self.cores <= per_chip:
            return self.chips_allowed * (per_chip // max(self.cores, 1))
        return self.chips_allowed // self.chips

    def check_lanes(self, lanes: int) -> None:
        """Refuse (one line) more lanes than :attr:`max_lanes`."""
        if lanes < 1:
            raise NeuromorphError(f"lanes must be at least 1, got {lanes}")
        if lanes > self.max_lanes:
            raise NeuromorphError(
                f"{lanes} lanes do not fit: {lanes} copies of the network need {lanes * self.cores} "
                f"Loihi 2 neuron cores ({self.cores} each) but {self.chips_allowed} chip(s) have "
                f"{self.chips_allowed * self.limits.cores_per_chip}; at most {self.max_lanes} lanes "
                "(compile with more chips for more)")

    def to_dict(self) -> dict[str, Any]:
        lim = self.limits
        return {
            "target": "loihi2",
            "limits": {**asdict(lim), "max_delay": lim.max_delay},
            "weight_bits": self.weight_bits,
            "chips_allowed": self.chips_allowed,
            "layers": [layer.to_dict() for layer in self.layers],
            "totals": {
                "cores": self.cores,
                "neurons": self.neurons,
                "synapses": self.synapses,
                "memory_bytes": self.memory_bytes,
                "chips": self.chips,
                "core_utilisation_pct": round(100.0 * self.cores / (self.chips * lim.cores_per_chip), 3),
            },
        }

    def table(self) -> str:
        """A fixed-width map: one row per layer, then the totals."""
        lim = self.limits
        head = ("layer", "kind", "cores", "neurons", "synapses", "memory", "neur%", "mem%", "fan-out",
                "core ids")
        rows: list[tuple[str, ...]] = []
        for L in self.layers:
            if L.is_input:
                rows.append((L.name, "input", "0", str(L.neurons), "-", "-", "-", "-", str(L.fan_out),
                             "(off chip)"))
            else:
                rows.append((L.name, L.kind, str(L.cores), str(L.neurons), str(L.synapses),
                             _bytes(L.memory_bytes), f"{L.neuron_utilisation:.1f}",
                             f"{L.memory_utilisation:.1f}", str(L.fan_out), L.core_range))
        total = ("TOTAL", "", str(self.cores), str(self.neurons), str(self.synapses),
                 _bytes(self.memory_bytes), "", "", "", f"0-{self.cores - 1}" if self.cores else "-")
        widths = [max(len(r[i]) for r in (head, *rows, total)) for i in range(len(head))]

        def line(r: tuple[str, ...]) -> str:
            cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1])]
            cells += [c.rjust(w) for c, w in zip(r[2:-1], widths[2:-1])] + [r[-1].ljust(widths[-1])]
            return "  ".join(cells).rstrip()

        rule = "-" * len(line(head))
        out = [
            f"Loihi 2 resource map: {lim.cores_per_chip} cores/chip, {lim.neurons_per_core} neurons/core, "
            f"{_bytes(lim.synaptic_memory_bytes_per_core)} synaptic memory/core, "
            f"{self.weight_bits}-bit weights (+{lim.delay_bits}-bit delay where delayed)",
            rule, line(head), rule, *map(line, rows), rule, line(total), rule,
            f"chips: {self.chips} needed, {self.chips_allowed} allowed; "
            f"cores: {self.cores} of {self.chips * lim.cores_per_chip}",
        ]
        return "\n".join(out)


def _fan_in(c: Connection) -> np.ndarray:
    """Synapses of each target neuron: its nonzero weights, or every weight of a plastic
    connection (a zero that learns must be stored)."""
    if c.plastic is not None:
        return np.full(c.weight.shape[0], c.weight.shape[1], dtype=np.int64)
    return connection_fan_in(c.conv, c.weight)


def _fan_out(c: Connection) -> np.ndarray:
    if c.plastic is not None:
        return np.full(c.weight.shape[1], c.weight.shape[0], dtype=np.int64)
    return connection_fan_out(c.conv, c.weight)


RULE_TAGS = {"three_factor": 0, "stdp": 0, "eprop": 1, "reward_stdp": 1}
"""Per-synapse tags (tag_1/tag_2 of Lava's engine) each on-chip rule keeps beside the weight:
e-prop's filtered eligibility, reward-STDP's eligibility (docs/onchip-learning.md)."""


def plastic_bits(rule: str, limits: Loihi2Limits) -> int:
    """Bits a synapse of a plastic connection holds: the engine's 9-bit weight and its
    rule's tags (both tags for a rule this table does not know: the conservative count)."""
    return limits.plastic_weight_bits + RULE_TAGS.get(rule, 2) * limits.tag_bits


def _bytes(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{n / 1024:.1f} KiB"


class _Memory:
    """Synaptic memory of a population's neurons ``[start, stop)`` on one core: per
    neuron for dense connections (its nonzero weights), per output channel for
    convolutional ones (the kernel rows of the channels the slice touches, stored once
    however many of their positions the core holds)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.dense = np.zeros(n, dtype=np.int64)  # bits per neuron
        self.shared: list[tuple[int, np.ndarray]] = []  # (neurons per channel, cumulative bits per channel)
        self._cum: np.ndarray | None = None

    def add(self, conn: Connection, bits_per_weight: int) -> None:
        if conn.conv is None:
            self.dense += _fan_in(conn) * bits_per_weight
            return
        per_channel = channel_synapses(conn.weight) * bits_per_weight
        self.shared.append((self.n // len(per_channel), np.concatenate(([0], np.cumsum(per_channel)))))

    @property
    def cum(self) -> np.ndarray:
        if self._cum is None:
            self._cum = np.concatenate(([0], np.cumsum(self.dense)))
        return self._cum

    def bits(self, start: int, stop: int) -> int:
        total = int(self.cum[stop] - self.cum[start])
        for per, cum in self.shared:
            total += int(cum[(stop - 1) // per + 1] - cum[start // per])
        return total

    def alone(self) -> np.ndarray:
        out = self.dense.copy()
        for per, cum in self.shared:
            out += np.repeat(np.diff(cum), per)
        return out

    def last_stop(self, start: int, most: int, cap: int) -> int:
        """The largest ``stop <= most`` whose slice fits ``cap`` bits (at least start + 1:
        a neuron alone fits, checked before); the cost grows with ``stop``."""
        if not self.shared:  # one searchsorted over the cumulative per-neuron bits
            by_memory = int(np.searchsorted(self.cum, self.cum[start] + cap, side="right")) - 1
            return min(most, by_memory)
        lo, hi = start + 1, most
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.bits(start, mid) <= cap:
                lo = mid
            else:
                hi = mid - 1
        return lo


def map_netlist(
    net: Netlist,
    limits: Loihi2Limits = Loihi2Limits(),
    weight_bits: int = 8,
    chips_allowed: int = 1,
) -> ResourceMap:
    """Place ``net`` on Loihi 2 cores; refuse (NeuromorphError) what does not fit."""
    if not 1 <= weight_bits <= limits.weight_bits:
        raise NeuromorphError(
            f"weight_bits must be in 1..{limits.weight_bits} (Loihi 2 weight mantissa), got {weight_bits}")
    if chips_allowed < 1:
        raise NeuromorphError(f"chips_allowed must be at least 1, got {chips_allowed}")

    incoming: dict[str, list[Connection]] = {p.name: [] for p in net.populations}
    outgoing: dict[str, list[Connection]] = {n.name: [] for n in (*net.inputs, *net.populations)}
    for c in net.connections:
        if c.extra_delay > limits.max_delay:
            raise NeuromorphError(
                f"layer '{c.target}': connection from '{c.source}' needs a synaptic delay of "
                f"{c.extra_delay} steps; Loihi 2 allows at most {limits.max_delay} "
                f"({limits.delay_bits}-bit delays)")
        incoming[c.target].append(c)
        outgoing[c.source].append(c)

    def fan_out(name: str, size: int) -> tuple[int, int]:
        per_neuron = np.zeros(size, dtype=np.int64)
        for c in outgoing[name]:
            per_neuron += _fan_out(c)
        return int(per_neuron.sum()), int(per_neuron.max(initial=0))

    layers: list[LayerMap] = []
    for port in net.inputs:
        total, most = fan_out(port.name, port.size)
        layers.append(LayerMap(port.name, "input", port.size, 0, 0, total, 0, most))

    cap_bits = limits.synaptic_memory_bits_per_core
    next_core = 0
    for pop in net.populations:
        n = pop.size
        syn = np.zeros(n, dtype=np.int64)  # incoming synapses per neuron
        memory = _Memory(n)
        for c in incoming[pop.name]:
            syn += _fan_in(c)
            bits = weight_bits if c.plastic is None else plastic_bits(net.learning[c.plastic].rule, limits)
            memory.add(c, bits + (limits.delay_bits if c.extra_delay > 0 else 0))
        alone = memory.alone()  # the memory of each neuron on a core of its own
        worst = int(np.argmax(alone)) if n else 0
        if n and alone[worst] > cap_bits:
            raise NeuromorphError(
                f"layer '{pop.name}': neuron {worst} has a fan-in of {int(syn[worst])} synapses "
                f"({_ceil8(int(alone[worst]))} bytes), more than one Loihi 2 core's synaptic memory "
                f"({limits.synaptic_memory_bytes_per_core} bytes)")
        slices = []
        start = 0
        while start < n:
            stop = memory.last_stop(start, min(n, start + limits.neurons_per_core), cap_bits)
            slices.append(CoreSlice(next_core, next_core // limits.cores_per_chip, start, stop,
                                    int(syn[start:stop].sum()), _ceil8(memory.bits(start, stop))))
            next_core += 1
            start = stop
        total, most = fan_out(pop.name, n)
        layers.append(LayerMap(
            pop.name, pop.kind, n, int(syn.sum()), sum(s.memory_bytes for s in slices), total,
            int(syn.max(initial=0)), most, tuple(slices), limits.neurons_per_core,
            limits.synaptic_memory_bytes_per_core))

    available = chips_allowed * limits.cores_per_chip
    if next_core > available:
        over = next(L for L in layers if L.slices and L.slices[-1].core >= available)
        raise NeuromorphError(
            f"layer '{over.name}' does not fit: the network needs {next_core} Loihi 2 neuron cores "
            f"({math.ceil(next_core / limits.cores_per_chip)} chips) but {chips_allowed} chip(s) "
            f"have {available}; '{over.name}' takes core(s) {over.core_range} ({over.cores} for "
            f"{over.neurons} neurons, {over.synapses} synapses); allow more chips to map it")

    return ResourceMap(tuple(layers), limits, weight_bits, chips_allowed)


def _ceil8(bits: int) -> int:
    return (bits + 7) // 8
