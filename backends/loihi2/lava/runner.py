"""Run a compiled netlist in Lava's Loihi 2 CPU simulator (``Loihi2SimCfg``).

The Lava network mirrors the numpy chip model (``chip_model.py``), the
specification of what the deployment does step by step. A :class:`Plan` says how the
samples are laid out:

- one at a time (``Plan(lanes=1)``, the default here; the plan for anything that needs
  Lava's phases, such as on-chip learning): one ``RingBuffer`` per input port plays
  chip_model's chip-time input stream (float: real values; fixed: the integer payloads
  of ``quantize.input_payload``); one ``NeuronGroup`` (process.py) per population runs
  its sample windows; one synapse per connection: Lava's ``Dense`` delivers at chip step
  ``c + 1`` what it received at ``c``; ``DelayDense`` with ``delays = extra_delay``
  delivers at ``c + 1 + extra_delay`` (its buffer column 0 goes out next step), exactly
  chip_model's ``arrival = c + 1 + extra_delay``; a convolutional connection is our
  ``ConvSynapse`` (conv.py: Lava's ``Conv`` ignores ``weight_exp``), with the same timing;
  every process steps under Lava's ``LoihiProtocol``;
- lanes (``Plan(lanes=B)``, asynchronous unless asked otherwise): B copies of the network
  side by side, as on B groups of spare cores (lanes.py): a ``LaneSource`` per input
  port and a ``LaneCore`` per population, holding the synapses of its incoming
  connections (as a neuron core does) with the arithmetic of Dense / DelayDense /
  ConvSynapse per lane, so that the messages between processes are the spikes between
  cores and every lane's spikes and outputs are bit for bit those of the one-at-a-time
  plan; lane ``b`` runs samples
  ``b, b + B, ...`` (chip_model.Schedule); the processes run under Lava's
  ``AsyncProtocol`` (no per-step handshake with the runtime), or ``LoihiProtocol``;
- learning (``learn=True``): the one-at-a-time graph with Lava's ``LearningDense`` and
  our post populations (learning.py), under ``AsyncProtocol`` by default (every process
  with its asynchronous twin, learning_async.py: the same classes, messages and learning
  engine, bit for bit the same results) or ``LoihiProtocol`` (``Plan(1, asynchronous=
  False)``, and any graph with a process that has no twin).

Every ProcessModel of our own processes is chosen here, by process
(``exception_proc_model_map``: no search through the modules, no ambiguity between the
synchronous and asynchronous models).

All ``sched.total`` chip steps run as one ``RunSteps`` (or, with a progress callback, in
chunks: Lava keeps its state between them). Lava is always stopped, also when the run
fails or is interrupted. Lava 0.10.0 hangs when a process raises before sending on its
ports (the processes downstream wait for that message forever), so the run is started
non-blocking and watched: a Lava worker that dies ends the run with a one-line
:class:`NeuromorphError` naming its error, and the remaining workers are terminated.
A run whose chip steps stop advancing (a worker stuck or stopped) ends the same way
after ``stall_timeout`` seconds without progress (``NEUROMORPH_LAVA_STALL_S``, default
60): each NeuronGroup writes its time step into a status file the host polls.

Whatever ends the process that started a run -- an error, Ctrl-C, SIGTERM, SIGHUP or
SIGKILL, to it or to its process group -- none of the run's processes, shared-memory
segments or temp files outlives it for more than a moment: see ``lifecycle.py``.
Delays that Lava could not hold in memory are refused here, before any Lava process
exists.
"""
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from neuromorph.backends.loihi2.lava.compat import import_lava

import_lava()

from lava.magma.core.run_conditions import RunSteps  # noqa: E402
from lava.magma.core.run_configs import Loihi2SimCfg  # noqa: E402
from lava.magma.runtime.mgmt_token_enums import MGMT_COMMAND, MGMT_RESPONSE, enum_equal  # noqa: E402
from lava.proc.dense.process import DelayDense, Dense  # noqa: E402
from lava.proc.io.source import RingBuffer  # noqa: E402
from lava.utils.weightutils import SignMode  # noqa: E402

from neuromorph.backends.loihi2.lava import conv as conv_models  # noqa: E402
from neuromorph.backends.loihi2.lava import lanes as lane_models  # noqa: E402
from neuromorph.backends.loihi2.lava import learning as learning_models  # noqa: E402
from neuromorph.backends.loihi2.lava import learning_async  # noqa: E402
from neuromorph.backends.loihi2.lava import lifecycle  # noqa: E402
from neuromorph.backends.loihi2.lava import process as neuron_models  # noqa: E402
from neuromorph.backends.loihi2.lava.conv import ConvSynapse  # noqa: E402
from neuromorph.backends.loihi2.lava.lanes import LaneSource  # noqa: E402
from neuromorph.backends.loihi2.lava.process import NeuronGroup  # noqa: E402
from neuromorph.backends.loihi2.netlist import Connection, Netlist  # noqa: E402
from neuromorph.backends.loihi2.resources import Loihi2Limits  # noqa: E402
from neuromorph.backends.loihi2.chip_model import (  # noqa: E402
    Schedule, check_inputs, fill_stream, float_params, input_stream,
)
from neuromorph.backends.loihi2.learning_model import (  # noqa: E402
    LAGGED_RULES, V_MESSAGE_BITS, LearningSpec, eprop_label_payloads, eprop_label_stream, eprop_readout_lag,
    error_output, error_stream, label_stream,
)
from neuromorph.backends.loihi2.synapse import message_bound  # noqa: E402
from neuromorph.errors import NeuromorphError  # noqa: E402

