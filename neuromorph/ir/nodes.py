"""IR node types: plain, frozen, validated records.

Parameters are continuous-time and in physical units, following NIR's conventions
(time constants and delays in seconds, voltages in the same arbitrary unit as the
threshold, ``r`` the resistance that scales input current into voltage). Each docstring
gives the ODE; the discrete-time update for a step ``dt`` is written once, in
docs/semantics.md, and implemented in :mod:`neuromorph.simulate`.

Shapes exclude batch and time. Neuron parameters are scalars or arrays that broadcast to
the neuron's shape, which is inferred from the graph.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import IRError

if TYPE_CHECKING:
    from .plasticity import Plasticity

Shape = tuple[int, ...]

MAX_ELEMENTS = 2**31 - 1
"""The most elements a node's shape may have (a stated bound: it keeps every size an
exact int64 and refuses the absurd shapes a corrupted file could declare)."""


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def as_param(value: Any, name: str) -> np.ndarray:
    """Copy a parameter into a read-only float64 array, refusing NaN and inf."""
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise IRError(f"parameter '{name}' is not numeric ({' '.join(str(exc).split())[:80]})") from None
    if not np.all(np.isfinite(arr)):
        bad = "NaN" if np.any(np.isnan(arr)) else "inf"
        raise IRError(f"parameter '{name}' contains {bad}")
    arr.setflags(write=False)
    return arr


def integral(value: Any) -> int | None:
    """``value`` as an int if it is one (an int, or a float with an integral value, as
    NIR files may store them); None for anything else (bools, strings, NaN, ...)."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    return None


def _int_items(value: Any) -> list[int | None] | None:
    """The items of an int or a (nested) sequence of ints, or None if it is not one."""
    if integral(value) is not None:
        return [integral(value)]
    try:
        items = np.asarray(value, dtype=object).reshape(-1)
    except (TypeError, ValueError):
        return None
    return [integral(v) for v in items]


def as_int_tuple(value: Any, name: str, length: int, minimum: int) -> tuple[int, ...]:
    """Normalise an int or a sequence of ints (stride, padding, ...) to a tuple."""
    single = integral(value)
    items = [single] * length if single is not None else _int_items(value)
    if items is None or len(items) != length or any(v is None for v in items):
        raise IRError(f"'{name}' must be an int or {length} ints, got {_short(value)}")
    out = tuple(int(v) for v in items)  # type: ignore[arg-type]
    if any(v < minimum for v in out):
        raise IRError(f"'{name}' must be >= {minimum}, got {_short(out)}")
    if any(v > MAX_ELEMENTS for v in out):
        raise IRError(f"'{name}' must be <= {MAX_ELEMENTS}, got {_short(out)}")
    return out


def _positive(arr: np.ndarray, name: str) -> None:
    if np.any(arr <= 0):
        raise IRError(f"parameter '{name}' must be > 0, got min {arr.min():g}")


def _non_negative(arr: np.ndarray, name: str) -> None:
    if np.any(arr < 0):
        raise IRError(f"parameter '{name}' must be >= 0, got min {arr.min():g}")


def _fmt_array(arr: np.ndarray) -> str:
    if arr.ndim == 0:
        return f"{float(arr):g}"
    if arr.size and np.all(arr == arr.flat[0]):
        return f"{float(arr.flat[0]):g}{list(arr.shape)}"
    return f"array{list(arr.shape)}"


@dataclass(frozen=True, eq=False, repr=False)
class Node:
    """Base class of all IR nodes."""

    type_name: ClassVar[str] = "Node"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.metadata.get("param"):
                object.__setattr__(self, f.name, as_param(getattr(self, f.name), f.name))

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in self.params().items() if isinstance(v, np.ndarray)}

    def parameter_count(self) -> int:
        return int(sum(a.size for a in self.arrays().values()))

    def output_shape(self, input_shape: Shape) -> Shape:
        """Shape of the output for a given input shape; raises IRError if incompatible."""
        raise NotImplementedError

    def replace(self, **changes: Any) -> "Node":
        return dataclasses.replace(self, **changes)

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return NotImplemented
        mine, theirs = self.params(), other.params()  # type: ignore[attr-defined]
        return all(_values_equal(mine[k], theirs[k]) for k in mine)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        parts = []
        for k, v in self.params().items():
            if isinstance(v, np.ndarray):
                parts.append(f"{k}={_fmt_array(v)}")
            elif v is not None and not (k == "reset" and v == DEFAULT_RESET):
                parts.append(f"{k}={v!r}")
        return f"{self.type_name}({', '.join(parts)})"


