"""Convolutional connections: their geometry, one chip step of the synapse, and the counts
the quantiser and the mapper need (numpy only).

A convolutional connection stores a kernel ``[C_out, C_in/groups, *K]`` shared by every
output position, as Loihi 2 stores a convolutional layer, instead of the
``[n_out, n_in]`` matrix it expands to. The arithmetic of one step is written once here
and used by the numpy chip model (chip_model.py, quantize.simulate_fixed) and the Lava
process (lava/conv.py), so the two cannot drift apart (as neuron_step.py for neurons).

Geometry (torch's cross-correlation, the IR's Conv1d/Conv2d; docs/semantics.md): output
channel ``o`` at spatial position ``p`` sums ``kernel[o, c, k] * x[c', p*stride + k*dilation
- padding]`` over its group's input channels and the kernel taps ``k``; positions outside
the input read 0. Activations are flat C-order vectors (channel-major), as everywhere in
the netlist.

One step, float: ``a_out = conv(kernel, s_in)`` in float64, as ``ConvOp.apply``: one
gather of the input into ``[C_in, P_out, K]`` (precomputed tap indices) and one matmul per
group, a fixed summation order. Fixed point (``conv_fixed``): the same with int64 mantissas
and int64 messages (graded payloads, or ``s_in != 0`` for binary spikes), then the
per-connection ``weight_exp`` shift (left for > 0, arithmetic right = floor for < 0) and
an int32 message, exactly as ``quantize.dense_fixed`` does for a dense connection.

Composition (:func:`compose`): two convolutions with no neuron between them (a sum pool
folded into the next convolution, a per-channel scale, a pool after a convolution) are
one convolution when that is exact: the composite's stride is the product, its kernel the
(dilated) convolution of the two kernels, and the zero padding of the second must only
ever read positions of the first that lie wholly in the input's padding.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np

from neuromorph.ir import Conv1d, Conv2d, SumPool2d
from neuromorph.ir.nodes import _conv_out as conv_out  # the IR's own output-size rule

MAX_SPATIAL_DIMS = 2


@dataclass(frozen=True)
class ConvGeometry:
    """Shapes and index arithmetic of a convolution (its weights live elsewhere)."""

    in_shape: tuple[int, ...]  # (C_in, *S_in)
    out_shape: tuple[int, ...]  # (C_out, *S_out)
    kernel: tuple[int, ...]  # spatial kernel size K
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int

    @property
    def ndim(self) -> int:
        return len(self.kernel)

    @property
    def kernel_shape(self) -> tuple[int, ...]:
        """Shape of the weight array: (C_out, C_in / groups, *K)."""
        return (self.out_shape[0], self.in_shape[0] // self.groups, *self.kernel)

    @property
    def n_in(self) -> int:
        return math.prod(self.in_shape)

    @property
    def n_out(self) -> int:
        return math.prod(self.out_shape)

    def expected_out(self) -> tuple[int, ...]:
        """The spatial output size its input, kernel, stride, padding and dilation give."""
        return tuple(conv_out(*a) for a in zip(self.in_shape[1:], self.kernel, self.stride,
                                                self.padding, self.dilation))

    def taps(self) -> np.ndarray:
        """``[P_out, K]`` flat input positions each output position reads at each tap;
        ``S_in`` (one past the last position) where the tap falls into the padding."""
        return _taps(self)


CONV_FIELDS = ("in_shape", "out_shape", "stride", "padding", "dilation", "groups")
"""A convolutional connection's geometry as an artifact stores it (the kernel size is
the shape of its weight)."""


def work_bytes(geom: ConvGeometry) -> int:
    """Bytes one step of the synapse holds per sample (``ConvOp.apply``: the gathered
    inputs ``[C_in, P_out, K]``, its tap indices, the padded input and the output)."""
    taps = math.prod(geom.out_shape[1:]) * math.prod(geom.kernel)
    return 8 * (geom.in_shape[0] * taps + taps + geom.n_in + geom.in_shape[0] + geom.n_out)


def _taps(g: ConvGeometry) -> np.ndarray:
    n = g.ndim
    index, valid = np.zeros((1,) * (2 * n), np.int64), np.ones((1,) * (2 * n), bool)
    for i, (size, out, k, s, p, d) in enumerate(zip(g.in_shape[1:], g.out_shape[1:], g.kernel,
                                                    g.stride, g.padding, g.dilation)):
        pos = np.arange(out)[:, None] * s + np.arange(k)[None, :] * d - p  # [out_i, k_i]
        shape = [1] * (2 * n)
        shape[i], shape[n + i] = out, k
        index = index * size + pos.reshape(shape)
        valid = valid & ((pos >= 0) & (pos < size)).reshape(shape)
    p_out, k_all = math.prod(g.out_shape[1:]), math.prod(g.kernel)
    flat = np.where(valid, index, math.prod(g.in_shape[1:]))
    return np.ascontiguousarray(np.broadcast_to(flat, (*g.out_shape[1:], *g.kernel)).reshape(p_out, k_all))


def geometry_of(node: Conv1d | Conv2d | SumPool2d, in_shape: tuple[int, ...],
                out_shape: tuple[int, ...]) -> tuple[ConvGeometry, np.ndarray]:
    """A Conv node's geometry and kernel; a SumPool2d is a depthwise convolution with a
    kernel of ones (groups = channels)."""
    if isinstance(node, SumPool2d):
        c = in_shape[0]
        geom = ConvGeometry(tuple(in_shape), tuple(out_shape), tuple(node.kernel_size), tuple(node.stride),
                            tuple(node.padding), (1,) * len(node.kernel_size), c)
        return geom, np.ones(geom.kernel_shape)
    geom = ConvGeometry(tuple(in_shape), tuple(out_shape), tuple(node.weight.shape[2:]), tuple(node.stride),
                        tuple(node.padding), tuple(node.dilation), int(node.groups))
    return geom, np.asarray(node.weight, dtype=np.float64).copy()


def channel_scale(shape: tuple[int, ...], scale: np.ndarray) -> np.ndarray | None:
    """``scale`` (broadcast to ``shape``) as one factor per channel, or None when it
    varies within a channel (then no kernel can carry it)."""
    full = np.broadcast_to(np.asarray(scale, dtype=np.float64), shape).reshape(shape[0], -1)
    if full.shape[1] == 0 or not np.all(full == full[:, :1]):
        return None
    return full[:, 0].copy()


def scale_kernel(kernel: np.ndarray, per_channel: np.ndarray) -> np.ndarray:
    """The kernel of ``per_channel[o] * conv(...)``: each output channel's row scaled."""
    return per_channel.reshape(-1, *([1] * (kernel.ndim - 1))) * kernel