TAGS = {"float": "floating_pt", "fixed": "fixed_pt"}
FLOAT_MESSAGE_BITS = 24
"""num_message_bits of every float synapse. With > 0 Lava's float Dense computes
``weights.dot(s_in)``, the numpy simulator's arithmetic; with 0 it sums the columns of
the spiking inputs, a different floating-point summation order."""
MAX_DELAY = Loihi2Limits().max_delay  # 6-bit synaptic delays (Lava's fixed DelayDense refuses more)
MAX_DELAY_MATRIX_BYTES = 1 << 30
"""Lava's DelayDense builds a ``[(delay + 1) * out, in]`` float64 matrix every step: float
delays are refused where it would exceed this (fixed point: ``MAX_DELAY``)."""
POLL_S = 0.001
POLL_MAX_S = 0.02
"""A run is watched every POLL_S seconds at first, backing off to POLL_MAX_S: on a
machine whose cores the Lava workers fill, a 1 ms poll took ~15% of a core from them
(digits lanes run: 0.25 s of the host's CPU against 0.14 s)."""
STALL_ENV = "NEUROMORPH_LAVA_STALL_S"
STALL_TIMEOUT_S = 60.0
"""Seconds without a finished chip step after which a run is declared stuck."""
STOP_TIMEOUT_S = 10.0
"""Seconds Lava's runtime services get to stop after a completed run before they are killed."""

Progress = Callable[[int, int], None]
"""``progress(chip steps done, total chip steps)``, called between chunks of the run."""


@dataclass(frozen=True)
class Plan:
    """How the samples of a run are laid out on Lava (module docstring): ``lanes`` samples
    side by side (1: one at a time), ``asynchronous`` under Lava's AsyncProtocol. One
    lane, synchronous, is the plan of Lava's own Dense and RingBuffer processes.
    ``asynchronous`` None: the runner chooses (a learning run: asynchronous when every
    process of its graph has an AsyncProtocol model, lava/learning_async.py; any other
    run: synchronous). ``learning``: set by ``run_lava`` for a learning run, whose graph
    is always the one-at-a-time graph (Lava's Dense, LearningDense, RingBuffers), under
    LoihiProtocol or, asynchronous, AsyncProtocol."""

    lanes: int = 1
    asynchronous: Optional[bool] = None
    learning: bool = False

    def __post_init__(self) -> None:
        if int(self.lanes) < 1:
            raise NeuromorphError(f"lanes must be at least 1, got {self.lanes}")

    @property
    def one_at_a_time(self) -> bool:
        """The one-at-a-time graph (one process per connection), whatever the protocol."""
        return self.lanes == 1 and (not self.asynchronous or self.learning)

    def describe(self) -> str:
        if self.learning:
            protocol = "AsyncProtocol" if self.asynchronous else "LoihiProtocol"
            return f"one sample at a time, learning (Lava Dense and LearningDense, {protocol})"
        if self.one_at_a_time:
            return "one sample at a time (Lava Dense, LoihiProtocol)"
        return (f"lanes: {self.lanes} sample{'s' if self.lanes > 1 else ''} side by side, "
                f"{'async' if self.asynchronous else 'sync'}")


@dataclass
class LavaInfo:
    """How a run went: its schedule, Lava process count, seconds spent building the
    network, running it (compile + start + steps + stop) and reading results, and the
    probes asked for (``{(population, signal): [N, T, *shape]}``)."""

    precision: str
    chip_steps: int
    samples: int
    steps: int
    period: int
    processes: int
    seconds_build: float = 0.0
    seconds_run: float = 0.0
    seconds_read: float = 0.0
    probes: dict = field(default_factory=dict)
    plan: Plan = field(default_factory=Plan)
    learned: dict = field(default_factory=dict)
    """A learning run's weights after each sample, {plastic connection: [N, out, in]} in
    the netlist's representation (float: gain-scaled weights; fixed: the mantissas)."""

    @property
    def steps_per_second(self) -> float:
        """Chip steps per second of the run, Lava's start-up and shut-down included."""
        return self.chip_steps / self.seconds_run if self.seconds_run > 0 else float("inf")


