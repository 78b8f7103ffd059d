"""The linear IR nodes between populations, composed into synapses: matrices or convolutions.

Lowering (netlist.py) follows every path from a source (input port or population)
through linear nodes to a population and composes the nodes' maps. A path's map is one
of three kinds:

- the identity (``None``): a population fed directly;
- a matrix (``np.ndarray``, ``[n_out, n_src]``): Affine, Linear, Flatten, Scale, and
  anything composed with them, exactly as before convolutions were kept (dense networks
  lower to the same numbers);
- a convolution (:class:`ConvMap`): a Conv1d/Conv2d or a SumPool2d (a depthwise
  convolution with a kernel of ones), kept as its kernel. Through a Flatten it stays
  one (a C-order reshape does not change the flat vector); a per-channel Scale is folded
  into its kernel; a following convolution or pooling is composed into it where that is
  exact (conv.compose_geometry). Anything else (an Affine after it, a Scale that varies
  within a channel, a composition that is not exact) expands it into its matrix, from its
  sparse form, never from a dense basis.

:func:`next_kind` is the one decision of what a path becomes through a node; the memory
estimate (netlist.estimate_lowering) and the lowering both follow it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Union

import numpy as np

from neuromorph.ir import Affine, Conv1d, Conv2d, Flatten, Linear, Node, Scale, SumPool2d
from neuromorph.simulate import STATELESS

from . import conv as convs
from .conv import ConvGeometry

Shape = tuple[int, ...]
Matrix = tuple[np.ndarray, np.ndarray]  # (M, c): node(x) = M @ x.flatten() + c


@dataclass(frozen=True, eq=False)
class ConvMap:
    """A linear map that is one convolution, kept as its kernel."""

    geom: ConvGeometry
    kernel: np.ndarray

    def sparse(self) -> Any:
        return convs.sparse(self.geom, self.kernel)


Map = Union[np.ndarray, ConvMap, None]  # a path's map from its source
DENSE = "dense"
Kind = Union[ConvGeometry, str, None]  # what a map is: a convolution, DENSE, or the identity
CONV_NODES = (Conv1d, Conv2d, SumPool2d)


def kind_of(m: Map) -> Kind:
    return None if m is None else m.geom if isinstance(m, ConvMap) else DENSE


# ---------------------------------------------------------------- each node's own map


def _read_only(arr: np.ndarray) -> np.ndarray:
    """A read-only view of an IR array: composing only reads a node's own map, so no copy
    of a (possibly huge) weight matrix is needed, and a write by mistake raises instead
    of changing the model."""
    view = arr.view()
    view.flags.writeable = False
    return view


def _affine(node: Affine, in_shape: Shape, out_shape: Shape) -> Matrix:
    return _read_only(node.weight), node.bias.copy()


def _linear(node: Linear, in_shape: Shape, out_shape: Shape) -> Matrix:
    return _read_only(node.weight), np.zeros(node.weight.shape[0])


def _flatten(node: Flatten, in_shape: Shape, out_shape: Shape) -> Matrix:
    n_in = int(np.prod(in_shape))
    return np.eye(n_in), np.zeros(n_in)


def _scale(node: Scale, in_shape: Shape, out_shape: Shape) -> Matrix:
    s = np.broadcast_to(node.scale, in_shape).reshape(-1)
    return np.diag(s), np.zeros(s.size)


def _conv(node: Conv1d | Conv2d | SumPool2d, in_shape: Shape, out_shape: Shape) -> tuple[ConvMap, np.ndarray]:
    geom, kernel = convs.geometry_of(node, in_shape, out_shape)
    bias = getattr(node, "bias", np.zeros(out_shape[0]))
    full = np.broadcast_to(np.asarray(bias, dtype=np.float64).reshape(-1, *([1] * (len(out_shape) - 1))), out_shape)
    return ConvMap(geom, kernel), full.reshape(-1).copy()


LINEAR_RULES: dict[type[Node], Callable[..., tuple[Any, np.ndarray]]] = {
    Affine: _affine, Linear: _linear, Flatten: _flatten, Scale: _scale,
    Conv1d: _conv, Conv2d: _conv, SumPool2d: _conv,
}
"""Nodes composed into synapses: ``rule(node, in_shape, out_shape) -> (own map, c)`` with
``node(x) = own(x) + c``; the own map is a matrix, or a ConvMap for convolutions and pooling."""


class Own:
    """A node's own map and constant, built on first use (a Flatten after a convolution
    never builds its identity matrix)."""

    def __init__(self, make: Callable[[], tuple[Any, np.ndarray]]) -> None:
        self._make = make
        self.value: tuple[Any, np.ndarray] | None = None

    def get(self) -> tuple[Any, np.ndarray]:
        if self.value is None:
            self.value = self._make()
        return self.value


# ---------------------------------------------------------------- what a path becomes


def _scale_per_channel(node: Scale, in_shape: Shape, geom: ConvGeometry) -> np.ndarray | None:
    scale = np.asarray(node.scale, dtype=np.float64)
    if scale.size != 1:  # per element: lay it out as the convolution's output
        scale = np.broadcast_to(scale, in_shape).reshape(geom.out_shape)
    return convs.channel_scale(geom.out_shape, scale)


def _own_geometry(node: Node, in_shape: Shape, out_shape: Shape) -> ConvGeometry:
    return convs.geometry_of(node, in_shape, out_shape)[0]  # type: ignore[arg-type]


AFTER_CONV_KIND: dict[type[Node], Callable[[Any, Shape, Shape, ConvGeometry], ConvGeometry | None]] = {
    Flatten: lambda node, i, o, g: g,
    Scale: lambda node, i, o, g: g if _scale_per_channel(node, i, g) is not None else None,
    Affine: lambda node, i, o, g: None,
    Linear: lambda node, i, o, g: None,
    **{t: (lambda node, i, o, g: convs.compose_geometry(g, _own_geometry(node, i, o))) for t in CONV_NODES},
}
"""Through a node, a convolution stays one (its geometry) or becomes a matrix (None)."""


def next_kind(node: Node, in_shape: Shape, out_shape: Shape, inner: Kind) -> Kind:
    """What a path whose map is of kind ``inner`` becomes through ``node``."""
    if isinstance(inner, ConvGeometry):
        return AFTER_CONV_KIND[type(node)](node, in_shape, out_shape, inner) or DENSE
    if isinstance(node, CONV_NODES) and inner is None:
        return _own_geometry(node, in_shape, out_shape)
    return DENSE


def channel_gain(gain: np.ndarray, pop_shape: Shape, geom: ConvGeometry) -> np.ndarray | None:
    """A population's input gain as one factor per output channel of ``geom`` (None when
    it varies within a channel: no shared kernel can carry it)."""
    g = np.asarray(gain, dtype=np.float64)
    if g.size == geom.n_out:  # one per neuron (flat, as the lowering holds it)
        g = g.reshape(geom.out_shape)
    elif g.size != 1:  # a parameter that broadcasts to the population
        g = np.broadcast_to(g, pop_shape).reshape(geom.out_shape)
    return convs.channel_scale(geom.out_shape, g)


def group_kind(kinds: list[Kind], gain: np.ndarray, pop_shape: Shape) -> Kind:
    """The synapse the maps of one (source, target, delay) sum to: one convolution when
    they are all the same convolution and the gain is per channel, else a matrix."""
    first = kinds[0]
    if (isinstance(first, ConvGeometry) and all(k == first for k in kinds)
            and channel_gain(gain, pop_shape, first) is not None):
        return first
    return DENSE


# ---------------------------------------------------------------- building the maps


def _to_dense(m: ConvMap, rows: Callable[[Any], np.ndarray]) -> np.ndarray:
    return np.ascontiguousarray(rows(m.sparse()))


DENSE_AFTER_CONV: dict[type[Node], Callable[[Any, Shape, Own, ConvMap], np.ndarray]] = {
    Scale: lambda node, i, own, m: _to_dense(
        m, lambda s: s.multiply(np.broadcast_to(node.scale, i).reshape(-1, 1)).toarray()),
    Affine: lambda node, i, own, m: _to_dense(m, lambda s: (s.T @ node.weight.T).T),
    Linear: lambda node, i, own, m: _to_dense(m, lambda s: (s.T @ node.weight.T).T),
    **{t: (lambda node, i, own, m: _to_dense(m, lambda s: (own.get()[0].sparse() @ s).toarray()))
       for t in CONV_NODES},
}
"""A convolution through a node that it cannot absorb: the node applied to its matrix."""


def _fold(node: Node, in_shape: Shape, own: Own, m: ConvMap, geom: ConvGeometry) -> ConvMap:
    """The convolution that ``node`` after ``m`` is (``geom``: next_kind's answer)."""
    if isinstance(node, Flatten):
        return m
    if isinstance(node, Scale):
        return ConvMap(geom, convs.scale_kernel(m.kernel, _scale_per_channel(node, in_shape, m.geom)))
    mine: ConvMap = own.get()[0]
    return ConvMap(geom, convs.compose(m.geom, m.kernel, mine.geom, mine.kernel, geom))


def compose(node: Node, in_shape: Shape, out_shape: Shape, inner: Map, own: Own) -> Map:
    """``node`` after a path's map ``inner``."""
    kind = next_kind(node, in_shape, out_shape, kind_of(inner))
    if isinstance(inner, ConvMap):
        if isinstance(kind, ConvGeometry):
            return _fold(node, in_shape, own, inner, kind)
        return DENSE_AFTER_CONV[type(node)](node, in_shape, own, inner)
    m = own.get()[0]
    if inner is None:
        return m
    if isinstance(m, ConvMap):
        return np.asarray(m.sparse() @ inner)
    return m @ inner


def node_bias(node: Node, in_shape: Shape, out_shape: Shape, bias_in: np.ndarray, own: Own) -> np.ndarray:
    """The constant at the node's output: as its own map computes it where that map was
    built (dense paths: the numbers they always had), else the node's IR rule."""
    if own.value is not None:
        m, c = own.value
        moved = convs.ConvOp(m.geom, m.kernel).apply(bias_in) if isinstance(m, ConvMap) else m @ bias_in
        return moved + c
    rule = STATELESS[type(node)]
    return np.asarray(rule(node, out_shape, bias_in.reshape(1, *in_shape)), dtype=np.float64).reshape(-1)


def synapse(maps: list[Map], gain: np.ndarray, pop_shape: Shape) -> tuple[np.ndarray, ConvGeometry | None]:
    """The weights of one (source, target, delay) connection: the sum of its paths' maps
    with the target's gain folded in; a kernel and its geometry when it is a convolution."""
    kind = group_kind([kind_of(m) for m in maps], gain, pop_shape)
    if isinstance(kind, ConvGeometry):
        kernel = maps[0].kernel  # type: ignore[union-attr]
        for m in maps[1:]:
            kernel = kernel + m.kernel  # type: ignore[union-attr]
        return convs.scale_kernel(kernel, channel_gain(gain, pop_shape, kind)), kind
    size = int(np.prod(pop_shape))
    total: Any = None
    for m in maps:  # no copy of a lone map: the gain below makes the connection's own array
        dense = np.eye(size) if m is None else m.sparse().toarray() if isinstance(m, ConvMap) else m
        total = dense if total is None else total + dense
    return gain[:, None] * total, None


# ---------------------------------------------------------------- memory


def own_bytes(node: Node, n_in: int, n_out: int) -> int:
    """Bytes of the node's own map (LINEAR_RULES): a matrix, or a kernel and its sparse
    expansion (used only where a matrix comes in)."""
    if isinstance(node, (Affine, Linear)):
        return 8 * int(np.prod(node.weight.shape, dtype=object))
    if isinstance(node, (Flatten, Scale)):
        return 8 * n_in * n_in  # np.eye / np.diag
    if isinstance(node, CONV_NODES):
        fan = int(np.prod(getattr(node, "kernel_size", None) or node.weight.shape[1:], dtype=object))
        return 20 * n_out * fan  # CSR: value, column, (row pointers)
    return 0


def kernel_bytes(geom: ConvGeometry) -> int:
    """A composed kernel, the full-channel temporaries of conv.compose, and one step of
    the synapse (what the quantiser's counts and the chip model hold)."""
    full = 8 * 3 * geom.out_shape[0] * geom.in_shape[0] * int(np.prod(geom.kernel, dtype=object))
    return full + convs.work_bytes(geom)


def step_bytes(inner: Kind, result: Kind, n_out: int, n_src: int, n_mid: int) -> int:
    """Bytes one path allocates through a node beyond the node's own map."""
    if isinstance(result, ConvGeometry):
        return kernel_bytes(result)
    if isinstance(inner, ConvGeometry):  # expanded: its sparse form, the product and a copy
        fan = inner.in_shape[0] // inner.groups * int(np.prod(inner.kernel, dtype=object))
        return 20 * n_mid * fan + 16 * n_out * n_src
    return 8 * n_out * n_src if inner is not None else 0


def synapse_bytes(kinds: dict[Kind, int], n: int, n_src: int, foldable: Callable[[ConvGeometry], bool]) -> int:
    """Bytes of one population's connection from one source, from its paths' kinds."""
    only = next(iter(kinds)) if len(kinds) == 1 else None
    if isinstance(only, ConvGeometry) and foldable(only):
        return kernel_bytes(only)
    total = 0
    for kind, count in kinds.items():
        if kind is None:
            total += count * 8 * (n * n + 2 * n * n_src)  # the identity, summed, gain-scaled
        else:
            expand = step_bytes(kind, DENSE, n, n_src, n) if isinstance(kind, ConvGeometry) else 0
            total += count * (expand + 16 * n * n_src)
    return total