# ---------------------------------------------------------------- one step


class ConvOp:
    """``apply(x)``: the convolution of a flat input vector, as the chip computes it."""

    def __init__(self, geom: ConvGeometry, kernel: np.ndarray) -> None:
        g = geom.groups
        self.geom = geom
        self.idx = geom.taps()
        c_in, o = geom.in_shape[0], geom.out_shape[0]
        k = self.idx.shape[1]
        self.weight = np.ascontiguousarray(np.asarray(kernel).reshape(g, o // g, (c_in // g) * k))

    def apply(self, x: np.ndarray) -> np.ndarray:
        """``[..., n_in]`` -> ``[..., n_out]`` in the kernel's dtype family (float64 or
        int64); leading dimensions are samples side by side, each computed alone."""
        geom, g = self.geom, self.geom.groups
        c_in = geom.in_shape[0]
        p_out, k = self.idx.shape
        x = np.asarray(x)
        lead = x.shape[:-1]
        xs = x.reshape(*lead, c_in, -1)
        ext = np.concatenate([xs, np.zeros((*lead, c_in, 1), xs.dtype)], axis=-1)  # the padding reads 0
        cols = ext[..., self.idx].reshape(*lead, g, c_in // g, p_out, k).swapaxes(-1, -2)
        out = np.matmul(self.weight, cols.reshape(*lead, g, (c_in // g) * k, p_out))
        return out.reshape(*lead, geom.n_out)

    __call__ = apply


def conv_fixed(op: ConvOp, weight_exp: int, s_in: np.ndarray, graded: bool) -> np.ndarray:
    """One step of the fixed-point convolutional synapse: the int32 ``a_out`` for ``s_in``
    (``op`` holds the integer mantissas): ``synapse.FixedConv`` for one call."""
    from .synapse import FixedConv

    return FixedConv(op.geom, op.weight.reshape(op.geom.kernel_shape), weight_exp, graded)(s_in)


# ---------------------------------------------------------------- counts and expansions


def row_sums(geom: ConvGeometry, kernel: np.ndarray) -> np.ndarray:
    """Per output neuron, the sum of the kernel entries it really connects (padding
    taps excluded): ``|kernel|`` gives the abs row sums, ``kernel != 0`` the fan-in."""
    return ConvOp(geom, np.asarray(kernel, dtype=np.float64)).apply(np.ones(geom.n_in))


def fan_in(geom: ConvGeometry, kernel: np.ndarray) -> np.ndarray:
    """Nonzero synapses into each output neuron (int64 ``[n_out]``)."""
    return np.rint(row_sums(geom, kernel != 0)).astype(np.int64)


def fan_out(geom: ConvGeometry, kernel: np.ndarray) -> np.ndarray:
    """Nonzero synapses out of each input neuron (int64 ``[n_in]``): at tap ``k`` an input
    position reaches one output position at most, so it is ``nonzero[c, k]`` summed over
    the taps that read it."""
    idx = geom.taps()
    s_in = math.prod(geom.in_shape[1:])
    g, c_in, c_out = geom.groups, geom.in_shape[0], geom.out_shape[0]
    nz = (np.asarray(kernel) != 0).reshape(g, c_out // g, c_in // g, -1).sum(axis=1)  # [g, C_in/g, K]
    hits = np.zeros((idx.shape[1], s_in + 1), np.int64)
    hits[np.arange(idx.shape[1])[None, :], idx] = 1
    return (nz.reshape(c_in, -1).astype(np.int64) @ hits[:, :s_in]).reshape(-1)


def channel_synapses(kernel: np.ndarray) -> np.ndarray:
    """Nonzero shared weights of each output channel (what a core holding any neuron of
    that channel stores)."""
    return np.count_nonzero(np.asarray(kernel).reshape(kernel.shape[0], -1), axis=1).astype(np.int64)


def connection_fan_in(geom: ConvGeometry | None, weight: np.ndarray) -> np.ndarray:
    """Nonzero synapses into each target neuron of a connection of either kind."""
    return fan_in(geom, weight) if geom is not None else np.count_nonzero(weight, axis=1).astype(np.int64)


def connection_fan_out(geom: ConvGeometry | None, weight: np.ndarray) -> np.ndarray:
    """Nonzero synapses out of each source neuron of a connection of either kind."""
    return fan_out(geom, weight) if geom is not None else np.count_nonzero(weight, axis=0).astype(np.int64)


def connection_abs_sums(geom: ConvGeometry | None, weight: np.ndarray) -> np.ndarray:
    """Per target neuron, the sum of |weight| over its synapses (either kind), float64."""
    if geom is None:
        return np.abs(weight).astype(np.float64).sum(axis=1)
    return row_sums(geom, np.abs(weight))


def sparse(geom: ConvGeometry, kernel: np.ndarray) -> Any:
    """The ``[n_out, n_in]`` scipy CSR matrix the convolution expands to (nonzeros only)."""
    from scipy.sparse import csr_matrix

    idx = geom.taps()
    g, c_in, c_out = geom.groups, geom.in_shape[0], geom.out_shape[0]
    cg, s_in = c_in // g, math.prod(geom.in_shape[1:])
    p_out, k = idx.shape
    w = np.asarray(kernel, dtype=np.float64).reshape(c_out, cg, k)
    o = np.arange(c_out)[:, None, None, None]
    c = (o // (c_out // g)) * cg + np.arange(cg)[None, :, None, None]  # input channel
    p = np.arange(p_out)[None, None, :, None]
    rows = np.broadcast_to(o * p_out + p, (c_out, cg, p_out, k))
    cols = c * s_in + idx[None, None, :, :]
    vals = np.broadcast_to(w[:, :, None, :], (c_out, cg, p_out, k))
    keep = (idx[None, None, :, :] < s_in) & (vals != 0)
    return csr_matrix((vals[keep], (rows[keep], np.broadcast_to(cols, keep.shape)[keep])),
                      shape=(geom.n_out, geom.n_in))


def dense(geom: ConvGeometry, kernel: np.ndarray) -> np.ndarray:
    """The ``[n_out, n_in]`` matrix (the fallback where no kernel can say it)."""
    return sparse(geom, kernel).toarray()


# ---------------------------------------------------------------- composition


def compose_geometry(a: ConvGeometry, b: ConvGeometry) -> ConvGeometry | None:
    """The one convolution equal to ``b`` after ``a``, or None where none is exact."""
    if b.in_shape != a.out_shape or a.ndim != b.ndim:
        return None
    kernel, stride, padding, dilation = [], [], [], []
    for i in range(a.ndim):
        size, mid = a.in_shape[1 + i], a.out_shape[1 + i]
        ka, sa, pa, da = a.kernel[i], a.stride[i], a.padding[i], a.dilation[i]
        kb, sb, pb, db = b.kernel[i], b.stride[i], b.padding[i], b.dilation[i]
        # b's padding must read only a-positions whose whole window is input padding
        if pb > 0 and (ka - 1) * da - pa >= sa:
            return None
        last = (b.out_shape[1 + i] - 1) * sb + (kb - 1) * db - pb
        if last >= mid and mid * sa - pa < size:
            return None
        step = math.gcd(db * sa if kb > 1 else 0, da if ka > 1 else 0) or 1
        span = (kb - 1) * db * sa + (ka - 1) * da + 1
        kernel.append((span - 1) // step + 1)
        stride.append(sa * sb)
        padding.append(pb * sa + pa)
        dilation.append(step)
    c = ConvGeometry(a.in_shape, b.out_shape, tuple(kernel), tuple(stride), tuple(padding),
                     tuple(dilation), math.gcd(a.groups, b.groups))
    return c if c.expected_out() == c.out_shape[1:] else None


def _full(geom: ConvGeometry, kernel: np.ndarray) -> np.ndarray:
    """The kernel with every input channel: ``[C_out, C_in, *K]``, zero across groups."""
    g, c_in, c_out = geom.groups, geom.in_shape[0], geom.out_shape[0]
    full = np.zeros((c_out, c_in, *geom.kernel), dtype=np.result_type(kernel, np.float64))
    cg, og = c_in // g, c_out // g
    for j in range(g):
        full[j * og:(j + 1) * og, j * cg:(j + 1) * cg] = kernel[j * og:(j + 1) * og]
    return full


def compose(a: ConvGeometry, ka: np.ndarray, b: ConvGeometry, kb: np.ndarray,
            c: ConvGeometry) -> np.ndarray:
    """The kernel of ``c = compose_geometry(a, b)``: per tap pair (t of b, u of a) the
    channel product ``kb[:, :, t] @ ka[:, :, u]`` added at offset ``t*db*sa + u*da``."""
    fa, fb = _full(a, ka), _full(b, kb)
    full = np.zeros((c.out_shape[0], c.in_shape[0], *c.kernel))
    for t in product(*(range(k) for k in b.kernel)):
        for u in product(*(range(k) for k in a.kernel)):
            off = tuple((ti * b.dilation[i] * a.stride[i] + ui * a.dilation[i]) // c.dilation[i]
                        for i, (ti, ui) in enumerate(zip(t, u)))
            full[(slice(None), slice(None), *off)] += fb[(slice(None), slice(None), *t)] @ fa[
                (slice(None), slice(None), *u)]
    g, og, cg = c.groups, c.out_shape[0] // c.groups, c.in_shape[0] // c.groups
    return np.concatenate([full[j * og:(j + 1) * og, j * cg:(j + 1) * cg] for j in range(g)], axis=0)


__all__ = [
    "CONV_FIELDS", "ConvGeometry", "ConvOp", "MAX_SPATIAL_DIMS", "channel_scale", "channel_synapses", "compose",
    "compose_geometry", "connection_abs_sums", "connection_fan_in", "connection_fan_out", "conv_fixed", "conv_out",
    "dense", "fan_in", "fan_out", "geometry_of", "row_sums", "scale_kernel", "sparse", "work_bytes",
]
