"""One chip step of a synapse, for one sample or for lanes of samples side by side (numpy only).

Shared by the numpy chip models (chip_model.py, quantize.simulate_fixed) and the Lava
processes of the lane plan (lava/lanes.py), as neuron_step.py is for neurons. Each is an
object made once from the connection's weights (converted to the form they compute in
once, not every step), called with the messages of one step: ``[n_in]`` for one sample,
``[lanes, n_in]`` for lanes; lane ``b`` of the result is bit for bit what the same
sample alone gives.

- :class:`FloatDense`: ``weight @ x`` as Lava's float ``Dense`` computes it
  (``weights.dot(s_in)``: a BLAS gemv), one gemv per lane (``np.matmul`` over a stack of
  vectors calls the same gemv; one gemm over all lanes would sum in another order), or
  with ``summation="sum"`` as Lava's float ``DelayDense`` does (``np.sum(w * s_in, axis=1)``).
- :class:`FixedDense`: Lava's ``PyDenseModelBitAcc`` (``quantize.dense_fixed``): binary
  spikes (``s_in != 0``) summed in int64, or graded payloads in Lava's int32 dot (which
  wraps modulo 2^32); the weight exponent's shift; an int32 message.
- :class:`FixedConv`: the fixed-point convolution (``conv.conv_fixed``): int64 sums,
  the exponent's shift, an int32 message.

The integer sums are computed with float64 matrix products where that is exact: every
product and partial sum is an integer of magnitude at most (largest row sum of
``|mantissa|``) x (largest message), and below 2^53 float64 holds every such integer, so
any summation order gives the exact sum. Below 2^24 float32 holds them all (about twice
as fast), and a dense connection whose sums, shifted by a positive weight exponent, stay
below 2^31 then works in int32 throughout (no sum wraps, so the int64 steps would change
nothing). The message bound is the connection's: 1 for binary spikes, the payload limit
of its message bits for graded inputs (checked before a run starts); a call with a larger
message is refused rather than rounded. Where the bound is 2^53 or more, the sums are int64.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .conv import ConvGeometry, ConvOp

EXACT_FLOAT = 2**53
"""Integers below this magnitude are exact in float64."""
EXACT_FLOAT32 = 2**24
"""... and below this one in float32."""


def _shift(acc: np.ndarray, weight_exp: int) -> np.ndarray:
    """The weight exponent: left for > 0, arithmetic right (floor) for <= 0."""
    return np.left_shift(acc, weight_exp) if weight_exp > 0 else np.right_shift(acc, -weight_exp)


def message_bound(graded: bool, num_message_bits: int) -> int:
    """The largest message magnitude of a connection: 1 for spikes, else the payload limit."""
    return 2 ** (int(num_message_bits) - 1) - 1 if graded else 1


class FloatDense:
    """``a_out = weight @ s_in`` in float64, as Lava's float Dense (``summation="dot"``)
    or DelayDense (``"sum"``) computes it, per lane."""

    def __init__(self, weight: np.ndarray, summation: str = "dot") -> None:
        if summation not in ("dot", "sum"):
            raise ValueError(f"unknown summation {summation!r}")
        self.weight = np.ascontiguousarray(weight, dtype=np.float64)
        self.summation = summation

    def __call__(self, s_in: np.ndarray) -> np.ndarray:
        x = np.asarray(s_in, dtype=np.float64)
        if self.summation == "sum":
            if x.ndim == 1:
                return np.sum(self.weight * x, axis=1)
            return np.stack([np.sum(self.weight * lane, axis=1) for lane in x])
        if x.ndim == 1:
            return self.weight.dot(x)
        return np.matmul(self.weight, np.ascontiguousarray(x)[..., None])[..., 0]


class _Fixed:
    """Shared by the fixed-point synapses: the exactness bound and the message check."""

    graded: bool
    max_message: int
    exact_float: bool

    def _bound(self, abs_row_sums: np.ndarray, max_message: int | None) -> None:
        self.max_message = int(max_message) if max_message is not None else 0
        top = float(np.max(abs_row_sums, initial=0.0))
        self.sum_bound = top * max(self.max_message, 1)  # no sum is larger (with a bound)
        self.exact_float = max_message is not None and self.sum_bound < EXACT_FLOAT

    def _messages(self, s_in: np.ndarray, dtype: Any, integer: Any) -> np.ndarray:
        """Binary spikes as 0/1, or the payloads converted to ``integer`` (as the
        per-sample arithmetic does), in the ``dtype`` the sums are computed in."""
        s = np.asarray(s_in)
        if not self.graded:
            return (s != 0).astype(dtype)
        if self.exact_float and s.size and (s.max() > self.max_message or s.min() < -self.max_message):
            raise ValueError(f"a graded message of {float(np.max(np.abs(s))):g} exceeds the "
                             f"connection's bound {self.max_message}")
        return s.astype(integer, copy=False).astype(dtype, copy=False)


class FixedDense(_Fixed):
    """Lava's fixed-point Dense: ``mantissas`` (int, unchanged by Lava's clip/truncate),
    ``weight_exp``, ``graded`` (payloads) or binary spikes; ``max_message`` bounds the
    payloads (None: int64 sums, for messages of any size)."""

    def __init__(self, mantissas: np.ndarray, weight_exp: int, graded: bool,
                 max_message: int | None = None) -> None:
        w = np.asarray(mantissas).astype(np.int64)
        self.weight_exp, self.graded = int(weight_exp), bool(graded)
        self._bound(np.abs(w).sum(axis=1) if w.size else np.zeros(0), 1 if not graded else max_message)
        # float32 sums are exact below 2^24, and where every sum, shifted, fits in int32 the
        # int32 arithmetic below gives the same integers as the int64 one
        self.small = (self.exact_float and self.sum_bound < EXACT_FLOAT32
                      and self.sum_bound * 2.0 ** max(self.weight_exp, 0) < 2**31)
        dtype = np.float32 if self.small else np.float64 if self.exact_float else np.int64
        # [n_in, n_out]: messages [lanes, n_in] @ it
        self.weight_t = np.ascontiguousarray(w.T.astype(dtype))

    def __call__(self, s_in: np.ndarray) -> np.ndarray:
        msg = self._messages(s_in, self.weight_t.dtype, np.int32)  # Lava's int32 operands
        if self.small:  # every sum fits: no wrap, no int64 needed
            acc = (msg @ self.weight_t).astype(np.int32)
            if self.weight_exp > 0:
                np.left_shift(acc, self.weight_exp, out=acc)
            elif self.weight_exp < 0:
                np.right_shift(acc, -self.weight_exp, out=acc)
            return acc
        acc = msg @ self.weight_t
        if self.exact_float:
            acc = acc.astype(np.int64)
        if self.graded:
            acc = acc.astype(np.int32)  # Lava's int32 dot: the exact sum modulo 2^32
        return _shift(acc, self.weight_exp).astype(np.int32)  # the int32 channel


class FixedConv(_Fixed):
    """The fixed-point convolutional synapse (``conv.conv_fixed``): int64 sums of
    mantissa x message, the exponent's shift, int32 messages."""

    def __init__(self, geom: ConvGeometry, mantissas: np.ndarray, weight_exp: int, graded: bool,
                 max_message: int | None = None) -> None:
        k = np.asarray(mantissas).astype(np.int64)
        self.weight_exp, self.graded = int(weight_exp), bool(graded)
        # a row of the expanded matrix holds at most the entries of one output channel's kernel
        rows = np.abs(k).reshape(k.shape[0], -1).sum(axis=1) if k.size else np.zeros(0)
        self._bound(rows, 1 if not graded else max_message)
        self.op = ConvOp(geom, k.astype(np.float64) if self.exact_float else k)

    def __call__(self, s_in: np.ndarray) -> np.ndarray:
        dtype = np.float64 if self.exact_float else np.int64
        acc = self.op.apply(self._messages(s_in, dtype, np.int64))
        if self.exact_float:
            acc = acc.astype(np.int64)
        return _shift(acc, self.weight_exp).astype(np.int32)
