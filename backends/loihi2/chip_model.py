"""Numpy model of a deployed netlist, step by step in chip time.

It reproduces what the Lava deployment does — synapses that deliver one step (plus the
connection's extra delay) after sending, populations running in shifted sample windows,
state reset at the start of each window — so it predicts the chip's output exactly, much
faster than Lava. Outputs come back aligned to the IR's time steps.

Sample windows: N samples of T steps are streamed through one run with period
P = T + G, where G is the largest IR delay of any connection. A population with offset s
runs sample j at chip steps [j*P + s, j*P + s + T); in the remaining G steps of its period
it is idle (no update, no spikes), so nothing from one sample reaches the next.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from neuromorph.streams import check_memory, check_streams
from . import neuron_step
from .conv import ConvOp
from .netlist import Netlist


@dataclass(frozen=True)
class Schedule:
    samples: int
    steps: int  # T
    period: int  # P
    total: int  # chip steps to run

    @classmethod
    def of(cls, net: Netlist, samples: int, steps: int) -> "Schedule":
        """The schedule, refusing (streams.MEMORY_BOUND) one whose chip-time arrays would
        not fit: checked here, before the numpy model or the Lava runner builds them."""
        gap = max((c.ir_delay for c in net.connections), default=0)
        period = steps + gap
        last = max((p.offset for p in net.populations), default=0)
        sched = cls(samples, steps, period, samples * period + last)
        check_memory(run_bytes(net, sched), f"running {samples} sample(s) of {steps} steps in "
                     f"chip time ({sched.total} chip steps, {gap} of delay between samples)")
        return sched

    def local(self, chip_step: int, offset: int) -> tuple[int, int]:
        """(sample index, step within the sample) of a population at a chip step."""
        rel = chip_step - offset
        return (rel // self.period, rel % self.period) if rel >= 0 else (-1, -1)


def run_bytes(net: Netlist, sched: Schedule) -> int:
    """float64 bytes a chip-time run holds: the input streams [total, size], the outputs
    and spike trains [N, T, size], and the synapses' ring buffers [depth, size]."""
    depth = 2 + max((c.extra_delay for c in net.connections), default=0)
    inputs = sum(p.size for p in net.inputs)
    pops = sum(p.size for p in net.populations)
    recorded = sum(p.size for p in net.populations if p.spiking) + sum(
        net.population(o.population).size for o in net.outputs)
    return 8 * (sched.total * inputs + sched.samples * sched.steps * recorded + depth * pops)


def input_stream(net: Netlist, x: Mapping[str, np.ndarray], sched: Schedule) -> dict[str, np.ndarray]:
    """Inputs laid out in chip time: [total, size], zero in each period's gap."""
    out = {}
    for port in net.inputs:
        data = np.asarray(x[port.name], dtype=np.float64).reshape(sched.samples, sched.steps, port.size)
        stream = np.zeros((sched.total, port.size))
        for j in range(sched.samples):
            stream[j * sched.period : j * sched.period + sched.steps] = data[j]
        out[port.name] = stream
    return out


def check_inputs(net: Netlist, x: np.ndarray | Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int, int]:
    """Inputs as {port: float64 [N, T, *shape]} (neuromorph.streams' contract); returns
    them with N and T."""
    inputs, _ = check_streams({p.name: tuple(p.shape) for p in net.inputs}, x)
    n, t = next(iter(inputs.values())).shape[:2]
    return inputs, int(n), int(t)


Synapse = Callable[[int, np.ndarray], np.ndarray]  # (connection index, source output) -> a_in contribution


def simulate_netlist(
    net: Netlist,
    x: np.ndarray | Mapping[str, np.ndarray],
    *,
    params: Mapping[str, dict[str, np.ndarray]] | None = None,
    synapse: Synapse | None = None,
    init: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] = neuron_step.init_float,
    step: Callable[..., np.ndarray] = neuron_step.step_float,
    readout: Callable[[str, np.ndarray], np.ndarray] | None = None,
    record_spikes: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Run ``x`` ({input: [N, T, *shape]}) through the netlist in chip time.

    Float by default; fixed point passes its own ``params`` (integer population
    parameters), ``synapse``, ``init``, ``step`` and ``readout`` (integer membrane ->
    IR units). Returns ({output: [N, T, *shape]}, {population: spikes in windows});
    with ``record_spikes`` the first dict also holds ``"<population>.spikes"``: [N, T, *shape].
    """
    inputs, n, t = check_inputs(net, x)
    sched = Schedule.of(net, n, t)
    streams = input_stream(net, inputs, sched)
    params = params or {p.name: float_params(p) for p in net.populations}
    synapse = synapse or float_synapse(net)
    # Arrivals wait in a ring buffer long enough for the longest synaptic delay.
    depth = 2 + max((conn.extra_delay for conn in net.connections), default=0)
    pending = {p.name: np.zeros((depth, p.size)) for p in net.populations}
    state: dict[str, dict[str, np.ndarray]] = {}
    sent: dict[str, np.ndarray] = {}
    outputs = {o.name: np.zeros((n, t, net.population(o.population).size)) for o in net.outputs}
    spikes = {p.name: 0 for p in net.populations}
    trains = {p.name: np.zeros((n, t, p.size)) for p in net.populations if p.spiking and record_spikes}
    for c in range(sched.total):
        for port in net.inputs:
            sent[port.name] = streams[port.name][c]
        for pop in net.populations:
            j, k = sched.local(c, pop.offset)
            a_in = pending[pop.name][c % depth].copy()
            pending[pop.name][c % depth] = 0.0
            if j < 0 or j >= n or k >= t:
                sent[pop.name] = np.zeros(pop.size)
                continue
            if k == 0:
                state[pop.name] = init(params[pop.name])
            s = step(params[pop.name], state[pop.name], a_in, pop.spiking, pop.reset == "subtract")
            sent[pop.name] = s
            spikes[pop.name] += int(np.count_nonzero(s))
            if pop.name in trains:
                trains[pop.name][j, k] = s
            for o in net.outputs:
                if o.population == pop.name:
                    if o.signal == "spikes":
                        outputs[o.name][j, k] = s
                    else:
                        v = state[pop.name]["v"]
                        outputs[o.name][j, k] = readout(pop.name, v) if readout else v + pop.v_shift
        for i, conn in enumerate(net.connections):
            arrival = c + 1 + conn.extra_delay
            if arrival < sched.total:
                pending[conn.target][arrival % depth] += synapse(i, sent[conn.source])
    shaped = {o.name: outputs[o.name].reshape(n, t, *o.shape) for o in net.outputs}
    shaped.update({f"{name}.spikes": train.reshape(n, t, *net.population(name).shape)
                   for name, train in trains.items()})
    return shaped, spikes


def float_synapse(net: Netlist) -> Synapse:
    """The float synapses: ``weight @ x`` (what Lava's float Dense computes with
    num_message_bits > 0), or a convolutional connection's ``ConvOp`` (conv.py, which the
    Lava process runs too)."""
    ops = [ConvOp(c.conv, c.weight) if c.conv is not None else None for c in net.connections]

    def apply(i: int, src: np.ndarray) -> np.ndarray:
        op = ops[i]
        return net.connections[i].weight @ src if op is None else op.apply(src)

    return apply


def float_params(pop: "Population") -> dict[str, np.ndarray]:  # noqa: F821
    return {k: getattr(pop, k) for k in neuron_step.FLOAT_PARAMS}