def _values_equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.shape == b.shape
            and bool(np.array_equal(a, b))
        )
    return bool(a == b)


def param(default: Any = dataclasses.MISSING) -> Any:
    """A numeric parameter field: stored as a read-only float64 array."""
    if default is dataclasses.MISSING:
        return field(metadata={"param": True})
    return field(default=default, metadata={"param": True})


# --------------------------------------------------------------------------- I/O nodes


def _shape(value: Any, kind: str) -> Shape:
    items = _int_items(value)
    if not items or len(items) > 32 or any(v is None or v <= 0 for v in items):
        raise IRError(f"{kind} shape must be non-empty positive ints, got {_short(value)}")
    if math.prod(items) > MAX_ELEMENTS:  # type: ignore[arg-type]
        raise IRError(f"{kind} shape {_short(tuple(items))} has more than {MAX_ELEMENTS} elements")
    return tuple(int(v) for v in items)  # type: ignore[arg-type]


@dataclass(frozen=True, eq=False, repr=False)
class Input(Node):
    """Graph input: ``y[t] = x[t]``, the external stream of the given shape."""

    shape: Shape
    type_name: ClassVar[str] = "Input"

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _shape(self.shape, "Input"))

    def output_shape(self, input_shape: Shape) -> Shape:
        return self.shape


@dataclass(frozen=True, eq=False, repr=False)
class Output(Node):
    """Graph output: ``y[t] = x[t]``. The shape is inferred; if given it is checked."""

    shape: Shape | None = None
    type_name: ClassVar[str] = "Output"

    def __post_init__(self) -> None:
        if self.shape is not None:
            object.__setattr__(self, "shape", _shape(self.shape, "Output"))

    def output_shape(self, input_shape: Shape) -> Shape:
        if self.shape is not None and tuple(self.shape) != tuple(input_shape):
            raise IRError(f"Output declares shape {self.shape} but receives {input_shape}")
        return input_shape


# ----------------------------------------------------------------------- connections

def _check_plasticity(p: Any, weight: np.ndarray) -> None:
    """A connection's rule is a Plasticity record (neuromorph.ir.plasticity) or None, and
    its weight bounds, if any, hold for the initial weights."""
    from .plasticity import Plasticity

    if p is None:
        return
    if not isinstance(p, Plasticity):
        raise IRError(f"'plasticity' must be a Plasticity record (STDP, RewardSTDP, ThreeFactor, EProp) "
                      f"or None, got {type(p).__name__}")
    low = p.w_min if p.w_min is not None else -math.inf
    high = p.w_max if p.w_max is not None else math.inf
    if weight.size and not (weight.min() >= low and weight.max() <= high):
        raise IRError(f"weights lie in [{weight.min():g}, {weight.max():g}], outside the plasticity "
                      f"bounds [{low:g}, {high:g}] (w_min, w_max)")


def _dense_output(weight: np.ndarray, input_shape: Shape, kind: str) -> Shape:
    if len(input_shape) != 1:
        raise IRError(f"{kind} takes a 1-d input, got shape {input_shape} (add a Flatten)")
    if input_shape[0] != weight.shape[1]:
        raise IRError(
            f"{kind} weight has {weight.shape[1]} inputs but receives shape {input_shape}"
        )
    return (weight.shape[0],)


@dataclass(frozen=True, eq=False, repr=False)
class Affine(Node):
    """Affine map ``y(t) = W x(t) + b``; weight shape (out, in), bias (out,)."""

    weight: np.ndarray = param()
    bias: np.ndarray = param()
    plasticity: "Plasticity | None" = None
    type_name: ClassVar[str] = "Affine"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.weight.ndim != 2:
            raise IRError(f"Affine weight must be 2-d (out, in), got shape {self.weight.shape}")
        if self.bias.shape != (self.weight.shape[0],):
            raise IRError(
                f"Affine bias must have shape ({self.weight.shape[0]},), got {self.bias.shape}"
            )
        _check_plasticity(self.plasticity, self.weight)

    def output_shape(self, input_shape: Shape) -> Shape:
        return _dense_output(self.weight, input_shape, "Affine")


