"""Numpy model of a deployed netlist, step by step in chip time.

It reproduces what the Lava deployment does — synapses that deliver one step (plus the
connection's extra delay) after sending, populations running in shifted sample windows,
state reset at the start of each window — so it predicts the chip's output exactly, much
faster than Lava. Outputs come back aligned to the IR's time steps.

Sample windows: N samples of T steps are streamed through one run with period
P = T + G, where G is the largest IR delay of any connection. A population with offset s
runs sample j at chip steps [j*P + s, j*P + s + T); in the remaining G steps of its period
it is idle (no update, no spikes), so nothing from one sample reaches the next.

Lanes: because nothing reaches the next sample, every sample computes exactly what it
would compute alone, in the first window of a run of its own. So the model runs many
samples side by side ("lanes", state ``[lanes, n]``: what B copies of the network would
compute), each lane one sample in the first window, and its numbers are bit for bit
those of the samples run one after another: every neuron operation is element by element
(neuron_step.py), every synapse is computed per lane in the order one sample alone uses
(synapse.py). The Lava runner streams several samples through each lane with the same
:class:`Schedule` (``lanes`` > 1: lane ``b`` runs samples ``b, b + B, b + 2B, ...``).

The arithmetic is an object (:class:`FloatArithmetic`, quantize.FixedArithmetic) made
once per run: per population its prepared neuron update, per connection its prepared
synapse, the messages an input port sends, the membrane read-out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from neuromorph.streams import check_memory, check_streams
from . import neuron_step
from .conv import ConvOp, work_bytes
from .netlist import Netlist
from .synapse import FloatDense


@dataclass(frozen=True)
class Schedule:
    samples: int  # N, all lanes together
    steps: int  # T
    period: int  # P
    total: int  # chip steps to run
    lanes: int = 1  # samples side by side; lane b runs samples b, b + lanes, ...

    @property
    def rounds(self) -> int:
        """Samples one lane runs one after another (the last round may leave lanes idle)."""
        return -(-self.samples // self.lanes)

    @classmethod
    def of(cls, net: Netlist, samples: int, steps: int, lanes: int = 1, min_gap: int = 0) -> "Schedule":
        """The schedule, refusing (streams.MEMORY_BOUND) one whose chip-time arrays would
        not fit: checked here, before the numpy model or the Lava runner builds them.
        ``min_gap``: idle steps the periods need at least (an e-prop synapse learns one
        step after its window: lava/runner.py)."""
        gap = max(max((c.ir_delay for c in net.connections), default=0), int(min_gap))
        period = steps + gap
        last = max((p.offset for p in net.populations), default=0)
        lanes = max(1, min(int(lanes), int(samples))) if samples > 0 else 1
        rounds = -(-samples // lanes)
        sched = cls(samples, steps, period, rounds * period + last, lanes)
        check_memory(run_bytes(net, sched), f"running {samples} sample(s) of {steps} steps in "
                     f"chip time ({sched.total} chip steps, {gap} of delay between samples"
                     f"{f', {lanes} lanes' if lanes > 1 else ''})")
        return sched

    def local(self, chip_step: int, offset: int) -> tuple[int, int]:
        """(round, step within the sample) of a population at a chip step; with one lane
        the round is the sample index."""
        rel = chip_step - offset
        return (rel // self.period, rel % self.period) if rel >= 0 else (-1, -1)


def run_bytes(net: Netlist, sched: Schedule) -> int:
    """float64 bytes a chip-time run holds: the input streams [total, lanes, size], the
    outputs and spike trains [N, T, size], and the synapses' ring buffers [depth, lanes, size]."""
    depth = 2 + max((c.extra_delay for c in net.connections), default=0)
    inputs = sum(p.size for p in net.inputs)
    pops = sum(p.size for p in net.populations)
    recorded = sum(p.size for p in net.populations if p.spiking) + sum(
        net.population(o.population).size for o in net.outputs)
    return 8 * (sched.total * sched.lanes * inputs + sched.samples * sched.steps * recorded
                + depth * sched.lanes * pops)


