"""``NeuronGroup``: a project-owned Lava Process for one netlist population.

Loihi 2's neurons are programmable, and Lava's process library lacks what a netlist
population needs: an adaptive threshold (ALIF), a reset to ``v_init`` that is not 0
(``LIFReset`` zeroes u and v), and a constant drive into the current ``u``. So the
population is a Lava Process of our own with two ProcessModels, numpy only (torch
inside a Lava process model can hang):

- ``floating_pt``: ``neuron_step.init_float`` / ``step_float`` (float64),
- ``fixed_pt``: ``neuron_step.init_fixed`` / ``step_fixed`` (integers, bit for bit the
  arithmetic of Lava's ``PyLifModelBitAcc`` plus our two extensions).

The arithmetic is imported from ``backends/loihi2/neuron_step.py``, which the numpy netlist
model (``backends/loihi2/chip_model.py``) also runs, so Lava and the simulator cannot drift
apart; the synapses are Lava's own ``Dense`` / ``DelayDense``.

Sample windows (chip_model.Schedule): the group runs sample ``j`` at chip steps
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

from typing import Any, Callable

import numpy as np

from neuromorph.backends.loihi2.lava.compat import import_lava

import_lava()

from lava.magma.core.decorator import implements, requires, tag  # noqa: E402
from lava.magma.core.model.py.model import PyLoihiProcessModel  # noqa: E402
from lava.magma.core.model.py.ports import PyInPort, PyOutPort  # noqa: E402
from lava.magma.core.model.py.type import LavaPyType  # noqa: E402
from lava.magma.core.process.ports.ports import InPort, OutPort  # noqa: E402
from lava.magma.core.process.process import AbstractProcess  # noqa: E402
from lava.magma.core.process.variable import Var  # noqa: E402
from lava.magma.core.resources import CPU  # noqa: E402
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
    window schedule. ``record_spikes`` / ``record_v``: paths of existing float64 ``.npy``
    files of shape ``[N * T, size]`` that receive the spikes / membrane of each window step.
    ``status`` / ``status_row``: an existing int64 ``.npy`` file ``[groups, 2]`` and this
    group's row, receiving ``(time step, spike count)`` after every step.
    """

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
        record_spikes: str | None = None,
        record_v: str | None = None,
        status: str | None = None,
        status_row: int = 0,
        name: str | None = None,
    ) -> None:
        if precision not in PARAMS:
            raise ValueError(f"NeuronGroup '{name}': unknown precision '{precision}'")
        if reset not in ("value", "subtract"):
            raise ValueError(f"NeuronGroup '{name}': unknown reset mode {reset!r}")
        missing = [k for k in PARAMS[precision] if k not in params]
        if missing:
            raise ValueError(f"NeuronGroup '{name}': missing {precision} parameters {missing}")
        super().__init__(
            size=size, precision=precision, spiking=spiking, reset=reset, offset=offset, steps=steps,
            period=period, samples=samples, record_spikes=record_spikes, record_v=record_v,
            status=status, status_row=int(status_row), population=name or "", name=name,
        )
        shape = (size,)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        for key in PARAMS[precision]:
            setattr(self, key, Var(shape=shape, init=np.broadcast_to(np.asarray(params[key]), shape).copy()))
        self.u = Var(shape=shape, init=0)
        self.v = Var(shape=shape, init=0)
        self.a = Var(shape=shape, init=0)
        self.spike_count = Var(shape=(1,), init=0)


