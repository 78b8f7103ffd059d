"""Lava processes of the lane plan: B samples side by side in one Lava network.

Loihi 2 has 128 neuron cores per chip and a small network uses a few of them; B copies
of the network on spare cores run B samples at once. The lane plan is that, simulated:
every process holds B copies of its part of the network side by side (``[B, n]`` ports
and state; lane ``b`` is copy ``b``), and every chip step is still the Lava processes
exchanging one message per connection (each message carries the B lanes of that
connection). What a lane computes is bit for bit what the same sample computes alone:

- ``LaneSource`` plays the chip-time input stream of the lanes (``[total, B, size]``,
  from a ``.npy`` file: float inputs, or the integer payloads of fixed point), one
  ``[B, size]`` message per step, as Lava's ``RingBuffer`` plays one lane;
- ``LaneDense`` is a dense synapse holding one weight matrix, applied to each lane's
  input with exactly the arithmetic of Lava's ``Dense`` (float: ``weights.dot(s_in)``, a
  gemv per lane; or ``DelayDense``'s ``np.sum(weights * s_in, axis=1)`` when it has a
  delay; fixed point: ``PyDenseModelBitAcc``'s integers), from ``backends/loihi2/synapse.py``,
  with Dense's timing: what arrives at step ``c`` goes out at ``c + 1 + delay``;
- the neuron groups (``process.NeuronGroup(lanes=B)``) and convolutional synapses
  (``conv.ConvSynapse(lanes=B)``) take the same ``lanes`` argument.

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
itself (``MODELS``).

Note: Lava finds ProcessModels by executing every module of this package as a top-level
module; this one must therefore import cleanly on its own (absolute imports, no
dataclasses with postponed annotations).
"""
from typing import Any, Optional

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

from neuromorph.backends.loihi2.synapse import FixedDense, FloatDense  # noqa: E402

PRECISIONS = ("float", "fixed")


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

    def _chip_step(self, time_step: int) -> None:
        if self._data is None:  # mapped on first use, inside Lava's worker process
            self._data = np.load(self._path, mmap_mode="r")
        c = time_step - 1
        if c < len(self._data):
            self.s_out.send(np.asarray(self._data[c], dtype=self._dtype))
        else:
            self.s_out.send(np.zeros(self.s_out.shape, self._dtype))


class _FloatSource(_SourceLogic):
    """Float64 inputs."""

    _dtype = np.float64
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)


class _FixedSource(_SourceLogic):
    """Integer payloads (int32 messages)."""

    _dtype = np.int32
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)


# ---------------------------------------------------------------- the dense synapse


class LaneDense(AbstractProcess):
    """A dense synapse for ``lanes`` copies side by side: ``s_in`` ``[lanes, n_in]`` ->
    ``a_out`` ``[lanes, n_out]``, one ``weights`` matrix ``[n_out, n_in]`` for every lane.

    Float: ``weights`` in float64, ``summation`` "dot" (Lava's Dense) or "sum" (Lava's
    DelayDense). Fixed: ``weights`` the 8-bit mantissas, ``weight_exp``, ``graded``
    (integer payloads; else binary spikes) and ``max_message`` (the payload limit; see
    synapse.py). ``delay``: extra synaptic delay in steps."""

    def __init__(self, *, weights: np.ndarray, lanes: int, precision: str = "float", weight_exp: int = 0,
                 graded: bool = False, max_message: Optional[int] = None, delay: int = 0,
                 summation: str = "dot", name: Optional[str] = None) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"LaneDense '{name}': unknown precision '{precision}'")
        if delay < 0:
            raise ValueError(f"LaneDense '{name}': negative delay {delay}")
        n_out, n_in = np.shape(weights)
        super().__init__(precision=precision, weight_exp=int(weight_exp), graded=bool(graded),
                         max_message=None if max_message is None else int(max_message), delay=int(delay),
                         summation=summation, connection=name or "", name=name)
        self.s_in = InPort(shape=(int(lanes), n_in))
        self.a_out = OutPort(shape=(int(lanes), n_out))
        self.weights = Var(shape=(n_out, n_in), init=np.asarray(weights).copy())


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


class _FloatDenseTypes(SynapseLogic):
    """Float64: ``synapse.FloatDense``."""

    _dtype = np.float64
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    weights: np.ndarray = LavaPyType(np.ndarray, float)

    def _setup(self, proc_params: Any) -> None:
        super()._setup(proc_params)
        self.summation: str = proc_params["summation"]

    def _make(self) -> Any:
        return FloatDense(np.asarray(self.weights), self.summation)


class _FixedDenseTypes(SynapseLogic):
    """Integers: ``synapse.FixedDense`` (Lava's PyDenseModelBitAcc)."""

    _dtype = np.int32
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    weights: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)

    def _make(self) -> Any:
        return FixedDense(np.asarray(self.weights), self.weight_exp, self.graded,
                          1 if not self.graded else self.max_message)


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
PyLaneDenseFloat = _model(LaneDense, "PyLaneDenseFloat", _FloatDenseTypes, _SyncModel, LoihiProtocol, "floating_pt")
PyLaneDenseFixed = _model(LaneDense, "PyLaneDenseFixed", _FixedDenseTypes, _SyncModel, LoihiProtocol, "fixed_pt")
PyLaneDenseFloatAsync = _model(LaneDense, "PyLaneDenseFloatAsync", _FloatDenseTypes, _AsyncModel, AsyncProtocol,
                               "floating_pt_async")
PyLaneDenseFixedAsync = _model(LaneDense, "PyLaneDenseFixedAsync", _FixedDenseTypes, _AsyncModel, AsyncProtocol,
                               "fixed_pt_async")

MODELS = {
    LaneSource: {("float", False): PyLaneSourceFloat, ("fixed", False): PyLaneSourceFixed,
                 ("float", True): PyLaneSourceFloatAsync, ("fixed", True): PyLaneSourceFixedAsync},
    LaneDense: {("float", False): PyLaneDenseFloat, ("fixed", False): PyLaneDenseFixed,
                ("float", True): PyLaneDenseFloatAsync, ("fixed", True): PyLaneDenseFixedAsync},
}
"""Process class -> (precision, asynchronous) -> the ProcessModel the runner maps it to."""
