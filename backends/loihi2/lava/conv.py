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
model that both run ``backends/loihi2/conv.py`` / ``synapse.py`` (numpy only), the
arithmetic the numpy chip model runs too:

- ``floating_pt``: ``a_out = ConvOp(kernel).apply(s_in)`` (float64);
- ``fixed_pt``: ``a_out = FixedConv(mantissas, weight_exp, graded)(s_in)`` (the sums of
  ``conv.conv_fixed``: int64, exponent shift, int32 message), as Lava's Dense does with
  a matrix;

each synchronous and asynchronous, for one sample or for lanes (``lanes=B``: ``[B, n]``
ports; lanes.py says what the lane plan and the asynchronous models are).

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
from lava.magma.core.model.py.ports import PyInPort, PyOutPort  # noqa: E402
from lava.magma.core.model.py.type import LavaPyType  # noqa: E402
from lava.magma.core.process.ports.ports import InPort, OutPort  # noqa: E402
from lava.magma.core.process.process import AbstractProcess  # noqa: E402
from lava.magma.core.process.variable import Var  # noqa: E402
from lava.magma.core.resources import CPU  # noqa: E402
from lava.magma.core.sync.protocols.async_protocol import AsyncProtocol  # noqa: E402
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol  # noqa: E402

from neuromorph.backends.loihi2.conv import ConvGeometry, ConvOp  # noqa: E402
from neuromorph.backends.loihi2.lava.lanes import SynapseLogic, _AsyncModel, _SyncModel  # noqa: E402
from neuromorph.backends.loihi2.synapse import FixedConv  # noqa: E402


class ConvSynapse(AbstractProcess):
    """A convolutional synapse between flat ports: ``s_in`` [n_in] -> ``a_out`` [n_out]
    (with ``lanes=B``: ``[B, n_in]`` -> ``[B, n_out]``, the same kernel for every lane).

    ``kernel``: ``[C_out, C_in/groups, *K]`` (float weights, or integer mantissas for
    ``precision="fixed"``); ``geometry``: the netlist's ``ConvGeometry``; ``weight_exp``:
    the fixed-point exponent; ``graded``: fixed point only, inputs are integer payloads
    (else binary spikes, ``s_in != 0``); ``max_message``: the payloads' limit (synapse.py;
    None: int64 sums); ``delay``: extra synaptic delay in steps.
    """

    def __init__(self, *, kernel: np.ndarray, geometry: ConvGeometry, precision: str = "float",
                 weight_exp: int = 0, graded: bool = False, max_message: Optional[int] = None,
                 delay: int = 0, lanes: Optional[int] = None, name: Optional[str] = None) -> None:
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
                         max_message=None if max_message is None else int(max_message),
                         delay=int(delay), connection=name or "", name=name)
        lead = () if lanes is None else (int(lanes),)
        self.s_in = InPort(shape=(*lead, geometry.n_in))
        self.a_out = OutPort(shape=(*lead, geometry.n_out))
        self.weight = Var(shape=geometry.kernel_shape, init=np.asarray(kernel).copy())


class _ConvLogic(SynapseLogic):
    """The delay line and error context (lanes.SynapseLogic), a convolution's geometry."""

    def _setup(self, proc_params: Any) -> None:
        super()._setup(proc_params)
        self.geometry = ConvGeometry(**proc_params["geometry"])


class _FloatConvTypes(_ConvLogic):
    """Float64: ``ConvOp.apply`` (backends/loihi2/conv.py)."""

    _dtype = np.float64
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    weight: np.ndarray = LavaPyType(np.ndarray, float)

    def _make(self) -> Any:
        op = ConvOp(self.geometry, np.asarray(self.weight).astype(np.float64))
        return lambda s_in: op.apply(np.asarray(s_in, dtype=np.float64))


class _FixedConvTypes(_ConvLogic):
    """Integers: ``synapse.FixedConv`` (as ``conv.conv_fixed``): 8-bit mantissas, the
    connection's weight exponent, int32 messages."""

    _dtype = np.int32
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    weight: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)

    def _make(self) -> Any:
        return FixedConv(self.geometry, np.asarray(self.weight), self.weight_exp, self.graded,
                         1 if not self.graded else self.max_message)


def _model(name: str, types: type, base: type, protocol: Any, tag_: str) -> type:
    def __init__(self: Any, proc_params: Any) -> None:
        base.__init__(self, proc_params)
        self._setup(proc_params)

    cls = type(name, (types, base), {"__init__": __init__, "__module__": __name__,
                                     "__doc__": f"{types.__doc__} ({protocol.__name__})"})
    return implements(proc=ConvSynapse, protocol=protocol)(requires(CPU)(tag(tag_)(cls)))


PyConvSynapseFloat = _model("PyConvSynapseFloat", _FloatConvTypes, _SyncModel, LoihiProtocol, "floating_pt")
PyConvSynapseFixed = _model("PyConvSynapseFixed", _FixedConvTypes, _SyncModel, LoihiProtocol, "fixed_pt")
PyConvSynapseFloatAsync = _model("PyConvSynapseFloatAsync", _FloatConvTypes, _AsyncModel, AsyncProtocol,
                                 "floating_pt_async")
PyConvSynapseFixedAsync = _model("PyConvSynapseFixedAsync", _FixedConvTypes, _AsyncModel, AsyncProtocol,
                                 "fixed_pt_async")

MODELS = {("float", False): PyConvSynapseFloat, ("fixed", False): PyConvSynapseFixed,
          ("float", True): PyConvSynapseFloatAsync, ("fixed", True): PyConvSynapseFixedAsync}
"""(precision, asynchronous) -> the ProcessModel the runner maps a ConvSynapse to."""
