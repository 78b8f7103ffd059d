"""Run a compiled netlist in Lava's Loihi 2 CPU simulator (``Loihi2SimCfg``).

The Lava network mirrors the numpy chip model (``chip_model.py``), the
specification of what the deployment does step by step:

- one ``RingBuffer`` per input port plays chip_model's chip-time input stream (float:
  real values; fixed: the integer payloads of ``quantize.input_payload``);
- one ``NeuronGroup`` (process.py) per population runs its sample windows;
- one synapse per connection: Lava's ``Dense`` delivers at chip step ``c + 1`` what it
  received at ``c``; ``DelayDense`` with ``delays = extra_delay`` delivers at
  ``c + 1 + extra_delay`` (its buffer column 0 goes out next step), exactly chip_model's
  ``arrival = c + 1 + extra_delay``.

All ``sched.total`` chip steps run as one ``RunSteps`` (or, with a progress callback, in
chunks: Lava keeps its state between them). Lava is always stopped, also when the run
fails or is interrupted. Lava 0.10.0 hangs when a process raises before sending on its
ports (the processes downstream wait for that message forever), so the run is started
non-blocking and watched: a Lava worker that dies ends the run with a one-line
:class:`NeuromorphError` naming its error, and the remaining workers are terminated.
"""
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from neuromorph.backends.loihi2.lava.compat import import_lava

import_lava()

from lava.magma.core.run_conditions import RunSteps  # noqa: E402
from lava.magma.core.run_configs import Loihi2SimCfg  # noqa: E402
from lava.magma.runtime.mgmt_token_enums import MGMT_RESPONSE, enum_equal  # noqa: E402
from lava.proc.dense.process import DelayDense, Dense  # noqa: E402
from lava.proc.io.source import RingBuffer  # noqa: E402

from neuromorph.backends.loihi2.lava.process import NeuronGroup  # noqa: E402
from neuromorph.backends.loihi2.netlist import Netlist  # noqa: E402
from neuromorph.backends.loihi2.chip_model import Schedule, check_inputs, float_params, input_stream  # noqa: E402
from neuromorph.errors import NeuromorphError  # noqa: E402

TAGS = {"float": "floating_pt", "fixed": "fixed_pt"}
FLOAT_MESSAGE_BITS = 24
"""num_message_bits of every float synapse. With > 0 Lava's float Dense computes
``weights.dot(s_in)``, the numpy simulator's arithmetic; with 0 it sums the columns of
the spiking inputs, a different floating-point summation order."""
MAX_DELAY = 63  # Loihi 2 synaptic delays are 6 bits (Lava's fixed DelayDense refuses more)
POLL_S = 0.001

