"""Lava processes of the lane plan: B samples side by side in one Lava network.

Loihi 2 has 128 neuron cores per chip and a small network uses a few of them; B copies
of the network on spare cores run B samples at once. The lane plan is that, simulated:
one Lava process per population and per input port, each holding B copies of its part
of the network side by side (``[B, n]`` ports and state; lane ``b`` is copy ``b``), and
every chip step is still the Lava processes exchanging one message per connection
between them (each message carries the B lanes of that connection). What a lane
computes is bit for bit what the same sample computes alone (and what the one-at-a-time
plan computes with Lava's own Dense, one process per connection):

- ``LaneSource`` plays the chip-time input stream of the lanes (``[total, B, size]``,
  from a ``.npy`` file: float inputs, or the integer payloads of fixed point), one
  ``[B, size]`` message per step, as Lava's ``RingBuffer`` plays one lane;
- ``LaneCore`` is a population (``process.NeuronGroup`` with ``lanes=B``) together with
  the synapses of its incoming connections, as a Loihi 2 neuron core holds the synapses
  of its neurons: so the messages between processes are exactly the spikes between
  cores (a population's connection to itself stays inside its core). Each connection
  applies one weight matrix (or kernel) to each lane's input with exactly the arithmetic
  of Lava's ``Dense`` (float: ``weights.dot(s_in)``, a gemv per lane; or ``DelayDense``'s
  ``np.sum(weights * s_in, axis=1)`` when it has a delay; fixed point:
  ``PyDenseModelBitAcc``'s integers) or of ``conv.ConvSynapse``, from
  ``backends/loihi2/synapse.py`` / ``conv.py``, with Dense's timing: what arrives at step
  ``c`` is delivered at ``c + 1 + delay``; what arrives in one step is summed from zeros,
  as Lava's ``InPort`` sums the messages of several connections, in the order of the
  numpy chip model (so float sums round as there; Lava's own order for three or more
  messages into one port varies from run to run). Compared with one process
  per connection (the earlier layout), a step of the digits network takes 3 processes
  and 2 messages instead of 5 and 4, and a run starts faster.

Each process has a synchronous (``LoihiProtocol``) and an asynchronous (``AsyncProtocol``)
model. Lava 0.10.0's ``AsyncProtocol`` (lava/magma/core/sync/protocols/async_protocol.py,
``AsyncPyRuntimeService`` in lava/magma/runtime/runtime_services/runtime_service.py) sends
each process one RUN command with the number of steps and waits for its DONE: no
per-step command and reply from the runtime service (10 of the ~14 messages of a chip
step of a two-layer net). The data messages are the same, and every process reads its
inputs with blocking ``recv`` in a fixed order, so the result is the same; a process may
run ahead of the others by as many steps as its channels buffer. What the asynchronous
models give up: Lava's phases (no ``Var.get``/``set`` or ``Monitor``/``RefPort`` access
while a run is in progress: nothing here needs it, the neuron groups write their records
and status into files) and Lava's ``time_step`` (each model counts its own steps). The asynchronous models are
tagged ``floating_pt_async`` / ``fixed_pt_async``, so that a ``Loihi2SimCfg(select_tag=
"fixed_pt")`` never picks one for a synchronous network; the runner names every model
itself (``MODELS`` for the sources; ``core_model`` for a LaneCore, whose ports and
weight Vars depend on its connections: one model class per layout, made on demand).

Note: Lava finds ProcessModels by executing every module of this package as a top-level
module; this one must therefore import cleanly on its own (absolute imports, no
dataclasses with postponed annotations).
"""
from typing import Any, Optional, Sequence

import numpy as np

from neuromorph.backends.loihi2.lava.compat import import_lava

import_lava()

from lava.magma.core.decorator import implements, requires, tag  # noqa: E402
from lava.magma.core.model.py.model import PyAsyncProcessModel, PyLoihiProcessModel  # noqa: E402
from lava.magma.core.model.py.ports import PyInPort, PyOutPort  # noqa: E402
from lava.magma.core.model.py.type import LavaPyType  # noqa: E402
from lava.magma.core.process.ports.ports import InPort, OutPort  # noqa: E402
from lava.magma.core.process.process import AbstractProcess  # noqa: E402
from lava.magma.core.process.variable import Var  # noqa: E402
from lava.magma.core.resources import CPU  # noqa: E402
from lava.magma.core.sync.protocols.async_protocol import AsyncProtocol  # noqa: E402
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol  # noqa: E402