@dataclass(frozen=True, eq=False, repr=False)
class Linear(Node):
    """Linear map ``y(t) = W x(t)``; weight shape (out, in)."""

    weight: np.ndarray = param()
    plasticity: "Plasticity | None" = None
    type_name: ClassVar[str] = "Linear"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.weight.ndim != 2:
            raise IRError(f"Linear weight must be 2-d (out, in), got shape {self.weight.shape}")
        _check_plasticity(self.plasticity, self.weight)

    def output_shape(self, input_shape: Shape) -> Shape:
        return _dense_output(self.weight, input_shape, "Linear")


@dataclass(frozen=True, eq=False, repr=False)
class Scale(Node):
    """Element-wise scaling ``y(t) = s * x(t)``; ``scale`` broadcasts to the input."""

    scale: np.ndarray = param()
    type_name: ClassVar[str] = "Scale"

    def output_shape(self, input_shape: Shape) -> Shape:
        return _broadcast_check(self.scale, "scale", input_shape)


def _conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@dataclass(frozen=True, eq=False, repr=False)
class _ConvNd(Node):
    weight: np.ndarray = param()
    bias: np.ndarray = param()
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: int = 1
    ndim: ClassVar[int] = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        name, n = self.type_name, self.ndim
        if self.weight.ndim != n + 2:
            raise IRError(
                f"{name} weight must have shape (C_out, C_in/groups, {'k, ' * n}), "
                f"got {self.weight.shape}"
            )
        object.__setattr__(self, "stride", as_int_tuple(self.stride, "stride", n, 1))
        object.__setattr__(self, "padding", as_int_tuple(self.padding, "padding", n, 0))
        object.__setattr__(self, "dilation", as_int_tuple(self.dilation, "dilation", n, 1))
        groups = integral(self.groups)
        if groups is None or not 1 <= groups <= MAX_ELEMENTS:
            raise IRError(f"{name} groups must be a positive int, got {_short(self.groups)}")
        object.__setattr__(self, "groups", groups)
        c_out = self.weight.shape[0]
        if c_out % self.groups:
            raise IRError(f"{name}: {c_out} output channels not divisible by groups={self.groups}")
        if self.bias.shape != (c_out,):
            raise IRError(f"{name} bias must have shape ({c_out},), got {self.bias.shape}")

    def output_shape(self, input_shape: Shape) -> Shape:
        name, n = self.type_name, self.ndim
        if len(input_shape) != n + 1:
            raise IRError(f"{name} takes a (C, {'N' if n == 1 else 'H, W'}) input, got {input_shape}")
        c_in = self.weight.shape[1] * self.groups
        if input_shape[0] != c_in:
            raise IRError(f"{name} expects {c_in} input channels, got shape {input_shape}")
        spatial = tuple(
            _conv_out(s, k, st, p, d)
            for s, k, st, p, d in zip(
                input_shape[1:], self.weight.shape[2:], self.stride, self.padding, self.dilation
            )
        )
        if any(s <= 0 for s in spatial):
            raise IRError(f"{name} kernel does not fit input {input_shape} (output {spatial})")
        return (self.weight.shape[0], *spatial)


@dataclass(frozen=True, eq=False, repr=False)
class Conv1d(_ConvNd):
    """1-d convolution (cross-correlation, as in torch); input (C_in, N), weight (C_out, C_in/groups, K)."""

    type_name: ClassVar[str] = "Conv1d"
    ndim: ClassVar[int] = 1


@dataclass(frozen=True, eq=False, repr=False)
class Conv2d(_ConvNd):
    """2-d convolution (cross-correlation, as in torch); input (C_in, H, W), weight (C_out, C_in/groups, KH, KW)."""

    type_name: ClassVar[str] = "Conv2d"
    ndim: ClassVar[int] = 2


@dataclass(frozen=True, eq=False, repr=False)
class SumPool2d(Node):
    """Sum over (KH, KW) windows per channel; input (C, H, W), zero padding."""

    kernel_size: Any = 2
    stride: Any = None
    padding: Any = 0
    type_name: ClassVar[str] = "SumPool2d"

    def __post_init__(self) -> None:
        k = as_int_tuple(self.kernel_size, "kernel_size", 2, 1)
        object.__setattr__(self, "kernel_size", k)
        s = k if self.stride is None else as_int_tuple(self.stride, "stride", 2, 1)
        object.__setattr__(self, "stride", s)
        object.__setattr__(self, "padding", as_int_tuple(self.padding, "padding", 2, 0))

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 3:
            raise IRError(f"SumPool2d takes (C, H, W) input, got {input_shape}")
        spatial = tuple(
            _conv_out(s, k, st, p, 1)
            for s, k, st, p in zip(input_shape[1:], self.kernel_size, self.stride, self.padding)
        )
        if any(s <= 0 for s in spatial):
            raise IRError(f"SumPool2d window does not fit input {input_shape}")
        return (input_shape[0], *spatial)