def input_stream(net: Netlist, x: Mapping[str, np.ndarray], sched: Schedule) -> dict[str, np.ndarray]:
    """Inputs laid out in chip time, zero in each period's gap: [total, size] with one lane,
    [total, lanes, size] with several (:func:`fill_stream`)."""
    out = {}
    for port in net.inputs:
        stream = np.zeros((sched.total, sched.lanes, port.size))
        fill_stream(np.asarray(x[port.name], dtype=np.float64), sched, stream)
        out[port.name] = stream[:, 0] if sched.lanes == 1 else stream
    return out


def fill_stream(data: np.ndarray, sched: Schedule, stream: np.ndarray) -> None:
    """Write one port's samples ``data`` ([N, T, *shape]) into ``stream`` ([total, lanes,
    size], zero where written nothing): lane b, round j plays sample ``j * lanes + b`` at
    chip steps ``[j * P, j * P + T)``; lanes without a sample in the last round stay zero."""
    b = sched.lanes
    data = data.reshape(sched.samples, sched.steps, -1)
    for j in range(sched.rounds):
        part = data[j * b:(j + 1) * b]  # [lanes (fewer in the last round), T, size]
        stream[j * sched.period: j * sched.period + sched.steps, :len(part)] = part.transpose(1, 0, 2)


def check_inputs(net: Netlist, x: np.ndarray | Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int, int]:
    """Inputs as {port: float64 [N, T, *shape]} (neuromorph.streams' contract); returns
    them with N and T."""
    inputs, _ = check_streams({p.name: tuple(p.shape) for p in net.inputs}, x)
    n, t = next(iter(inputs.values())).shape[:2]
    return inputs, int(n), int(t)


LANE_WORK_BYTES = 64 << 20
"""The numpy model runs as many samples side by side as keep its per-step working arrays
(state, ring buffers, convolution gathers) within this many bytes."""
MAX_LANES = 512


class FloatArithmetic:
    """The float chip: ``neuron_step.FloatNeurons``, ``synapse.FloatDense`` (Dense's
    ``weights.dot``, per lane) or ``ConvOp`` per connection, inputs sent as they are."""

    dtype = np.float64  # of the synaptic input accumulated for the next steps

    def __init__(self, net: Netlist) -> None:
        self.net = net
        self.neurons = {p.name: neuron_step.FloatNeurons(float_params(p), p.spiking, p.reset == "subtract")
                        for p in net.populations}
        self.synapses = [ConvOp(c.conv, c.weight) if c.conv is not None else FloatDense(c.weight)
                         for c in net.connections]

    def message(self, port: str, x: np.ndarray) -> np.ndarray:
        return x

    def readout(self, population: str, v: np.ndarray) -> np.ndarray:
        return v + self.net.population(population).v_shift


def lane_bytes(net: Netlist) -> int:
    """Bytes of the numpy model's per-step working arrays for one lane."""
    depth = 2 + max((c.extra_delay for c in net.connections), default=0)
    pops = sum(p.size for p in net.populations)
    convs = sum(work_bytes(c.conv) for c in net.connections if c.conv is not None)
    return 8 * (depth + 6) * pops + 2 * convs + 8 * sum(p.size for p in net.inputs)