from neuromorph.backends.loihi2.conv import ConvGeometry, ConvOp  # noqa: E402
from neuromorph.backends.loihi2.lava.process import (  # noqa: E402
    PARAMS, STATE_TYPES, NeuronGroup, _declare, _NeuronGroupAsyncModel, _NeuronGroupLogic, _NeuronGroupModel,
)
from neuromorph.backends.loihi2.synapse import FixedConv, FixedDense, FloatDense  # noqa: E402

PRECISIONS = ("float", "fixed")
TAGS = {"float": "floating_pt", "fixed": "fixed_pt"}


# ---------------------------------------------------------------- how every lane model steps


class _Steps:
    """The two ways a model is stepped; ``_chip_step(time_step)`` (Lava counts from 1) is
    the model's own."""

    _time_step = 0  # the asynchronous models count their own steps

    def _chip_step(self, time_step: int) -> None:
        raise NotImplementedError


class _SyncModel(_Steps, PyLoihiProcessModel):
    def run_spk(self) -> None:
        self._chip_step(self.time_step)


class _AsyncModel(_Steps, PyAsyncProcessModel):
    def run_async(self) -> None:
        for _ in range(self.num_steps):
            self._time_step += 1
            self._chip_step(self._time_step)


# ---------------------------------------------------------------- the input stream


class LaneSource(AbstractProcess):
    """Plays ``[total, lanes, size]`` (a ``.npy`` file at ``path``; float64 for float,
    int32 payloads for fixed point): at chip step ``c`` it sends row ``c``, zeros after
    the last row."""

    def __init__(self, *, path: str, lanes: int, size: int, precision: str = "float",
                 name: Optional[str] = None) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"LaneSource '{name}': unknown precision '{precision}'")
        super().__init__(path=path, precision=precision, port=name or "", name=name)
        self.s_out = OutPort(shape=(int(lanes), int(size)))


class _SourceLogic:
    _dtype: Any = None

    def _setup(self, proc_params: Any) -> None:
        self._path: str = proc_params["path"]
        self._data: Optional[np.ndarray] = None
        self._zeros: Optional[np.ndarray] = None

    def _chip_step(self, time_step: int) -> None:
        if self._data is None:  # mapped on first use, inside Lava's worker process (a plain view of the map)
            self._data = np.asarray(np.load(self._path, mmap_mode="r"))
        c = time_step - 1
        if c < len(self._data):
            self.s_out.send(np.asarray(self._data[c], dtype=self._dtype))
        else:
            if self._zeros is None:
                self._zeros = np.zeros(self.s_out.shape, self._dtype)
            self.s_out.send(self._zeros)


class _FloatSource(_SourceLogic):
    """Float64 inputs."""

    _dtype = np.float64
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)


class _FixedSource(_SourceLogic):
    """Integer payloads (int32 messages)."""

    _dtype = np.int32
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)


# ---------------------------------------------------------------- a synapse process's delay line (conv.py)


class SynapseLogic:
    """The delay line and error context of a synapse model (dense or convolutional);
    ``_make`` builds its arithmetic once, inside the worker."""

    _dtype: Any = None

    def _setup(self, proc_params: Any) -> None:
        self.connection: str = proc_params["connection"]
        self.weight_exp: int = int(proc_params["weight_exp"])
        self.graded: bool = bool(proc_params["graded"])
        self.delay: int = int(proc_params["delay"])
        self.max_message: Optional[int] = proc_params.get("max_message")
        self._arith: Any = None
        self._queue: list = []

    def _chip_step(self, time_step: int) -> None:
        if not self._queue:  # the first 1 + delay messages are zeros
            self._queue = [np.zeros(self.a_out.shape, self._dtype) for _ in range(self.delay + 1)]
        self.a_out.send(self._queue.pop(0))
        s_in = self.s_in.recv()
        try:
            if self._arith is None:
                self._arith = self._make()
            self._queue.append(self._arith(s_in))
        except Exception as exc:
            raise RuntimeError(f"connection '{self.connection}', chip step {time_step - 1}: "
                               f"{type(exc).__name__}: {exc}") from None

    def _make(self) -> Any:
        raise NotImplementedError