@dataclass(frozen=True, eq=False, repr=False)
class Flatten(Node):
    """Merge dimensions start_dim..end_dim (inclusive, batch excluded) into one, C order."""

    start_dim: int = 0
    end_dim: int = -1
    type_name: ClassVar[str] = "Flatten"

    def __post_init__(self) -> None:
        for key in ("start_dim", "end_dim"):
            value = integral(getattr(self, key))
            if value is None or abs(value) > 32:
                raise IRError(f"Flatten {key} must be an int (a dimension), got {_short(getattr(self, key))}")
            object.__setattr__(self, key, value)

    def output_shape(self, input_shape: Shape) -> Shape:
        n = len(input_shape)
        start = self.start_dim + n if self.start_dim < 0 else self.start_dim
        end = self.end_dim + n if self.end_dim < 0 else self.end_dim
        if not (0 <= start <= end < n):
            raise IRError(
                f"Flatten dims {self.start_dim}..{self.end_dim} invalid for input {input_shape}"
            )
        merged = int(np.prod(input_shape[start : end + 1]))
        return (*input_shape[:start], merged, *input_shape[end + 1 :])


@dataclass(frozen=True, eq=False, repr=False)
class Delay(Node):
    """Pure delay ``y(t) = x(t - delay)``; ``delay`` in seconds, scalar or per element.

    Discretised to ``round(delay / dt)`` steps (see docs/semantics.md).
    """

    delay: np.ndarray = param()
    type_name: ClassVar[str] = "Delay"

    def __post_init__(self) -> None:
        super().__post_init__()
        _non_negative(self.delay, "delay")

    def output_shape(self, input_shape: Shape) -> Shape:
        return _broadcast_check(self.delay, "delay", input_shape)


# ---------------------------------------------------------------------------- neurons


def _broadcast_check(arr: np.ndarray, name: str, shape: Shape) -> Shape:
    try:
        out = np.broadcast_shapes(arr.shape, shape)
    except ValueError:
        out = None
    if out != tuple(shape):
        raise IRError(f"parameter '{name}' of shape {arr.shape} does not fit input shape {shape}")
    return tuple(shape)


RESET_MODES = ("value", "subtract")
"""How a spiking neuron's membrane is reset where it spikes (docs/semantics.md, section 3):
``"value"``: ``v <- v_reset``; ``"subtract"``: ``v <- v - (threshold - v_reset)``."""

DEFAULT_RESET = "value"


def _check_reset(value: Any) -> None:
    if not isinstance(value, str) or value not in RESET_MODES:
        raise IRError(f"'reset' must be one of {', '.join(map(repr, RESET_MODES))}, got {_short(value)}")


@dataclass(frozen=True, eq=False, repr=False)
class Neuron(Node):
    """Neurons keep the shape of their input; parameters broadcast to it.

    Spiking neurons (IF, LIF, CubaLIF, ALIF) have a ``reset`` mode (RESET_MODES)."""

    positive: ClassVar[tuple[str, ...]] = ()
    spiking: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in self.positive:
            _positive(getattr(self, name), name)
        if self.spiking:
            _check_reset(getattr(self, "reset", None))

    def output_shape(self, input_shape: Shape) -> Shape:
        for name, arr in self.arrays().items():
            _broadcast_check(arr, name, input_shape)
        return tuple(input_shape)


@dataclass(frozen=True, eq=False, repr=False)
class IF(Neuron):
    """Integrate-and-fire: ``dv/dt = r I``; spike when ``v > v_threshold``, then ``v = v_reset``.

    ``reset``: ``"value"`` (default) sets ``v = v_reset`` where the neuron spikes;
    ``"subtract"`` sets ``v = v - (v_threshold - v_reset)`` instead (reset by subtraction,
    as snnTorch's ``reset_mechanism="subtract"`` with ``v_reset = 0``).
    """

    r: np.ndarray = param(1.0)
    v_threshold: np.ndarray = param(1.0)
    v_reset: np.ndarray = param(0.0)
    reset: str = DEFAULT_RESET
    type_name: ClassVar[str] = "IF"