def simulate_netlist(
    net: Netlist,
    x: np.ndarray | Mapping[str, np.ndarray],
    *,
    arithmetic: Any = None,
    record_spikes: bool = False,
    lanes: int | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Run ``x`` ({input: [N, T, *shape]}) through the netlist in chip time.

    Float by default; ``arithmetic`` is the chip's arithmetic (:class:`FloatArithmetic`,
    or ``quantize.FixedArithmetic`` for fixed point). ``lanes``: samples computed side by
    side (default: as many as fit ``LANE_WORK_BYTES``, at most ``MAX_LANES``); the
    results do not depend on it. Returns ({output: [N, T, *shape]}, {population: spikes
    in windows}); with ``record_spikes`` the first dict also holds
    ``"<population>.spikes"``: [N, T, *shape].
    """
    inputs, n, t = check_inputs(net, x)
    arith = arithmetic if arithmetic is not None else FloatArithmetic(net)
    if lanes is None:
        lanes = min(MAX_LANES, max(1, LANE_WORK_BYTES // max(lane_bytes(net), 1)))
    lanes = max(1, min(int(lanes), n))
    recorded = sum(p.size for p in net.populations if p.spiking and record_spikes) + sum(
        net.population(o.population).size for o in net.outputs)
    check_memory(8 * n * t * recorded + lanes * lane_bytes(net),
                 f"running {n} sample(s) of {t} steps in the numpy chip model ({lanes} side by side)")
    outputs = {o.name: np.zeros((n, t, net.population(o.population).size)) for o in net.outputs}
    trains = {p.name: np.zeros((n, t, p.size)) for p in net.populations if p.spiking and record_spikes}
    spikes = {p.name: 0 for p in net.populations}
    for first in range(0, n, lanes):
        part = {k: v[first:first + lanes] for k, v in inputs.items()}
        _run_lanes(net, arith, part, t, first, outputs, trains, spikes)
    shaped = {o.name: outputs[o.name].reshape(n, t, *o.shape) for o in net.outputs}
    shaped.update({f"{name}.spikes": train.reshape(n, t, *net.population(name).shape)
                   for name, train in trains.items()})
    return shaped, spikes


def _run_lanes(net: Netlist, arith: Any, inputs: Mapping[str, np.ndarray], t: int, first: int,
               outputs: dict[str, np.ndarray], trains: dict[str, np.ndarray], spikes: dict[str, int]) -> None:
    """Samples ``first .. first + B - 1`` side by side, each in the first window of its lane."""
    b = len(next(iter(inputs.values())))
    total = t + max((p.offset for p in net.populations), default=0)
    # Arrivals wait in a ring buffer long enough for the longest synaptic delay.
    depth = 2 + max((conn.extra_delay for conn in net.connections), default=0)
    pending = {p.name: np.zeros((depth, b, p.size), arith.dtype) for p in net.populations}
    # what each input port sends, [T, B, size] (one contiguous block per step)
    sends = {p.name: np.ascontiguousarray(arith.message(p.name, inputs[p.name].reshape(b, t, p.size))
                                          .transpose(1, 0, 2)) for p in net.inputs}
    readers = {pop.name: [o for o in net.outputs if o.population == pop.name] for pop in net.populations}
    rows = slice(first, first + b)
    state: dict[str, dict[str, np.ndarray]] = {}
    sent: dict[str, np.ndarray | None] = {}
    for c in range(total):
        for port in net.inputs:
            sent[port.name] = sends[port.name][c] if c < t else None  # None: idle, sends zeros
        for pop in net.populations:
            k = c - pop.offset
            slot = pending[pop.name][c % depth]
            if not 0 <= k < t:
                sent[pop.name] = None
                slot[...] = 0
                continue
            neurons = arith.neurons[pop.name]
            if k == 0:
                state[pop.name] = neurons.init(b)
            s = neurons.step(state[pop.name], slot)
            slot[...] = 0
            sent[pop.name] = s
            spikes[pop.name] += int(np.count_nonzero(s))
            if pop.name in trains:
                trains[pop.name][rows, k] = s
            for o in readers[pop.name]:
                outputs[o.name][rows, k] = s if o.signal == "spikes" else arith.readout(pop.name, state[pop.name]["v"])
        for i, conn in enumerate(net.connections):
            src = sent[conn.source]
            arrival = c + 1 + conn.extra_delay
            if src is not None and arrival < total:  # an idle source adds nothing
                pending[conn.target][arrival % depth] += arith.synapses[i](src)


def float_params(pop: "Population") -> dict[str, np.ndarray]:  # noqa: F821
    return {k: getattr(pop, k) for k in neuron_step.FLOAT_PARAMS}