def run_lava(
    net: Netlist,
    x: "np.ndarray | Mapping[str, np.ndarray]",
    precision: str = "float",
    quantized: Any = None,
    probes: Sequence[tuple[str, str]] = (),
    progress: Optional[Progress] = None,
    chunk: int = 0,
    stall_timeout: Optional[float] = None,
    plan: Optional[Plan] = None,
    learn: bool = False,
    rng_seed: int = 1,
) -> "tuple[dict[str, np.ndarray], dict[str, int], LavaInfo]":
    """Run ``x`` ({input: [N, T, *shape]}, or one array for a single input) through
    ``net`` in Lava's CPU simulator.

    ``precision``: "float" (floating_pt models) or "fixed" (fixed_pt models; needs
    ``quantized``, the ``quantize.QuantizedNetlist`` of ``net``).
    ``probes``: extra recordings ``(population, "spikes" | "v")``, returned in
    ``info.probes`` under the same key as [N, T, *shape] (the membrane in IR units).
    ``progress``: called as ``progress(done, total)`` after every ``chunk`` chip steps
    (default chunk: a twentieth of the run); without it the run is one ``RunSteps``.
    ``stall_timeout``: seconds without a finished chip step after which the run fails
    (default: ``$NEUROMORPH_LAVA_STALL_S``, else 60).
    ``plan``: one sample at a time (default) or lanes (:class:`Plan`); more lanes than
    samples run as many lanes as samples. A learning run takes one lane; its protocol is
    ``plan.asynchronous`` (None: asynchronous where every process has a model for it,
    learning_async.py); ``info.plan`` is the plan that ran.
    ``learn``: the plastic connections learn (lava/learning.py; one sample at a time, the
    weights carrying from sample to sample); ``info.learned`` holds their weights after
    each sample. Without it they are plain synapses holding their weights.
    ``rng_seed``: the learning rule's seed (used by Lava's fixed-point engine only).

    Returns ({output: [N, T, *shape]}, {population: spikes inside sample windows}, info),
    the outputs aligned to IR time steps as ``simulate_netlist`` returns them.
    """
    if precision not in TAGS:
        raise NeuromorphError(f"unknown precision '{precision}' (use one of: {', '.join(TAGS)})")
    if precision == "fixed":
        if quantized is None:
            raise NeuromorphError("precision 'fixed' needs the quantized netlist (quantize.quantize)")
        if (len(quantized.weights) != len(net.connections)
                or set(quantized.populations) != {p.name for p in net.populations}):
            raise NeuromorphError("the quantized netlist was made from another netlist")
    inputs, n, t = check_inputs(net, x)
    if n == 0 or t == 0:
        raise NeuromorphError("nothing to run: the input has no samples or no time steps")
    probe_sel = _check_probes(net, probes)
    _check_connected(net)
    plan = plan or Plan()
    learning = dict(net.learning) if learn else {}
    if learning:
        if plan.lanes != 1:
            raise NeuromorphError(f"learning runs one sample at a time (lanes = 1), not {plan.describe()}")
        _check_learning_inputs(net, inputs)
        plan = Plan(1, plan.asynchronous, learning=True)  # asynchronous None: chosen by _build
    else:
        plan = Plan(min(plan.lanes, n), bool(plan.asynchronous))
    _check_delays(net, precision, plan)
    stall_s = _stall_timeout(stall_timeout)
    # an e-prop or STDP synapse takes its last update (the post's last step) one step after
    # its window: the periods need an idle step, so that the next sample's reset comes after it
    lagged = any(s.rule in LAGGED_RULES for s in learning.values())
    # an e-prop error reading its readout k steps back: the readout's steps of the previous
    # sample must be idle at the post's steps 0..k-1 (learning_model.eprop_readout_lag)
    gap = max([1 if lagged else 0, *(s.v_delay for s in learning.values() if s.rule == "eprop" and s.v_source)])
    sched = Schedule.of(net, n, t, lanes=plan.lanes, min_gap=gap)

    # Exits in reverse order: the temp folder is removed, the guardian ends (removing
    # whatever a failure left), then a signal that arrived is acted upon.
    with lifecycle.Interrupts() as interrupts, lifecycle.RunGuard() as guard, \
            tempfile.TemporaryDirectory(prefix="neuromorph-lava-") as workdir:
        guard.folder(workdir)
        t0 = time.perf_counter()
        with interrupts.armed():
            wanted = {(o.population, o.signal) for o in net.outputs} | set(probe_sel)
            wanted |= {(s.v_source or s.target, "v") for s in net.learning.values() if s.error_output}
            groups, others, files, status, models, plan = _build(
                net, inputs, sched, precision, quantized, wanted, workdir, plan, learning, rng_seed)
        t1 = time.perf_counter()
        chunk = (chunk if chunk > 0 else max(1, -(-sched.total // 20))) if progress else sched.total
        cfg = Loihi2SimCfg(select_tag=TAGS[precision], exception_proc_model_map=models)
        counts = _execute(groups, status, sched.total, cfg, chunk, progress, interrupts, stall_s)
        t2 = time.perf_counter()

        def read(pop_name: str, signal_: str) -> np.ndarray:
            data = np.array(np.load(files[(pop_name, signal_)])).reshape(n, t, -1)
            if signal_ == "v":  # shifted (float) or integer (fixed) membrane -> IR units
                data = (quantized.membrane(pop_name, data) if precision == "fixed"
                        else data + net.population(pop_name).v_shift)
            return data

        outputs = {o.name: read(o.population, o.signal).reshape(n, t, *o.shape) for o in net.outputs}
        probe_data = {sel: read(*sel).reshape(n, t, *net.population(sel[0]).shape)
                      for sel in probe_sel}
        for spec in net.learning.values():  # the error stream, as the IR's Output computes it
            if spec.error_output:
                outputs[spec.error_output] = error_output(
                    spec, inputs.get(spec.label) if spec.label else None, read(spec.v_source or spec.target, "v"))
        learned = {name: np.array(np.load(files[(name, "weight")])) for name in learning}
        t3 = time.perf_counter()
    info = LavaInfo(precision, sched.total, n, t, sched.period, len(groups) + len(others),
                    t1 - t0, t2 - t1, t3 - t2, probe_data, plan, learned)
    return outputs, counts, info


# ---------------------------------------------------------------- building the network


def _build(net: Netlist, inputs: Mapping[str, np.ndarray], sched: Schedule, precision: str,
           quantized: Any, wanted: set, workdir: str, plan: Plan, learning: Mapping[str, Any],
           rng_seed: int) -> tuple[dict, list, dict, str, dict, Plan]:
    """Lava processes for the netlist: ({population: NeuronGroup}, [sources and
    synapses], {(population, signal) or (plastic connection, "weight"): record file},
    the groups' status file, {process: ProcessModel} for our own processes (for every
    process in the asynchronous learning plan), the plan that runs).
    ``learning``: the plastic connections that learn ({name: LearningSpec}; lava/learning.py)."""
    fixed = precision == "fixed"
    n, t = sched.samples, sched.steps
    rules: dict[str, Any] = {}
    if fixed and learning:  # the fixed engine's constants (learning_model.FixedLearning)
        from neuromorph.backends.loihi2.quantize import learning_rules

        rules = learning_rules(quantized)
    lanes = None if plan.one_at_a_time else sched.lanes
    key = (precision, bool(plan.asynchronous) and not plan.learning)  # a learning graph: its synchronous models
    sends = dict(inputs)  # what the input ports send: float values, or fixed point's payloads
    if fixed:
        from neuromorph.backends.loihi2.quantize import input_payload

        # Integer payloads, converted once; out-of-range input is refused here, before Lava.
        sends = {name: input_payload(quantized, name, x) for name, x in inputs.items()}
    status = os.path.join(workdir, "status.npy")  # per group: (time step, spike count)
    np.lib.format.open_memmap(status, mode="w+", dtype=np.int64, shape=(len(net.populations), 2)).flush()
    models: dict[Any, Any] = {}
    try:
        sources: dict[str, Any] = {}
        streams = input_stream(net, sends, sched) if lanes is None else {}  # [total, size]
        for port in net.inputs:
            if not any(c.source == port.name for c in net.connections):
                continue  # a label stream only (it enters through a TeacherGroup)
            if lanes is None:  # chip_model's stream, as RingBuffer data [size, total]
                stream = streams[port.name]
                sources[port.name] = RingBuffer(data=np.ascontiguousarray(
                    stream.T.astype(np.int32) if fixed else stream.T))
                continue
            # [total, lanes, size], written straight into the file the source plays
            path = os.path.join(workdir, f"input-{len(sources)}.npy")
            stream = np.lib.format.open_memmap(path, mode="w+", dtype=np.int32 if fixed else np.float64,
                                               shape=(sched.total, lanes, port.size))
            fill_stream(sends[port.name], sched, stream)
            del stream  # unmapped; the source maps the same pages (no need to write them to disk first)
            sources[port.name] = LaneSource(path=path, lanes=lanes, size=port.size, precision=precision,
                                            name=port.name)
            models[sources[port.name]] = lane_models.MODELS[LaneSource][key]

        files: dict[tuple[str, str], str] = {}
        groups: dict[str, NeuronGroup] = {}
        v_senders = {s.v_source for s in learning.values() if s.rule == "eprop" and s.v_source}
        for row, pop in enumerate(net.populations):
            for signal_ in ("spikes", "v"):
                if (pop.name, signal_) in wanted:
                    path = os.path.join(workdir, f"{len(files)}.npy")
                    np.lib.format.open_memmap(path, mode="w+", dtype=np.float64,
                                              shape=(n * t, pop.size)).flush()
                    files[(pop.name, signal_)] = path
            kwargs = dict(
                size=pop.size, params=quantized.populations[pop.name] if fixed else float_params(pop),
                precision=precision, spiking=pop.spiking, reset=pop.reset, offset=pop.offset, steps=t,
                period=sched.period, samples=n, lanes=lanes, record_spikes=files.get((pop.name, "spikes")),
                record_v=files.get((pop.name, "v")), status=status, status_row=row, name=pop.name,
            )
            if lanes is not None:  # the lane plan: the population with its incoming synapses
                incoming = _lane_synapses(net, pop.name, precision, quantized, set(sources))
                groups[pop.name] = lane_models.LaneCore(synapses=incoming, **kwargs)
                models[groups[pop.name]] = lane_models.core_model(precision, plan.asynchronous, incoming)
                continue
            spec = next((s for s in learning.values() if s.target == pop.name), None)
            if spec is not None and spec.rule == "eprop":
                groups[pop.name] = _eprop_post(spec, pop, kwargs, sends if fixed else inputs, sched, sources,
                                               rules.get(spec.name), inputs)
                models[groups[pop.name]] = learning_models.MODELS[(learning_models.EPropGroup, precision)]
                continue
            if spec is not None and spec.pairing is not None:
                groups[pop.name] = _pairing_post(spec, pop, kwargs, inputs, sched, sources)
                models[groups[pop.name]] = learning_models.MODELS[(learning_models.PairGroup, precision)]
                continue
            if spec is None and pop.name in v_senders:  # a frozen readout that an e-prop error reads
                groups[pop.name] = learning_models.ReadoutGroup(**kwargs, v_shift=pop.v_shift)
                models[groups[pop.name]] = learning_models.MODELS[(learning_models.ReadoutGroup, precision)]
                continue
            if spec is None:
                groups[pop.name] = NeuronGroup(**kwargs)
                models[groups[pop.name]] = neuron_models.MODELS[key]
                continue
            groups[pop.name] = _teacher(spec, pop, kwargs, sends, sched, net, sources, rules.get(spec.name))
            models[groups[pop.name]] = learning_models.MODELS[(learning_models.TeacherGroup, precision)]

        if lanes is not None:  # connection k into a population: its LaneCore's port s_in_<k>
            for pop in net.populations:
                for k, conn in enumerate(c for c in net.connections if c.target == pop.name):
                    if conn.source != conn.target:  # (a population's spikes to itself stay in its core)
                        src = sources[conn.source] if conn.source in sources else groups[conn.source]
                        src.s_out.connect(getattr(groups[pop.name], f"s_in_{k}"))
            return groups, list(sources.values()), files, status, models, plan
        synapses = _eprop_error_paths(net, learning, groups, rules)
        for i, conn in enumerate(net.connections):
            from_input = conn.source in sources
            bits = quantized.num_message_bits[conn.source] if fixed and from_input else 0
            integers = (quantized.weights[i], int(quantized.weight_exps[i])) if fixed else None
            if conn.plastic in learning:
                path = os.path.join(workdir, f"weights-{i}.npy")
                files[(conn.plastic, "weight")] = path
                syn = _plastic_synapse(conn, learning[conn.plastic], sched, net, path, rng_seed,
                                       integers, bits, rules.get(conn.plastic))
                connect_post_factors(groups[conn.target], syn, learning[conn.plastic])
                models[syn] = learning_models.MODELS[(type(syn), precision)]
            elif fixed and conn.plastic is not None and lanes is None and conn.extra_delay == 0:
                # learnt mantissas: 8 bits + sign, odd ones included (learning_model: the
                # engine's weights); Lava's Dense keeps them all with 9 weight bits, mixed
                syn = Dense(weights=integers[0], weight_exp=integers[1], num_message_bits=bits,  # type: ignore[index]
                            num_weight_bits=9, sign_mode=SignMode.MIXED, name=f"{conn.source}->{conn.target}")
            else:
                syn = _synapse(conn, precision, bits, integers)
            (sources[conn.source] if from_input else groups[conn.source]).s_out.connect(syn.s_in)
            syn.a_out.connect(groups[conn.target].a_in)
            synapses.append(syn)
            if isinstance(syn, ConvSynapse):
                models[syn] = conv_models.MODELS[key]
    except NeuromorphError:
        raise
    except Exception as exc:
        raise NeuromorphError(f"cannot build the Lava network: {_one_line(exc)}") from exc
    others = [*sources.values(), *synapses]
    if plan.learning:
        plan = _learning_protocol(plan, [*groups.values(), *others], precision, models)
    return groups, others, files, status, models, plan


def _learning_protocol(plan: Plan, processes: Sequence[Any], precision: str, models: dict) -> Plan:
    """The protocol of a learning run's graph: AsyncProtocol (every process mapped to its
    model in lava/learning_async.py, into ``models``) when asked for or left to the
    runner and every process has one; else LoihiProtocol (the models as built; Lava's
    own processes found by ``select_tag``). Asked for and not possible: refused."""
    if plan.asynchronous is False:
        return plan
    found = {proc: learning_async.model_for(proc, precision) for proc in processes}
    missing = sorted({type(proc).__name__ for proc, model in found.items() if model is None})
    if missing:
        if plan.asynchronous:
            raise NeuromorphError(f"no asynchronous {precision} model for {', '.join(missing)}: run this learning "
                                  "network with Plan(1, asynchronous=False)")
        return Plan(1, False, learning=True)
    models.update(found)
    return Plan(1, True, learning=True)


def _synapse(conn: Connection, precision: str, bits: int, integers: Optional[tuple]) -> Any:
    """The Lava process of one connection, one sample at a time: Lava's ``Dense``
    (``DelayDense`` when it has an extra delay), or our ``ConvSynapse`` for a
    convolutional one (why: lava/conv.py). ``integers``: fixed point's (mantissas,
    weight_exp); ``bits``: the source's message bits."""
    name = f"{conn.source}->{conn.target}"
    delay = int(conn.extra_delay)
    graded = bits > 0
    bound = message_bound(graded, bits) if integers is not None else None
    if conn.conv is not None:
        kernel, exp = integers if integers is not None else (conn.weight, 0)
        return ConvSynapse(kernel=kernel, geometry=conn.conv, precision=precision, weight_exp=exp,
                           graded=graded, max_message=bound, delay=delay, name=name)
    kwargs: dict[str, Any] = {"name": name}
    if integers is not None:
        kwargs.update(weights=integers[0], weight_exp=integers[1], num_message_bits=bits)
    else:
        kwargs.update(weights=conn.weight, num_message_bits=FLOAT_MESSAGE_BITS)
    return DelayDense(delays=delay, **kwargs) if delay > 0 else Dense(**kwargs)


def _lane_synapses(net: Netlist, population: str, precision: str, quantized: Any, inputs: set) -> list[dict]:
    """The incoming connections of a population in the lane plan (``lanes.incoming``), in
    the netlist's order, with the arithmetic of Dense / DelayDense / ConvSynapse; the
    connections from an input port in ``inputs`` carry its payloads (fixed point)."""
    fixed = precision == "fixed"
    out = []
    for i, conn in enumerate(net.connections):
        if conn.target != population:
            continue
        bits = quantized.num_message_bits[conn.source] if fixed and conn.source in inputs else 0
        weights, exp = (quantized.weights[i], int(quantized.weight_exps[i])) if fixed else (conn.weight, 0)
        delay = int(conn.extra_delay)
        out.append(lane_models.incoming(
            f"{conn.source}->{conn.target}", weights, precision=precision, delay=delay, geometry=conn.conv,
            weight_exp=exp, graded=bits > 0, max_message=message_bound(bits > 0, bits) if fixed else None,
            summation="sum" if delay > 0 and not fixed else "dot", internal=conn.source == conn.target))
    return out


def _teacher(spec: LearningSpec, pop: Any, kwargs: dict, sends: Mapping[str, np.ndarray], sched: Schedule,
             net: Netlist, sources: dict, rule: Any = None) -> Any:
    """The TeacherGroup of a plastic connection's post population, with the RingBuffer
    that plays its label stream (learning_model.label_stream) into ``label_in``.
    ``rule``: fixed point's learning_model.FixedLearning (integer y2), None in float."""
    offset = 0 if spec.source in {p.name for p in net.inputs} else net.population(spec.source).offset
    label = sends.get(spec.label) if spec.label else None
    stream = label_stream(spec, label, sched.samples, sched.steps, sched.period, offset, sched.total)
    if rule is None:
        factors = {"y2_label": spec.y2_label, "y2_v": spec.y2_v, "v_shift": pop.v_shift}
        data = stream.T.copy()
    else:
        factors = {"y2_label": rule.y2_label, "y2_v": rule.y2_v, "v_shift": rule.y2_bias, "y2_shift": rule.y2_shift}
        data = stream.T.astype(np.int32)
    group = learning_models.TeacherGroup(**kwargs, **factors)
    ring = RingBuffer(data=np.ascontiguousarray(data))
    ring.s_out.connect(group.label_in)
    sources[f"label:{spec.name}"] = ring
    return group


def _eprop_post(spec: LearningSpec, pop: Any, kwargs: dict, inputs: Mapping[str, np.ndarray], sched: Schedule,
                sources: dict, rule: Any = None, labels: Optional[Mapping[str, np.ndarray]] = None) -> Any:
    """The EPropGroup of an e-prop connection's post population (lava/learning.py), with
    the RingBuffer that plays its error Input (learning_model.error_stream) into ``err_in``.
    ``rule``: fixed point's learning_model.FixedEProp (``inputs`` then holds the payloads;
    ``labels`` the IR values, for the label part of an error computed on the chip)."""
    chip = spec.eprop
    if pop.reset != "subtract":  # learning_model refuses it at compile time; a corrupt artifact here
        raise NeuromorphError(f"plastic connection '{spec.name}': e-prop needs reset by subtraction in '{pop.name}'")
    if rule is not None:
        if spec.error_output is not None and rule.v_weights is None:  # a corrupt artifact
            raise NeuromorphError(f"plastic connection '{spec.name}': its fixed-point e-prop error path is missing")
        group = learning_models.EPropGroup(**kwargs, y1_gain=rule.y1_gain, y2_gain=rule.unit, feedback=rule.feedback,
                                           dk=-int(rule.y3), gamma=0, shifts=(rule.y1_shift, rule.y2_shift))
        if spec.error_output is None:  # an Input: its payloads
            stream = error_stream(inputs[spec.label], sched.samples, sched.steps, sched.period, pop.offset,
                                  sched.total)
        else:  # the label part, in err payloads (learning_model.eprop_error_path); the readout's: a synapse
            stream = eprop_label_payloads(rule, spec, labels.get(spec.label) if spec.label else None,
                                          sched.samples, sched.steps, sched.period, pop.offset, sched.total)
            if np.abs(stream).max(initial=0) > 2**23 - 1:
                raise NeuromorphError(f"plastic connection '{spec.name}': its label '{spec.label}' exceeds the "
                                      "calibrated error range (24-bit err payloads): recompile with calibration "
                                      "data that covers it")
        ring = RingBuffer(data=np.ascontiguousarray(stream.T.astype(np.int32)))
        ring.s_out.connect(group.err_in)
        sources[f"error:{spec.name}"] = ring
        return group
    group = learning_models.EPropGroup(**kwargs, y1_gain=chip.y1_gain, y2_gain=chip.y2_gain, feedback=chip.feedback,
                                       dk=chip.dk, gamma=chip.gamma)
    if spec.error_output is None:  # the error is an Input stream
        stream = error_stream(inputs[spec.label], sched.samples, sched.steps, sched.period, pop.offset, sched.total)
    else:  # the label part of an error Output (the readout's arrives through _eprop_error_paths)
        stream = eprop_label_stream(spec, inputs.get(spec.label) if spec.label else None, sched.samples,
                                    sched.steps, sched.period, pop.offset, sched.total)
    ring = RingBuffer(data=np.ascontiguousarray(stream.T))
    ring.s_out.connect(group.err_in)
    sources[f"error:{spec.name}"] = ring
    return group


def _eprop_error_paths(net: Netlist, learning: Mapping[str, LearningSpec], groups: dict,
                       rules: Optional[Mapping[str, Any]] = None) -> list:
    """The readout's part of each e-prop error Output: a synapse from the readout's
    ``v_out`` (its membrane, IR units) to the post's ``err_in``, weights ``diag(c)``, which
    delivers ``c * v_ro(s)`` one chip step after the readout's step ``s``; an extra delay
    of ``k - k_min`` chip steps (learning_model.eprop_readout_lag) gives the post
    ``v_ro(t - k)`` at its step ``t``. One per post population (its e-prop synapses share
    the error). Fixed point (``rules``: learning_model.FixedEProp): the readout's 24-bit
    integer membrane through Lava's fixed Dense of mantissas ``diag(v_weights)`` and
    ``weight_exp = v_exp`` (learning_model.eprop_error_path)."""
    offsets = {p.name: p.offset for p in net.populations}
    paths, done = [], set()
    for spec in learning.values():
        if spec.rule != "eprop" or spec.v_source is None or spec.target in done:
            continue
        done.add(spec.target)
        extra = spec.v_delay - eprop_readout_lag(spec, offsets)
        if extra < 0:  # learning_model refuses it at compile time; a corrupt artifact here
            raise NeuromorphError(f"plastic connection '{spec.name}': its error reads '{spec.v_source}' sooner "
                                  "than the chip can deliver it")
        rule = (rules or {}).get(spec.name)
        if rule is not None:  # fixed point: diag(c) as mantissas and an exponent, the 24-bit integer membrane
            kwargs = dict(weights=np.diag(np.asarray(rule.v_weights, dtype=np.int32)), weight_exp=int(rule.v_exp),
                          num_message_bits=V_MESSAGE_BITS, name=f"{spec.v_source}->{spec.target}:error")
        else:
            kwargs = dict(weights=np.diag(np.asarray(spec.v_gain, dtype=np.float64)),
                          num_message_bits=FLOAT_MESSAGE_BITS, name=f"{spec.v_source}->{spec.target}:error")
        syn = DelayDense(delays=extra, **kwargs) if extra > 0 else Dense(**kwargs)
        groups[spec.v_source].v_out.connect(syn.s_in)
        syn.a_out.connect(groups[spec.target].err_in)
        paths.append(syn)
    return paths


def _plastic_synapse(conn: Connection, spec: LearningSpec, sched: Schedule, net: Netlist, path: str,
                     rng_seed: int, integers: Optional[tuple] = None, bits: int = 0, rule: Any = None) -> Any:
    """Lava's LearningDense for a plastic connection (lava/learning.py), windowed like its
    source, writing its weights after each sample into ``path``; fixed point:
    ``integers`` (mantissas, weight_exp), the source's message ``bits`` and ``rule``
    (learning_model.FixedLearning)."""
    offset = 0 if conn.source in {p.name for p in net.inputs} else net.population(conn.source).offset
    shape = (sched.samples, *np.shape(conn.weight))
    np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=shape).flush()
    window = dict(offset=offset, steps=sched.steps, period=sched.period, samples=sched.samples, record=path,
                  name=f"{conn.source}->{conn.target}")
    if integers is not None and spec.rule == "eprop":  # learning_model.FixedEProp; lagged (below)
        window["steps"] = sched.steps + 1
        return learning_models.plastic_dense(
            np.asarray(integers[0], dtype=np.int32), learning_models.fixed_eprop_rule(rule, rng_seed),
            weight_exp=int(integers[1]), num_message_bits=bits, **window)
    if integers is not None:
        return learning_models.plastic_dense(
            np.asarray(integers[0], dtype=np.int32), learning_models.fixed_learning_rule(rule, rng_seed),
            weight_exp=int(integers[1]), num_message_bits=bits, **window)
    if spec.rule in LAGGED_RULES:  # its post sends the factors of IR step t one chip step after the
        # window's step t: the update of the last step comes at window step T (the schedule's idle step)
        window["steps"] = sched.steps + 1
    if spec.rule == "eprop":
        lava_rule = learning_models.eprop_rule(spec.keep, rng_seed=rng_seed)
    elif spec.pairing is not None:
        lava_rule = learning_models.pairing_rule(spec.pairing, rng_seed=rng_seed)
    else:
        lava_rule = learning_models.learning_rule(spec.keep, rng_seed=rng_seed)
    return learning_models.plastic_dense(conn.weight, lava_rule, num_message_bits=FLOAT_MESSAGE_BITS, **window)


def connect_post_factors(group: Any, syn: Any, spec: LearningSpec) -> None:
    """The post population's factors into its plastic synapse: y2 (the delta rule), y1..y3
    (e-prop), the spikes on ``s_in_bap`` and y1..y3 (STDP, reward-STDP). An unconnected
    port of the synapse reads zeros: a rule would silently not learn (tests guard it)."""
    group.y2_out.connect(syn.s_in_y2)
    if spec.rule == "eprop" or spec.pairing is not None:
        group.y1_out.connect(syn.s_in_y1)
        group.y3_out.connect(syn.s_in_y3)
    if spec.pairing is not None:
        group.bap_out.connect(syn.s_in_bap)


def _pairing_post(spec: LearningSpec, pop: Any, kwargs: dict, inputs: Mapping[str, np.ndarray], sched: Schedule,
                  sources: dict) -> Any:
    """The PairGroup of an STDP / reward-STDP connection's post population (lava/learning.py),
    with the RingBuffer that plays its reward Input (learning_model.error_stream) into ``r_in``."""
    chip = spec.pairing
    if not pop.spiking:  # the IR's post_node refuses it at compile time; a corrupt artifact here
        raise NeuromorphError(f"plastic connection '{spec.name}': '{spec.rule}' needs a spiking population "
                              f"'{pop.name}'")
    n_reward = spec.label_gain.size if chip.reward else 1
    group = learning_models.PairGroup(**kwargs, y1_gain=chip.y1_gain, y2_gain=chip.y2_gain, y3=chip.y3,
                                      keep_y=chip.keep_y, reward=chip.reward, n_reward=n_reward)
    if chip.reward:
        stream = error_stream(inputs[spec.label], sched.samples, sched.steps, sched.period, pop.offset,
                              sched.total)
        ring = RingBuffer(data=np.ascontiguousarray(stream.T))
        ring.s_out.connect(group.r_in)
        sources[f"reward:{spec.name}"] = ring
    return group


def _check_learning_inputs(net: Netlist, inputs: Mapping[str, np.ndarray]) -> None:
    """A plastic connection's presynaptic trace takes one impulse per input spike: the
    input ports it reads must carry spikes (0/1) in a learning run."""
    for spec in net.learning.values():
        x = inputs.get(spec.source)
        if x is not None and not np.all((x == 0) | (x == 1)):
            raise NeuromorphError(f"plastic connection '{spec.name}' learns from input '{spec.source}', "
                                  "which must carry spikes (0 or 1) in a learning run: the learning engine's "
                                  "trace counts spikes, not graded values")


def _check_probes(net: Netlist, probes: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    names = {p.name for p in net.populations}
    for pop, signal_ in probes:
        if pop not in names or signal_ not in ("v", "spikes"):
            raise NeuromorphError(
                f"unknown probe {(pop, signal_)}: use (population, 'spikes' or 'v') "
                f"(populations: {', '.join(sorted(names))})")
    return list(dict.fromkeys(probes))


def _check_delays(net: Netlist, precision: str, plan: Plan = Plan()) -> None:
    """Refuse, before any Lava process exists, delays Lava cannot run: above Loihi 2's
    6 bits in fixed point; in float, one sample at a time, delays whose DelayDense matrix
    would not fit ``MAX_DELAY_MATRIX_BYTES`` (a worker would otherwise try to allocate it;
    the lane synapses keep a queue of messages instead)."""
    for c in net.connections:
        delay = int(c.extra_delay)
        where = f"connection {c.source}->{c.target}"
        if delay < 0:
            raise NeuromorphError(f"{where} has a negative synaptic delay ({delay}); the netlist is corrupt")
        if precision == "fixed":
            if delay > MAX_DELAY:
                raise NeuromorphError(f"{where} needs a synaptic delay of {delay} chip steps; "
                                      f"Loihi 2 delays are at most {MAX_DELAY}")
            continue
        per_delay = 8 * int(np.prod(np.shape(c.weight)))
        if plan.one_at_a_time and c.conv is None and delay > 0 and (delay + 1) * per_delay > MAX_DELAY_MATRIX_BYTES:
            raise NeuromorphError(
                f"{where} needs a synaptic delay of {delay} chip steps; Lava's DelayDense would "
                f"build a {(delay + 1) * per_delay / 2**30:.3g} GiB matrix every step (this "
                f"connection allows delays up to {max(0, MAX_DELAY_MATRIX_BYTES // max(per_delay, 1) - 1)})")


def _stall_timeout(value: Optional[float]) -> float:
    source = "stall_timeout"
    if value is None:
        text = os.environ.get(STALL_ENV, "").strip()
        if not text:
            return STALL_TIMEOUT_S
        source = STALL_ENV
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
    if not value > 0:  # also NaN
        raise NeuromorphError(f"{source} must be a positive number of seconds, got {value!r}")
    return float(value)


def _check_connected(net: Netlist) -> None:
    """Lava runs the processes connected to the one it is given: one piece only."""
    if not net.populations:
        raise NeuromorphError("the netlist has no neuron population to run")
    parent = {k: k for k in [*(p.name for p in net.inputs), *(p.name for p in net.populations)]}

    def root(k: str) -> str:
        while parent[k] != k:
            k = parent[k]
        return k

    for c in net.connections:
        parent[root(c.source)] = root(c.target)
    for spec in net.learning.values():  # a label stream enters its post population
        if spec.label:
            parent[root(spec.label)] = root(spec.target)
    if len({root(k) for k in parent}) > 1:
        raise NeuromorphError("the netlist has unconnected parts; Lava runs one connected network: "
                              "deploy each part on its own")


# ---------------------------------------------------------------- running it


def _execute(groups: dict[str, NeuronGroup], status_path: str, total: int, cfg: Loihi2SimCfg, chunk: int,
             progress: Optional[Progress], interrupts: lifecycle.Interrupts,
             stall_s: float) -> dict[str, int]:
    """Run ``total`` chip steps (in chunks), read the spike counts, always stop Lava."""
    anchor = next(iter(groups.values()))
    status = np.load(status_path, mmap_mode="r")
    in_flight = True  # until a RunSteps has come back complete, Lava's state is unknown
    try:
        with interrupts.armed():  # signals raise here, not during the shutdown below
            done = 0
            while done < total:
                steps = min(chunk, total - done)
                in_flight = True
                # The first call compiles and forks Lava's workers (lifecycle.RunGuard
                # makes them ignore Ctrl-C and die with this process).
                _lava(anchor.run, RunSteps(num_steps=steps, blocking=False), cfg)
                _lava(_wait, anchor.runtime, status, stall_s, total)
                in_flight = False
                done += steps
                if progress is not None:
                    progress(done, total)  # its exceptions (and Ctrl-C) pass through unchanged
        return {name: int(status[row, 1]) for row, name in enumerate(groups)}
    finally:
        _shutdown(anchor, graceful=not in_flight)


def _lava(fn: Callable[..., Any], *args: Any) -> Any:
    """Call into Lava; its exceptions become one-line NeuromorphErrors."""
    try:
        return fn(*args)
    except (NeuromorphError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise NeuromorphError(f"Lava run failed: {_one_line(exc)}") from exc


def _wait(runtime: Any, status: np.ndarray, stall_s: float, total: int) -> None:
    """Wait for the runtime services to report the end of the run; fail as soon as one
    reports an error or a Lava worker exits (Lava itself would wait forever), or when no
    chip step finishes for ``stall_s`` seconds."""
    ports = runtime.service_to_runtime
    actors = runtime._messaging_infrastructure.actors
    steps, since = int(status[:, 0].sum()), time.monotonic()
    delay = POLL_S
    while True:
        ready = [p.probe() for p in ports]
        if any(r and enum_equal(p.peek(), MGMT_RESPONSE.ERROR) for r, p in zip(ready, ports)):
            raise _failure(actors)
        if all(ready):
            runtime.wait()  # consumes the DONE messages
            return
        if any(a.exitcode is not None for a in actors):
            raise _failure(actors)
        now = int(status[:, 0].sum())
        if now != steps:
            steps, since = now, time.monotonic()
        elif time.monotonic() - since > stall_s:
            raise NeuromorphError(
                f"Lava run stalled: no chip step finished in {stall_s:g} s (at chip step "
                f"{int(status[:, 0].min())} of {total}); a Lava worker is stuck or stopped "
                f"(the limit is {STALL_ENV})")
        time.sleep(delay)
        delay = min(2 * delay, POLL_MAX_S)


def _failure(actors: list, timeout_s: float = 5.0) -> NeuromorphError:
    """The error of the first Lava worker that raised, as one line."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for actor in actors:
            exc = actor.exception if actor.exitcode is not None else None
            if exc:
                return NeuromorphError(f"Lava run failed: {_one_line(exc[0])}")
        time.sleep(0.01)
    return NeuromorphError("Lava run failed: a Lava worker process ended without reporting why")


def _shutdown(anchor: NeuronGroup, graceful: bool) -> None:
    """Stop Lava, in bounded time, whatever state it is in (also half initialized).

    When the last run completed, the runtime services are asked to stop (Lava's own
    STOP/TERMINATED exchange, with a deadline instead of Lava's unbounded wait);
    otherwise, or when they do not answer, the workers are killed: a dead, stuck or
    stopped worker never answers. Lava's shared-memory server is then killed and the
    segments unlinked here (it would unlink them itself, but could hang doing so)."""
    runtime = anchor.runtime
    if runtime is None:  # failed before Lava forked anything
        return
    infra = runtime._messaging_infrastructure
    actors = list(infra.actors) if infra is not None else []
    if graceful and runtime._is_started:
        graceful = _stop_services(runtime, STOP_TIMEOUT_S)
    _end(actors, grace_s=STOP_TIMEOUT_S if graceful else 0.0)
    try:
        runtime.join()  # the host's channel ports: wakes their threads so that they end
    except Exception:  # noqa: BLE001 - best effort; the processes are gone either way
        pass
    # Lava's stop() (also called from the processes' __del__) must not wait for them now.
    runtime._is_running = runtime._is_started = False
    if infra is not None and infra.smm is not None:
        _release_shared_memory(infra.smm)
    if runtime._watchdog_manager is not None:
        try:
            runtime._watchdog_manager.stop()
        except Exception:  # noqa: BLE001
            pass


def _stop_services(runtime: Any, timeout_s: float) -> bool:
    """Lava's Runtime.stop() handshake with a deadline: True if every service answered."""
    try:
        for port in runtime.runtime_to_service:
            port.send(MGMT_COMMAND.STOP)
        deadline = time.monotonic() + timeout_s
        ports = runtime.service_to_runtime
        while not all(p.probe() for p in ports):
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_S)
        return all([enum_equal(p.recv(), MGMT_RESPONSE.TERMINATED) for p in ports])
    except Exception:  # noqa: BLE001 - fall back to killing the workers
        return False


def _gone(process: Any) -> bool:
    try:
        return process.exitcode is not None
    except ValueError:  # already joined and closed
        return True


def _end(actors: list, grace_s: float) -> None:
    """Let the workers exit for ``grace_s`` seconds, kill those left (SIGKILL also ends
    a stopped process), reap them all."""
    deadline = time.monotonic() + grace_s
    for actor in actors:
        while not _gone(actor) and time.monotonic() < deadline:
            time.sleep(POLL_S)
    for actor in actors:
        if not _gone(actor):
            try:
                actor.kill()
            except (OSError, ValueError, AttributeError):
                pass
    for actor in actors:
        try:
            if actor._popen is not None and not actor._is_done:
                actor._popen.wait(5.0)
            if _gone(actor):
                actor.join()  # Lava's SystemProcess.join: collects its exception, closes it
        except (OSError, ValueError, AttributeError):
            pass


def _release_shared_memory(smm: Any) -> None:
    """Kill Lava's shared-memory server, close the host's mappings, unlink the segments."""
    handles = list(smm._shared_memory_handles)
    manager = smm._manager
    server = getattr(manager, "_process", None)
    if server is not None and not _gone(server):
        try:
            server.kill()
            server.join(5.0)
        except (OSError, ValueError, AttributeError):
            pass
    for handle in handles:
        try:
            handle.close()
        except Exception:  # noqa: BLE001 - a mapping still in use stays mapped; it is unlinked below
            pass
    smm._shared_memory_handles.clear()
    if manager is not None:
        try:
            manager.shutdown()  # the server is gone: only marks the manager shut down
        except Exception:  # noqa: BLE001 - e.g. interrupted while starting: no shutdown yet
            pass
        smm._manager = None
    for handle in handles:
        _unlink(handle.name)


def _unlink(name: str) -> None:
    """Unlink a shared-memory segment if it still exists, and tell multiprocessing's
    resource tracker (which registered it on creation) that it is gone."""
    try:
        import _posixshmem
        from multiprocessing import resource_tracker

        _posixshmem.shm_unlink("/" + name)
    except Exception:  # noqa: BLE001 - gone already, or not POSIX
        return
    try:
        resource_tracker.unregister("/" + name, "shared_memory")
    except Exception:  # noqa: BLE001
        pass


def _one_line(exc: BaseException, limit: int = 400) -> str:
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