def _model(proc: type, name: str, types: type, base: type, protocol: Any, tag_: str) -> type:
    """A concrete ProcessModel: the precision's types and arithmetic on a stepping base."""
    def __init__(self: Any, proc_params: Any) -> None:
        base.__init__(self, proc_params)
        self._setup(proc_params)

    cls = type(name, (types, base), {"__init__": __init__, "__module__": __name__,
                                     "__doc__": f"{types.__doc__ or ''} ({protocol.__name__})"})
    return implements(proc=proc, protocol=protocol)(requires(CPU)(tag(tag_)(cls)))


PyLaneSourceFloat = _model(LaneSource, "PyLaneSourceFloat", _FloatSource, _SyncModel, LoihiProtocol, "floating_pt")
PyLaneSourceFixed = _model(LaneSource, "PyLaneSourceFixed", _FixedSource, _SyncModel, LoihiProtocol, "fixed_pt")
PyLaneSourceFloatAsync = _model(LaneSource, "PyLaneSourceFloatAsync", _FloatSource, _AsyncModel, AsyncProtocol,
                                "floating_pt_async")
PyLaneSourceFixedAsync = _model(LaneSource, "PyLaneSourceFixedAsync", _FixedSource, _AsyncModel, AsyncProtocol,
                                "fixed_pt_async")
MODELS = {
    LaneSource: {("float", False): PyLaneSourceFloat, ("fixed", False): PyLaneSourceFixed,
                 ("float", True): PyLaneSourceFloatAsync, ("fixed", True): PyLaneSourceFixedAsync},
}
"""Process class -> (precision, asynchronous) -> the ProcessModel the runner maps it to."""


# ---------------------------------------------------------------- a population with its synapses


GEOMETRY = ("in_shape", "out_shape", "kernel", "stride", "padding", "dilation", "groups")
"""The fields of a ConvGeometry, as a process parameter holds them."""


def incoming(connection: str, weights: np.ndarray, *, precision: str, delay: int = 0,
             geometry: Optional[ConvGeometry] = None, weight_exp: int = 0, graded: bool = False,
             max_message: Optional[int] = None, summation: str = "dot", internal: bool = False) -> dict:
    """One incoming connection of a :class:`LaneCore`: its ``weights`` (dense ``[n_out,
    n_in]``, or with the netlist's conv ``geometry`` the kernel), float or the 8-bit
    mantissas with ``weight_exp`` (fixed point); ``graded`` (fixed point: integer payloads,
    else binary spikes) bounded by ``max_message`` (synapse.py); ``summation`` (float
    dense: "dot" as Lava's Dense, "sum" as its DelayDense); ``delay`` (extra synaptic
    delay in steps); ``internal``: a connection of the population to itself, whose spikes
    stay inside the core (no port, no message)."""
    if precision not in PRECISIONS:
        raise ValueError(f"connection '{connection}': unknown precision '{precision}'")
    if delay < 0:
        raise ValueError(f"connection '{connection}': negative delay {delay}")
    if summation not in ("dot", "sum"):
        raise ValueError(f"connection '{connection}': unknown summation {summation!r}")
    weights = np.asarray(weights)
    if geometry is not None and tuple(weights.shape) != geometry.kernel_shape:
        raise ValueError(f"connection '{connection}': kernel shape {weights.shape} is not {geometry.kernel_shape}")
    return {"connection": connection, "precision": precision, "weights": weights,
            "n_in": int(geometry.n_in if geometry is not None else weights.shape[1]), "delay": int(delay),
            "geometry": None if geometry is None else {k: getattr(geometry, k) for k in GEOMETRY},
            "weight_exp": int(weight_exp), "graded": bool(graded),
            "max_message": None if max_message is None else int(max_message), "summation": summation,
            "internal": bool(internal)}


