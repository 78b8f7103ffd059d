"""``ConvSynapse``: a project-owned Lava Process for one convolutional netlist connection.

Why not Lava's own ``lava.proc.conv.process.Conv`` (0.10.0, read in its source and
checked by tests/test_conv_deploy.py): its fixed-point CPU model ignores ``weight_exp``
and ``num_weight_bits`` (``utils.conv(s_in, weight, ...)`` with the raw weights, then a
24-bit wrap), so it cannot carry the per-connection exponent of Loihi 2's 8-bit weight
format that every dense connection here has; its float model sums in scipy's
``convolve2d`` order, not the order of the numpy chip model, so float runs could differ
by rounding where a membrane sits on its threshold; it computes a true convolution
(flipped kernel) on (W, H, C) tensors where the IR and the netlist are torch-style
cross-correlations on flat channel-major vectors; it is 2-d only (the IR has Conv1d);
it has no synaptic delay; and its first message is ``np.zeros_like(a_out.shape)``.

So a convolutional connection is this process, with a ``floating_pt`` and a ``fixed_pt``
model that both run ``backends/loihi2/conv.py`` (numpy only), the arithmetic the numpy
chip model runs too:

- ``floating_pt``: ``a_out = ConvOp(kernel).apply(s_in)`` (float64);
- ``fixed_pt``: ``a_out = conv_fixed(ConvOp(mantissas), weight_exp, s_in, graded)``
  (int64 sum, exponent shift, int32 message), as Lava's Dense does with a matrix.

Timing is Dense's and DelayDense's: what arrives at chip step ``c`` goes out at step
``c + 1 + delay`` (the first ``1 + delay`` messages are zeros).

Note: Lava finds ProcessModels by executing every module of this package as a top-level
module; this one must therefore import cleanly on its own (absolute imports, no
dataclasses with postponed annotations).
"""
from typing import Any, Optional

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

from neuromorph.backends.loihi2.conv import ConvGeometry, ConvOp, conv_fixed  # noqa: E402


class ConvSynapse(AbstractProcess):
    """A convolutional synapse between flat ports: ``s_in`` [n_in] -> ``a_out`` [n_out].

    ``kernel``: ``[C_out, C_in/groups, *K]`` (float weights, or integer mantissas for
    ``precision="fixed"``); ``geometry``: the netlist's ``ConvGeometry``; ``weight_exp``:
    the fixed-point exponent; ``graded``: fixed point only, inputs are integer payloads
    (else binary spikes, ``s_in != 0``); ``delay``: extra synaptic delay in steps.
    """

    def __init__(self, *, kernel: np.ndarray, geometry: ConvGeometry, precision: str = "float",
                 weight_exp: int = 0, graded: bool = False, delay: int = 0,
                 name: Optional[str] = None) -> None:
        if precision not in ("float", "fixed"):
            raise ValueError(f"ConvSynapse '{name}': unknown precision '{precision}'")
        if tuple(np.shape(kernel)) != geometry.kernel_shape:
            raise ValueError(f"ConvSynapse '{name}': kernel shape {np.shape(kernel)} is not "
                             f"{geometry.kernel_shape}")
        if delay < 0:
            raise ValueError(f"ConvSynapse '{name}': negative delay {delay}")
        geom = {k: getattr(geometry, k) for k in ("in_shape", "out_shape", "kernel", "stride", "padding",
                                                  "dilation", "groups")}
        super().__init__(geometry=geom, precision=precision, weight_exp=int(weight_exp), graded=bool(graded),
                         delay=int(delay), connection=name or "", name=name)
        self.s_in = InPort(shape=(geometry.n_in,))
        self.a_out = OutPort(shape=(geometry.n_out,))
        self.weight = Var(shape=geometry.kernel_shape, init=np.asarray(kernel).copy())


class _ConvSynapseModel(PyLoihiProcessModel):
    """The delay line and error context; subclasses pick the arithmetic."""

    def __init__(self, proc_params: Any) -> None:
        super().__init__(proc_params)
        self.geometry = ConvGeometry(**proc_params["geometry"])
        self.connection: str = proc_params["connection"]
        self.weight_exp: int = int(proc_params["weight_exp"])
        self.graded: bool = bool(proc_params["graded"])
        self.delay: int = int(proc_params["delay"])
        self._op: Optional[ConvOp] = None
        self._queue: list = []

    def run_spk(self) -> None:
        if not self._queue:  # the first 1 + delay messages are zeros
            self._queue = [self._zeros() for _ in range(self.delay + 1)]
        self.a_out.send(self._queue.pop(0))
        s_in = self.s_in.recv()
        try:
            self._queue.append(self._step(s_in))
        except Exception as exc:
            raise RuntimeError(f"connection '{self.connection}', chip step {self.time_step - 1}: "
                               f"{type(exc).__name__}: {exc}") from None

    def _op_of(self, dtype: Any) -> ConvOp:
        if self._op is None:  # built inside Lava's worker process, once
            self._op = ConvOp(self.geometry, np.asarray(self.weight).astype(dtype))
        return self._op

    def _zeros(self) -> np.ndarray:
        raise NotImplementedError

    def _step(self, s_in: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@implements(proc=ConvSynapse, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyConvSynapseFloat(_ConvSynapseModel):
    """Float64: ``ConvOp.apply`` (backends/loihi2/conv.py)."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    weight: np.ndarray = LavaPyType(np.ndarray, float)

    def _zeros(self) -> np.ndarray:
        return np.zeros(self.geometry.n_out)

    def _step(self, s_in: np.ndarray) -> np.ndarray:
        return self._op_of(np.float64).apply(np.asarray(s_in, dtype=np.float64))


@implements(proc=ConvSynapse, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyConvSynapseFixed(_ConvSynapseModel):
    """Integers: ``conv_fixed`` (backends/loihi2/conv.py): 8-bit mantissas, the
    connection's weight exponent, int32 messages."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    weight: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)

    def _zeros(self) -> np.ndarray:
        return np.zeros(self.geometry.n_out, np.int32)

    def _step(self, s_in: np.ndarray) -> np.ndarray:
        return conv_fixed(self._op_of(np.int64), self.weight_exp, s_in, self.graded)