Progress = Callable[[int, int], None]
"""``progress(chip steps done, total chip steps)``, called between chunks of the run."""


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
) -> "tuple[dict[str, np.ndarray], dict[str, int], LavaInfo]":
    """Run ``x`` ({input: [N, T, *shape]}, or one array for a single input) through
    ``net`` in Lava's CPU simulator.

    ``precision``: "float" (floating_pt models) or "fixed" (fixed_pt models; needs
    ``quantized``, the ``quantize.QuantizedNetlist`` of ``net``).
    ``probes``: extra recordings ``(population, "spikes" | "v")``, returned in
    ``info.probes`` under the same key as [N, T, *shape] (the membrane in IR units).
    ``progress``: called as ``progress(done, total)`` after every ``chunk`` chip steps
    (default chunk: a twentieth of the run); without it the run is one ``RunSteps``.

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
    sched = Schedule.of(net, n, t)

    with tempfile.TemporaryDirectory(prefix="neuromorph-lava-") as workdir:
        t0 = time.perf_counter()
        groups, others, files = _build(net, inputs, sched, precision, quantized,
                                       {(o.population, o.signal) for o in net.outputs} | set(probe_sel),
                                       workdir)
        t1 = time.perf_counter()
        chunk = (chunk if chunk > 0 else max(1, -(-sched.total // 20))) if progress else sched.total
        counts = _execute(groups, sched.total, TAGS[precision], chunk, progress)
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
        t3 = time.perf_counter()
    info = LavaInfo(precision, sched.total, n, t, sched.period, len(groups) + len(others),
                    t1 - t0, t2 - t1, t3 - t2, probe_data)
    return outputs, counts, info


# ---------------------------------------------------------------- building the network


def _build(net: Netlist, inputs: Mapping[str, np.ndarray], sched: Schedule, precision: str,
           quantized: Any, wanted: set, workdir: str) -> tuple[dict, list, dict]:
    """Lava processes for the netlist: ({population: NeuronGroup}, [sources and
    synapses], {(population, signal): record file})."""
    fixed = precision == "fixed"
    n, t = sched.samples, sched.steps
    streams = input_stream(net, inputs, sched)
    if fixed:
        from neuromorph.backends.loihi2.quantize import input_payload

        # Integer payloads, converted once; out-of-range input is refused here, before Lava.
        streams = {name: input_payload(quantized, name, s) for name, s in streams.items()}
        for c in net.connections:
            if c.extra_delay > MAX_DELAY:
                raise NeuromorphError(
                    f"connection {c.source}->{c.target} needs a synaptic delay of {c.extra_delay} "
                    f"chip steps; Loihi 2 delays are at most {MAX_DELAY}")
    try:
        sources = {port.name: RingBuffer(data=np.ascontiguousarray(streams[port.name].T))
                   for port in net.inputs}

        files: dict[tuple[str, str], str] = {}
        groups: dict[str, NeuronGroup] = {}
        for pop in net.populations:
            for signal_ in ("spikes", "v"):
                if (pop.name, signal_) in wanted:
                    path = os.path.join(workdir, f"{len(files)}.npy")
                    np.lib.format.open_memmap(path, mode="w+", dtype=np.float64,
                                              shape=(n * t, pop.size)).flush()
                    files[(pop.name, signal_)] = path
            groups[pop.name] = NeuronGroup(
                size=pop.size, params=quantized.populations[pop.name] if fixed else float_params(pop),
                precision=precision, spiking=pop.spiking, offset=pop.offset, steps=t,
                period=sched.period, samples=n, record_spikes=files.get((pop.name, "spikes")),
                record_v=files.get((pop.name, "v")), name=pop.name,
            )

        synapses = []
        for i, conn in enumerate(net.connections):
            from_input = conn.source in sources
            kwargs: dict[str, Any] = {"name": f"{conn.source}->{conn.target}"}
            if fixed:
                kwargs.update(weights=quantized.weights[i], weight_exp=int(quantized.weight_exps[i]),
                              num_message_bits=quantized.num_message_bits[conn.source] if from_input else 0)
            else:
                kwargs.update(weights=conn.weight, num_message_bits=FLOAT_MESSAGE_BITS)
            syn = (DelayDense(delays=int(conn.extra_delay), **kwargs) if conn.extra_delay > 0
                   else Dense(**kwargs))
            (sources[conn.source] if from_input else groups[conn.source]).s_out.connect(syn.s_in)
            syn.a_out.connect(groups[conn.target].a_in)
            synapses.append(syn)
    except NeuromorphError:
        raise
    except Exception as exc:
        raise NeuromorphError(f"cannot build the Lava network: {_one_line(exc)}") from exc
    return groups, [*sources.values(), *synapses], files


def _check_probes(net: Netlist, probes: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    names = {p.name for p in net.populations}
    for pop, signal_ in probes:
        if pop not in names or signal_ not in ("v", "spikes"):
            raise NeuromorphError(
                f"unknown probe {(pop, signal_)}: use (population, 'spikes' or 'v') "
                f"(populations: {', '.join(sorted(names))})")
    return list(dict.fromkeys(probes))


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
    if len({root(k) for k in parent}) > 1:
        raise NeuromorphError("the netlist has unconnected parts; Lava runs one connected network: "
                              "deploy each part on its own")


# ---------------------------------------------------------------- running it


def _execute(groups: dict[str, NeuronGroup], total: int, tag: str, chunk: int,
             progress: Optional[Progress]) -> dict[str, int]:
    """Run ``total`` chip steps (in chunks), read the spike counts, always stop Lava."""
    anchor = next(iter(groups.values()))
    cfg = Loihi2SimCfg(select_tag=tag)
    in_flight = True  # until a RunSteps has come back complete, Lava's state is unknown
    try:
        done = 0
        while done < total:
            steps = min(chunk, total - done)
            in_flight = True
            _lava(_start, anchor, steps, cfg)
            _lava(_wait, anchor.runtime)
            in_flight = False
            done += steps
            if progress is not None:
                progress(done, total)  # its exceptions (and Ctrl-C) pass through unchanged
        return {name: int(round(float(_lava(g.spike_count.get)[0]))) for name, g in groups.items()}
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


def _start(anchor: NeuronGroup, steps: int, cfg: Loihi2SimCfg) -> None:
    """Start ``steps`` chip steps without blocking. The first call compiles and forks
    Lava's workers; they ignore Ctrl-C (SIGINT goes to the whole process group), so an
    interrupt reaches only this process, which then terminates them cleanly."""
    condition = RunSteps(num_steps=steps, blocking=False)
    if anchor.runtime is None and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            anchor.run(condition=condition, run_cfg=cfg)
        finally:
            signal.signal(signal.SIGINT, previous)
    else:
        anchor.run(condition=condition, run_cfg=cfg)


def _wait(runtime: Any) -> None:
    """Wait for the runtime services to report the end of the run; fail as soon as one
    reports an error or a Lava worker exits (Lava itself would wait forever)."""
    ports = runtime.service_to_runtime
    actors = runtime._messaging_infrastructure.actors
    while True:
        ready = [p.probe() for p in ports]
        if any(r and enum_equal(p.peek(), MGMT_RESPONSE.ERROR) for r, p in zip(ready, ports)):
            raise _failure(actors)
        if all(ready):
            runtime.wait()  # consumes the DONE messages
            return
        if any(a.exitcode is not None for a in actors):
            raise _failure(actors)
        time.sleep(POLL_S)


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
    """Stop Lava. Gracefully (Lava's ``stop()``) when the last run completed; otherwise
    terminate Lava's worker processes ourselves, since ``stop()`` waits for answers that
    a dead or blocked worker never sends."""
    runtime = anchor.runtime
    if runtime is None:  # failed before Lava started anything
        return
    if graceful:
        try:
            anchor.stop()
            return
        except Exception:  # noqa: BLE001 - fall back to terminating the workers
            pass
    infra = runtime._messaging_infrastructure
    for actor in infra.actors:
        try:
            if actor.exitcode is None:
                actor.terminate()
        except ValueError:  # already joined and closed by a partial stop()
            pass
    for actor in infra.actors:
        actor.join()  # Lava's SystemProcess.join: a no-op once joined
    # Lava's stop() (also called from the processes' __del__) must not wait for them now.
    runtime._is_running = runtime._is_started = False
    infra.stop()  # shuts down Lava's shared-memory manager process
    if runtime._watchdog_manager is not None:
        runtime._watchdog_manager.stop()


def _one_line(exc: BaseException, limit: int = 400) -> str:
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
