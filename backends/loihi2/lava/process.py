"""``NeuronGroup``: a project-owned Lava Process for one netlist population.

Loihi 2's neurons are programmable, and Lava's process library lacks what a netlist
population needs: an adaptive threshold (ALIF), a reset to ``v_init`` that is not 0
(``LIFReset`` zeroes u and v), and a constant drive into the current ``u``. So the
population is a Lava Process of our own with ProcessModels for each precision, numpy
only (torch inside a Lava process model can hang):

- ``floating_pt``: ``neuron_step.FloatNeurons`` (float64),
- ``fixed_pt``: ``neuron_step.FixedNeurons`` (integers, bit for bit the arithmetic of
  Lava's ``PyLifModelBitAcc`` plus our two extensions),

each in a synchronous (``LoihiProtocol``: Lava's runtime service steps every process)
and an asynchronous (``AsyncProtocol``: a ``RunSteps`` is one command, the steps follow
each other as the messages arrive) variant; the runner picks the model (``MODELS``).
The update is made once from the parameter Vars, inside the worker, at the first step.

The arithmetic is imported from ``backends/loihi2/neuron_step.py``, which the numpy netlist
model (``backends/loihi2/chip_model.py``) also runs, so Lava and the simulator cannot drift
apart; the synapses are Lava's own ``Dense`` / ``DelayDense`` (one sample at a time), or,
in the lane plan, held by the population's own process (``lanes.LaneCore``, a
``NeuronGroup`` without the summed input port ``a_in``).

Lanes (``lanes=B``): B copies of the population side by side, as B copies of the network
on spare cores of the chip would run; ports and state are ``[B, size]``, and lane ``b``
runs samples ``b, b + B, ...`` in the same windows.

Sample windows (chip_model.Schedule): the group runs its ``j``-th sample (round ``j``) at chip steps
``[j*P + offset, j*P + offset + T)``, resets its state with ``init`` at the first of those
steps, and is idle in every other step (no update; it sends zeros). Lava numbers its
time steps from 1, the simulator's chip steps from 0: ``c = time_step - 1``.

What a group records, inside its windows only: its number of spikes (the Var
``spike_count``) and, on request, its spikes and its membrane (shifted coordinates;
integers in fixed point) for every window step, into ``[N * T, size]`` float64 ``.npy``
files that the host reads after the run (``record_spikes`` / ``record_v`` are their
paths). Reading a Var back through Lava (``Var.get()``, and so Lava's ``Monitor``) sends
one message per element, about 30 us each: longer than the run itself for a hidden
layer, hence the files.

Progress: with ``status`` (the path of an int64 ``.npy`` file of shape ``[groups, 2]``)
the group writes, after every time step, ``(time step, spike count)`` into row
``status_row``. The host reads the time steps while the run is in progress (a run whose
steps stop advancing is stuck: the runner's stall watchdog) and the spike counts at the
end, without a message to Lava's runtime (which a stuck worker would never answer).

Note: Lava finds ProcessModels by executing every module of this package as a top-level
module; every module here must therefore import cleanly on its own (absolute imports,
no dataclasses with postponed annotations).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

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

from neuromorph.backends.loihi2 import neuron_step  # noqa: E402

FLOAT_PARAMS = neuron_step.FLOAT_PARAMS
PARAMS: dict[str, tuple[str, ...]] = {"float": FLOAT_PARAMS, "fixed": tuple(neuron_step.FIXED_PARAMS)}
"""Per-neuron parameter Vars of each precision (fixed: quantize's integer parameters)."""


class NeuronGroup(AbstractProcess):
    """A population of programmable Loihi 2 neurons running in sample windows.

    ``params``: ``{name: [size] array}`` for every name in ``PARAMS[precision]`` (the
    float netlist's values, or a QuantizedNetlist's integer ones). ``spiking``: False for
    LI (no threshold). ``reset``: the population's reset mode, ``"value"`` (v = 0) or
    ``"subtract"`` (v minus the threshold of the test; neuron_step). ``offset``, ``steps`` (T), ``period`` (P), ``samples`` (N): the
    window schedule. ``lanes``: None for one sample at a time (ports ``[size]``, as
    Lava's Dense takes them), or B: B copies of the population side by side (ports,
    state ``[B, size]``), lane ``b`` running samples ``b, b + B, b + 2B, ...`` in the
    same windows (round ``j`` of a lane is its ``j``-th sample). ``record_spikes`` / ``record_v``: paths of existing float64 ``.npy``
    files of shape ``[N * T, size]`` that receive the spikes / membrane of each window step.
    ``status`` / ``status_row``: an existing int64 ``.npy`` file ``[groups, 2]`` and this
    group's row, receiving ``(time step, spike count)`` after every step.
    ``more``: further process parameters, for subclasses (lanes.LaneCore).
    """

    summed_input = True
    """An ``a_in`` port receiving the sum of the synapse processes' messages (a subclass
    that holds its synapses itself, lanes.LaneCore, has none)."""

    def __init__(
        self,
        *,
        size: int,
        params: dict[str, np.ndarray],
        precision: str = "float",
        spiking: bool,
        reset: str = "value",
        offset: int,
        steps: int,
        period: int,
        samples: int,
        lanes: Optional[int] = None,
        record_spikes: Optional[str] = None,
        record_v: Optional[str] = None,
        status: Optional[str] = None,
        status_row: int = 0,
        name: Optional[str] = None,
        **more: Any,
    ) -> None:
        if precision not in PARAMS:
            raise ValueError(f"NeuronGroup '{name}': unknown precision '{precision}'")
        if reset not in ("value", "subtract"):
            raise ValueError(f"NeuronGroup '{name}': unknown reset mode {reset!r}")
        if lanes is not None and int(lanes) < 1:
            raise ValueError(f"NeuronGroup '{name}': lanes must be at least 1, got {lanes}")
        missing = [k for k in PARAMS[precision] if k not in params]
        if missing:
            raise ValueError(f"NeuronGroup '{name}': missing {precision} parameters {missing}")
        super().__init__(
            size=size, precision=precision, spiking=spiking, reset=reset, offset=offset, steps=steps,
            period=period, samples=samples, lanes=None if lanes is None else int(lanes),
            record_spikes=record_spikes, record_v=record_v,
            status=status, status_row=int(status_row), population=name or "", name=name, **more,
        )
        shape = (size,) if lanes is None else (int(lanes), size)
        if self.summed_input:
            self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        for key in PARAMS[precision]:
            setattr(self, key, Var(shape=(size,), init=np.broadcast_to(np.asarray(params[key]), (size,)).copy()))
        self.u = Var(shape=shape, init=0)
        self.v = Var(shape=shape, init=0)
        self.a = Var(shape=shape, init=0)
        self.spike_count = Var(shape=(1,), init=0)


class _NeuronGroupLogic:
    """Window schedule, lanes, recording and error context (no Lava base class: the
    synchronous and the asynchronous models below share it); ``precision`` picks the
    arithmetic (neuron_step.NEURONS)."""

    precision: str = ""
    params: tuple[str, ...] = ()
    _dtype: Any = None
    step: Callable[..., np.ndarray]

    def _setup(self, proc_params: Any) -> None:
        self.population: str = proc_params["population"]
        self.spiking: bool = bool(proc_params["spiking"])
        self.subtract: bool = proc_params["reset"] == "subtract"
        self.offset: int = int(proc_params["offset"])
        self.steps: int = int(proc_params["steps"])
        self.period: int = int(proc_params["period"])
        self.samples: int = int(proc_params["samples"])
        lanes = proc_params["lanes"]
        self.lanes: int = 1 if lanes is None else int(lanes)
        self.lane_axis: bool = lanes is not None  # ports [B, size]; else [size]
        self._paths = {"spikes": proc_params["record_spikes"], "v": proc_params["record_v"]}
        self._records: dict[str, np.ndarray] = {}
        self._status_path: Optional[str] = proc_params["status"]
        self._status_row: int = int(proc_params["status_row"])
        self._status: Optional[np.ndarray] = None
        self._neurons: Any = None
        self._state: dict[str, np.ndarray] = {}
        self._count = 0

    def _chip_step(self, time_step: int) -> None:
        """One chip step; Lava counts steps from 1."""
        a_in = self.a_in.recv()  # drain the channel every step, also when idle
        rel = time_step - 1 - self.offset
        j, k = divmod(rel, self.period)
        if rel < 0 or j * self.lanes >= self.samples or k >= self.steps:
            self.s_out.send(np.zeros(self.s_out.shape, self._dtype))
            self._report(time_step)
            return
        try:
            s = self._update(a_in if self.lane_axis else a_in[None], j, k)
            out = s if self.lane_axis else s[0]
        except Exception as exc:
            # Send anyway so that no process downstream blocks on this step, and Lava's
            # runtime can stop the others; then report where it happened.
            self.s_out.send(np.zeros(self.s_out.shape, self._dtype))
            raise RuntimeError(f"population '{self.population}', chip step {time_step - 1}: "
                               f"{type(exc).__name__}: {exc}") from None
        self.s_out.send(out)
        self._report(time_step)

    def _report(self, time_step: int) -> None:
        """(time step, spike count) into this group's row of the status file."""
        if self._status_path is None:
            return
        if self._status is None:  # mapped on first use, inside Lava's worker process
            # (a plain view of the map: writing through it costs less than through a memmap)
            self._status = np.asarray(np.load(self._status_path, mmap_mode="r+"))[self._status_row]
        self._status[1] = self._count
        self._status[0] = time_step  # last: a step the host sees has its count

    def _update(self, a_in: np.ndarray, j: int, k: int) -> np.ndarray:
        """Round ``j``, step ``k`` of every lane: ``[lanes, size]`` in and out."""
        if self._neurons is None:  # made once, inside Lava's worker process
            params = {key: np.asarray(getattr(self, key)) for key in self.params}
            self._neurons = neuron_step.NEURONS[self.precision](params, self.spiking, self.subtract)
        if k == 0:
            self._state = self._neurons.init(self.lanes)
        s = type(self).step(self._neurons, self._state, a_in)
        valid = min(self.lanes, self.samples - j * self.lanes)  # the last round may leave lanes idle
        self._count += int(np.count_nonzero(s[:valid]))
        self.spike_count[0] = self._count
        self._record("spikes", j, k, s, valid)
        self._record("v", j, k, self._state["v"], valid)
        return s

    def _record(self, signal: str, j: int, k: int, value: np.ndarray, valid: int) -> None:
        path = self._paths[signal]
        if path is None:
            return
        if signal not in self._records:  # mapped on first use, inside Lava's worker process
            self._records[signal] = np.asarray(np.load(path, mmap_mode="r+")).reshape(self.samples, self.steps, -1)
        first = j * self.lanes
        self._records[signal][first:first + valid, k] = value[:valid]

    def _final_state(self) -> None:
        """The state into the Vars u, v, a (for Lava's Var.get after a run)."""
        for key in ("u", "v", "a"):
            if key in self._state:
                getattr(self, key)[:] = self._state[key] if self.lane_axis else self._state[key][0]


class _NeuronGroupModel(_NeuronGroupLogic, PyLoihiProcessModel):
    """Synchronous (LoihiProtocol): Lava's runtime steps the group."""

    def __init__(self, proc_params: Any) -> None:
        PyLoihiProcessModel.__init__(self, proc_params)
        self._setup(proc_params)

    def run_spk(self) -> None:
        self._chip_step(self.time_step)
        self._final_state()  # Var.get between steps sees the state, as with Lava's own LIF


class _NeuronGroupAsyncModel(_NeuronGroupLogic, PyAsyncProcessModel):
    """Asynchronous (AsyncProtocol): the group runs the steps of a RunSteps in one call,
    with no per-step exchange with Lava's runtime; the blocking reads of its input port
    keep it in step with the processes that send to it (the same messages, in the same
    order, as the synchronous model)."""

    def __init__(self, proc_params: Any) -> None:
        PyAsyncProcessModel.__init__(self, proc_params)
        self._setup(proc_params)
        self._time_step = 0

    def run_async(self) -> None:
        for _ in range(self.num_steps):
            self._time_step += 1
            self._chip_step(self._time_step)
        self._final_state()


def _declare(names: tuple[str, ...], lava_type: Callable[[], LavaPyType]) -> Callable[[type], type]:
    """Class decorator: a LavaPyType for each parameter Var (and the list of names)."""
    def apply(cls: type) -> type:
        for key in names:
            setattr(cls, key, lava_type())
        cls.params = names
        return cls
    return apply


class _FloatState:
    """Float64 arithmetic: ``neuron_step.FloatNeurons`` (the types of everything but the
    input port)."""

    precision = "float"
    _dtype = np.float64
    step = staticmethod(neuron_step.FloatNeurons.step)  # (neurons, state, a_in) -> spikes
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    u: np.ndarray = LavaPyType(np.ndarray, float)
    v: np.ndarray = LavaPyType(np.ndarray, float)
    a: np.ndarray = LavaPyType(np.ndarray, float)
    spike_count: np.ndarray = LavaPyType(np.ndarray, np.int64)


class _FixedState:
    """Integer arithmetic: ``neuron_step.FixedNeurons`` (24-bit u, v, a; the synaptic
    input arrives as the int32 sum of the Dense outputs); the types of everything but
    the input port."""

    precision = "fixed"
    _dtype = np.int32
    step = staticmethod(neuron_step.FixedNeurons.step)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    u: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    a: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    spike_count: np.ndarray = LavaPyType(np.ndarray, np.int64)


class _FloatTypes(_FloatState):
    """Float64 arithmetic, the synaptic input summed into ``a_in``."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)


class _FixedTypes(_FixedState):
    """Integer arithmetic, the synaptic input summed into ``a_in``."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)


STATE_TYPES = {"float": _FloatState, "fixed": _FixedState}
"""precision -> the types and arithmetic of a group without its input port."""


@implements(proc=NeuronGroup, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
@_declare(FLOAT_PARAMS, lambda: LavaPyType(np.ndarray, float))
class PyNeuronGroupFloat(_FloatTypes, _NeuronGroupModel):
    """Float64, synchronous."""


@implements(proc=NeuronGroup, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
@_declare(PARAMS["fixed"], lambda: LavaPyType(np.ndarray, np.int64))
class PyNeuronGroupFixed(_FixedTypes, _NeuronGroupModel):
    """Integers, synchronous."""


@implements(proc=NeuronGroup, protocol=AsyncProtocol)
@requires(CPU)
@tag("floating_pt_async")
@_declare(FLOAT_PARAMS, lambda: LavaPyType(np.ndarray, float))
class PyNeuronGroupFloatAsync(_FloatTypes, _NeuronGroupAsyncModel):
    """Float64, asynchronous."""


@implements(proc=NeuronGroup, protocol=AsyncProtocol)
@requires(CPU)
@tag("fixed_pt_async")
@_declare(PARAMS["fixed"], lambda: LavaPyType(np.ndarray, np.int64))
class PyNeuronGroupFixedAsync(_FixedTypes, _NeuronGroupAsyncModel):
    """Integers, asynchronous."""


MODELS = {("float", False): PyNeuronGroupFloat, ("fixed", False): PyNeuronGroupFixed,
          ("float", True): PyNeuronGroupFloatAsync, ("fixed", True): PyNeuronGroupFixedAsync}
"""(precision, asynchronous) -> the ProcessModel the runner maps a NeuronGroup to."""