class LaneCore(NeuronGroup):
    """A population and the synapses of its incoming connections, ``lanes`` copies side by
    side: as a Loihi 2 neuron core holds the synapses of its neurons, the process holds
    them, and the messages between processes are the spikes between cores.

    The population's arguments are ``NeuronGroup``'s (``lanes`` is required); ``synapses``:
    one :func:`incoming` per incoming connection, in the netlist's order. Connection ``i``
    receives its spikes on the port ``s_in_<i>`` (``[lanes, n_in]``; none for an internal
    one) and keeps its weights in the Var ``w_<i>``."""

    summed_input = False

    def __init__(self, *, synapses: Sequence[dict], **group: Any) -> None:
        lanes, name = group.get("lanes"), group.get("name")
        precision = group.get("precision", "float")
        params = [{k: v for k, v in syn.items() if k != "weights"} for syn in synapses]
        super().__init__(connections=params, **group)  # first: Lava's __del__ needs it
        if lanes is None:
            raise ValueError(f"LaneCore '{name}': lanes is required (NeuronGroup runs one sample at a time)")
        for syn in synapses:
            if syn["precision"] != precision:
                raise ValueError(f"LaneCore '{name}': connection '{syn['connection']}' is not {precision}")
        for i, syn in enumerate(synapses):
            if not syn["internal"]:
                setattr(self, f"s_in_{i}", InPort(shape=(int(lanes), syn["n_in"])))
            setattr(self, f"w_{i}", Var(shape=syn["weights"].shape, init=syn["weights"].copy()))


class _CoreLogic(_NeuronGroupLogic):
    """One chip step of a core: the synaptic input arriving at this step, summed from
    zeros as Lava's ``InPort`` sums the messages of several connections (in the numpy
    chip model's order: ``_arrival``); the neuron update (or nothing, outside the windows); its spikes sent;
    then the spikes every connection receives in this step, each through its synapse into
    the delay line that delivers it ``1 + delay`` steps later (Dense's and DelayDense's
    timing). A contribution that would arrive outside the population's windows is not
    computed: the population ignores its input there. Constants and buffers are made once."""

    def _setup(self, proc_params: Any) -> None:
        super()._setup(proc_params)
        self._incoming: list[dict] = list(proc_params["connections"])
        self._float = self.precision == "float"
        self._arith: Optional[list] = None
        self._lines: Optional[list] = None

    def _prepare(self) -> None:
        """Ports and buffers, once the ports exist (Lava sets them after ``__init__``)."""
        self._ports = [None if c["internal"] else getattr(self, f"s_in_{i}") for i, c in enumerate(self._incoming)]
        shape = self.s_out.shape
        self._idle = np.zeros(shape, self._dtype)  # what the population sends outside its windows
        self._a_in = np.zeros(shape, self._dtype)
        # per connection, its messages by arrival step modulo 1 + delay; the first ones are zeros
        self._lines = [[np.zeros(shape, self._dtype) for _ in range(c["delay"] + 1)] for c in self._incoming]
        self._order = sorted(range(len(self._incoming)), key=lambda i: (-self._incoming[i]["delay"], i))

    def _window(self, c: int) -> tuple[int, int]:
        """(round, step) of the population at chip step ``c``; (-1, -1) outside its windows."""
        rel = c - self.offset
        if rel < 0:
            return -1, -1
        j, k = divmod(rel, self.period)
        return (j, k) if j * self.lanes < self.samples and k < self.steps else (-1, -1)

    def _arrival(self, c: int) -> np.ndarray:
        """The synaptic input of chip step ``c``: ``0 + m_1 + m_2 + ...`` (in float, ``0.0 +
        -0.0`` is ``0.0``; in integers, an int32 sum), the messages in the order the numpy
        chip model adds them (the one sent first first: the longer delay, then the
        netlist's order). Two messages sum the same in any order; for more, Lava's own
        InPort has no fixed order (it follows its compiler's process graph)."""
        a = self._a_in
        if not self._order:
            return a
        first = self._lines[self._order[0]]
        if self._float:
            np.add(first[c % len(first)], 0.0, out=a)
        else:
            np.copyto(a, first[c % len(first)])
        for i in self._order[1:]:
            line = self._lines[i]
            np.add(a, line[c % len(line)], out=a)
        return a

    def _chip_step(self, time_step: int) -> None:
        """One chip step; Lava counts steps from 1."""
        c = time_step - 1
        if self._lines is None:
            self._prepare()
        j, k = self._window(c)
        if j < 0:
            s = self._idle
        else:
            try:
                s = self._update(self._arrival(c), j, k)
            except Exception as exc:
                # Send anyway so that no process downstream blocks on this step, and Lava's
                # runtime can stop the others; then report where it happened.
                self.s_out.send(self._idle)
                raise RuntimeError(f"population '{self.population}', chip step {c}: "
                                   f"{type(exc).__name__}: {exc}") from None
        self.s_out.send(s)
        self._synapses(c, s)
        self._report(time_step)

    def _synapses(self, c: int, own: np.ndarray) -> None:
        """Receive this step's spikes of every connection (also when they are not needed:
        the channels are drained every step) and put them through the synapses."""
        received = [own if port is None else port.recv() for port in self._ports]
        for i, x in enumerate(received):
            arrival = c + 1 + self._incoming[i]["delay"]
            if self._window(arrival)[0] < 0:
                continue
            try:
                if self._arith is None:
                    self._arith = [self._make(n) for n in range(len(self._incoming))]
                line = self._lines[i]
                line[arrival % len(line)] = self._arith[i](x)
            except Exception as exc:
                raise RuntimeError(f"connection '{self._incoming[i]['connection']}', chip step {c}: "
                                   f"{type(exc).__name__}: {exc}") from None

    def _make(self, i: int) -> Any:
        """The arithmetic of connection ``i``, from its weights Var (synapse.py, conv.py)."""
        syn, w = self._incoming[i], np.asarray(getattr(self, f"w_{i}"))
        geometry = None if syn["geometry"] is None else ConvGeometry(**syn["geometry"])
        if self._float:
            if geometry is not None:
                op = ConvOp(geometry, w.astype(np.float64))
                return lambda s_in: op.apply(np.asarray(s_in, dtype=np.float64))
            return FloatDense(w, syn["summation"])
        bound = 1 if not syn["graded"] else syn["max_message"]
        if geometry is not None:
            return FixedConv(geometry, w, syn["weight_exp"], syn["graded"], bound)
        return FixedDense(w, syn["weight_exp"], syn["graded"], bound)