class _NeuronGroupModel(PyLoihiProcessModel):
    """Window schedule, recording and error context; subclasses pick the arithmetic."""

    params: tuple[str, ...] = ()
    init: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
    step: Callable[..., np.ndarray]

    def __init__(self, proc_params: Any) -> None:
        super().__init__(proc_params)
        self.population: str = proc_params["population"]
        self.spiking: bool = bool(proc_params["spiking"])
        self.subtract: bool = proc_params["reset"] == "subtract"
        self.offset: int = int(proc_params["offset"])
        self.steps: int = int(proc_params["steps"])
        self.period: int = int(proc_params["period"])
        self.samples: int = int(proc_params["samples"])
        self._paths = {"spikes": proc_params["record_spikes"], "v": proc_params["record_v"]}
        self._records: dict[str, np.ndarray] = {}
        self._status_path: str | None = proc_params["status"]
        self._status_row: int = int(proc_params["status_row"])
        self._status: np.ndarray | None = None

    def run_spk(self) -> None:
        a_in = self.a_in.recv()  # drain the channel every step, also when idle
        rel = self.time_step - 1 - self.offset  # Lava counts steps from 1
        j, k = divmod(rel, self.period)
        if rel < 0 or j >= self.samples or k >= self.steps:
            self.s_out.send(np.zeros_like(self.v))
            self._report()
            return
        try:
            s = self._update(a_in, k)
            row = j * self.steps + k
            self._record("spikes", row, s)
            self._record("v", row, self.v)
        except Exception as exc:
            # Send anyway so that no process downstream blocks on this step, and Lava's
            # runtime can stop the others; then report where it happened.
            self.s_out.send(np.zeros_like(self.v))
            raise RuntimeError(f"population '{self.population}', chip step {self.time_step - 1}: "
                               f"{type(exc).__name__}: {exc}") from None
        self.s_out.send(s)
        self._report()

    def _report(self) -> None:
        """(time step, spike count) into this group's row of the status file."""
        if self._status_path is None:
            return
        if self._status is None:  # mapped on first use, inside Lava's worker process
            self._status = np.load(self._status_path, mmap_mode="r+")[self._status_row]
        self._status[1] = self.spike_count[0]
        self._status[0] = self.time_step  # last: a step the host sees has its count

    def _update(self, a_in: np.ndarray, k: int) -> np.ndarray:
        params = {key: getattr(self, key) for key in self.params}
        state = type(self).init(params) if k == 0 else {"u": self.u, "v": self.v, "a": self.a}
        s = type(self).step(params, state, a_in, self.spiking, self.subtract)
        self.u[:] = state["u"]
        self.v[:] = state["v"]
        self.a[:] = state["a"]
        self.spike_count[0] += np.count_nonzero(s)
        return s

    def _record(self, signal: str, row: int, value: np.ndarray) -> None:
        path = self._paths[signal]
        if path is None:
            return
        if signal not in self._records:  # mapped on first use, inside Lava's worker process
            self._records[signal] = np.load(path, mmap_mode="r+")
        self._records[signal][row] = value


def _declare(names: tuple[str, ...], lava_type: Callable[[], LavaPyType]) -> Callable[[type], type]:
    """Class decorator: a LavaPyType for each parameter Var (and the list of names)."""
    def apply(cls: type) -> type:
        for key in names:
            setattr(cls, key, lava_type())
        cls.params = names
        return cls
    return apply


@implements(proc=NeuronGroup, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
@_declare(FLOAT_PARAMS, lambda: LavaPyType(np.ndarray, float))
class PyNeuronGroupFloat(_NeuronGroupModel):
    """Float64 arithmetic: ``neuron_step.init_float`` / ``step_float``."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    u: np.ndarray = LavaPyType(np.ndarray, float)
    v: np.ndarray = LavaPyType(np.ndarray, float)
    a: np.ndarray = LavaPyType(np.ndarray, float)
    spike_count: np.ndarray = LavaPyType(np.ndarray, np.int64)

    init = staticmethod(neuron_step.init_float)
    step = staticmethod(neuron_step.step_float)


@implements(proc=NeuronGroup, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
@_declare(PARAMS["fixed"], lambda: LavaPyType(np.ndarray, np.int64))
class PyNeuronGroupFixed(_NeuronGroupModel):
    """Integer arithmetic: ``neuron_step.init_fixed`` / ``step_fixed`` (24-bit u, v, a;
    the synaptic input arrives as the int32 sum of the Dense outputs)."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    u: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    a: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    spike_count: np.ndarray = LavaPyType(np.ndarray, np.int64)

    init = staticmethod(neuron_step.init_fixed)
    step = staticmethod(neuron_step.step_fixed)