@dataclass(frozen=True, eq=False, repr=False)
class LIF(Neuron):
    """Leaky integrate-and-fire: ``tau dv/dt = (v_leak - v) + r I``;
    spike when ``v > v_threshold``, then ``v = v_reset``.

    ``reset``: ``"value"`` (default) sets ``v = v_reset`` where the neuron spikes;
    ``"subtract"`` sets ``v = v - (v_threshold - v_reset)`` instead (reset by subtraction,
    as snnTorch's ``reset_mechanism="subtract"`` with ``v_reset = 0``).
    """

    tau: np.ndarray = param()
    r: np.ndarray = param(1.0)
    v_leak: np.ndarray = param(0.0)
    v_threshold: np.ndarray = param(1.0)
    v_reset: np.ndarray = param(0.0)
    reset: str = DEFAULT_RESET
    positive: ClassVar[tuple[str, ...]] = ("tau",)
    type_name: ClassVar[str] = "LIF"


@dataclass(frozen=True, eq=False, repr=False)
class CubaLIF(Neuron):
    """Current-based LIF: ``tau_syn di/dt = -i + w_in I``;
    ``tau_mem dv/dt = (v_leak - v) + r i``; spike when ``v > v_threshold``, then
    ``v = v_reset`` (the synaptic current is not reset).

    ``reset``: ``"value"`` (default) sets ``v = v_reset`` where the neuron spikes;
    ``"subtract"`` sets ``v = v - (v_threshold - v_reset)`` instead (reset by subtraction,
    as snnTorch's ``reset_mechanism="subtract"`` with ``v_reset = 0``).
    """

    tau_syn: np.ndarray = param()
    tau_mem: np.ndarray = param()
    r: np.ndarray = param(1.0)
    v_leak: np.ndarray = param(0.0)
    v_threshold: np.ndarray = param(1.0)
    v_reset: np.ndarray = param(0.0)
    w_in: np.ndarray = param(1.0)
    reset: str = DEFAULT_RESET
    positive: ClassVar[tuple[str, ...]] = ("tau_syn", "tau_mem")
    type_name: ClassVar[str] = "CubaLIF"


@dataclass(frozen=True, eq=False, repr=False)
class ALIF(Neuron):
    """Adaptive LIF (the LSNN neuron of Bellec et al. 2018/2020).

    ``tau_mem dv/dt = (v_leak - v) + r I``; adaptation ``da/dt = -a / tau_adapt + S(t)``
    (each spike adds 1 to ``a``); effective threshold ``v_threshold + beta * a``; on a
    spike ``v = v_reset``. ``beta = 0`` gives a plain LIF neuron, so one ALIF population
    with per-neuron ``beta`` holds an LSNN's LIF and adaptive neurons together.

    ``reset``: ``"value"`` (default) sets ``v = v_reset`` where the neuron spikes;
    ``"subtract"`` subtracts the effective threshold of that step instead,
    ``v = v - (v_threshold + beta * a - v_reset)`` (``a`` before the spike's increment),
    as in Bellec et al.'s LSNN (there ``v_reset = 0``).
    """

    tau_mem: np.ndarray = param()
    tau_adapt: np.ndarray = param()
    beta: np.ndarray = param(0.0)
    r: np.ndarray = param(1.0)
    v_leak: np.ndarray = param(0.0)
    v_threshold: np.ndarray = param(1.0)
    v_reset: np.ndarray = param(0.0)
    reset: str = DEFAULT_RESET
    positive: ClassVar[tuple[str, ...]] = ("tau_mem", "tau_adapt")
    type_name: ClassVar[str] = "ALIF"

    def __post_init__(self) -> None:
        super().__post_init__()
        _non_negative(self.beta, "beta")


@dataclass(frozen=True, eq=False, repr=False)
class LI(Neuron):
    """Leaky integrator (readout): ``tau dv/dt = (v_leak - v) + r I``; outputs ``v``."""

    tau: np.ndarray = param()
    r: np.ndarray = param(1.0)
    v_leak: np.ndarray = param(0.0)
    positive: ClassVar[tuple[str, ...]] = ("tau",)
    spiking: ClassVar[bool] = False
    type_name: ClassVar[str] = "LI"


NODE_TYPES: dict[str, type[Node]] = {
    cls.type_name: cls
    for cls in (
        Input, Output, Affine, Linear, Scale, Conv1d, Conv2d, SumPool2d, Flatten, Delay,
        IF, LIF, CubaLIF, ALIF, LI,
    )
}