_CORE_MODELS: dict[tuple, type] = {}


def core_model(precision: str, asynchronous: bool, synapses: Sequence[dict]) -> type:
    """The ProcessModel of a :class:`LaneCore` with these incoming connections (its ports
    and weight Vars are declared per connection; one class per layout, made once)."""
    ports = tuple(not syn["internal"] for syn in synapses)
    key = (precision, bool(asynchronous), ports)
    if key in _CORE_MODELS:
        return _CORE_MODELS[key]
    fixed = precision == "fixed"
    members: dict[str, Any] = {"__module__": __name__}
    for i, port in enumerate(ports):
        if port:
            members[f"s_in_{i}"] = (LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24) if fixed
                                    else LavaPyType(PyInPort.VEC_DENSE, float))
        members[f"w_{i}"] = LavaPyType(np.ndarray, np.int32, precision=8) if fixed else LavaPyType(np.ndarray, float)
    base = _NeuronGroupAsyncModel if asynchronous else _NeuronGroupModel
    protocol = AsyncProtocol if asynchronous else LoihiProtocol
    name = (f"PyLaneCore{'Fixed' if fixed else 'Float'}{'Async' if asynchronous else ''}_"
            + "".join("p" if p else "i" for p in ports))
    members["__doc__"] = (f"A LaneCore, {precision}, {protocol.__name__}; incoming connections: "
                          f"{', '.join('port' if p else 'internal' for p in ports) or 'none'}.")
    cls = type(name, (_CoreLogic, STATE_TYPES[precision], base), members)
    cls = _declare(PARAMS[precision], (lambda: LavaPyType(np.ndarray, np.int64)) if fixed
                   else (lambda: LavaPyType(np.ndarray, float)))(cls)
    cls = implements(proc=LaneCore, protocol=protocol)(requires(CPU)(tag(
        f"{TAGS[precision]}{'_async' if asynchronous else ''}")(cls)))
    _CORE_MODELS[key] = cls
    return cls
