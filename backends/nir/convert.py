"""NIR interchange: IR graphs to and from the Neuromorphic Intermediate Representation.

NIR carries continuous-time parameters but no time step, no edge delays and no plasticity.
What NIR can express maps one to one and round-trips exactly; what it cannot (scalar
parameters that were broadcast, dt, graph metadata, edge delays, ALIF adaptation,
plasticity, reset by subtraction) travels in a ``"neuromorph"`` metadata entry that our importer restores and
other tools ignore; losses they would see are returned as warnings.

Conventions (``convention=``) say what a foreign file's neuron parameters mean; the IR's
step is forward Euler of the NIR ODEs with the input held over the step:

- ``"nir"`` (default) and ``"snntorch"``: as written. snnTorch writes tau = dt/(1-beta),
  r = tau/dt and w_in = tau_syn/dt, which reproduces its ``mem = beta*mem + x``.
- ``"norse"``: corrects what Norse 1.1.0's to_nir writes: tau (LIF, LI, CubaLIF's
  tau_mem and tau_syn) divided by dt (it writes dt/tau_inv, norse#411); CubaLIF w_in
  times tau_syn/dt (Norse adds the input to i unscaled but writes w_in = 1); IF r divided
  by dt (Norse's IAF adds the input to v unscaled but writes r = 1).

Files written by neuromorph carry their own metadata and are restored exactly.

Reset (``reset=``): NIR neurons reset to ``v_reset``; snnTorch's default
``reset_mechanism="subtract"`` is not written into its files. ``reset="subtract"``
imports every spiking neuron with the IR's reset by subtraction (docs/semantics.md);
None (the default) keeps neuromorph's own metadata, else "value".

How the imported graph's ``dt`` is chosen (the first that applies):

1. the ``dt`` argument of ``from_nir`` / ``read_nir``;
2. the dt stored by neuromorph when it wrote the file (including "unset", None);
3. the convention's default: 1e-4 s for ``"nir"`` and ``"snntorch"`` (snnTorch's
   export_to_nir writes tau = dt / (1 - beta) with dt = 1e-4), 1e-3 s for ``"norse"``
   (the default dt of Norse's neurons and of its to_nir).

The ``"norse"`` convention's corrections divide by this same dt, so pass the dt that was
given to Norse's ``to_nir`` (and its neurons) if it was not the default.

Edge delays: NIR's recurrence rule (snnTorch's RLeaky/RSynaptic export writes
``lif -> w_rec -> lif``) is that a loop reads the previous step's spikes and applies
``w_rec`` in the current step. On import, the edge that leaves the node where a
depth-first search from the Inputs enters each loop (``lif -> w_rec``) gets a delay of
1 step, all others 0 (see ``_common.recurrence_edges``); so a recurrent bias reaches the
neuron from t=0, as in snnTorch. On export such a delay-1 edge is a plain NIR edge; any
other delay becomes a ``nir.Delay`` node of ``steps * dt`` seconds that our importer
folds back into the edge.
"""
from __future__ import annotations

import os
import warnings
from typing import Union

import h5py
import nir

from ...documents import MAX_FILE_BYTES, check_regular, display_path, shown, write_atomic
from ...errors import ModelFileError, NIRConversionError
from ...ir import Graph
from ._common import one_line
from ._export import export_graph
from ._import import CONVENTIONS, DEFAULT_DT, import_graph

PathLike = Union[str, "os.PathLike[str]"]

__all__ = [
    "CONVENTIONS", "DEFAULT_DT", "NIRExportWarning", "from_nir", "read_nir", "to_nir", "write_nir",
]


class NIRExportWarning(UserWarning):
    """Something in the graph that other NIR tools will not see (neuromorph restores it)."""


def to_nir(graph: Graph) -> nir.NIRGraph:
    """The NIR graph for ``graph``; each loss other tools would see is a NIRExportWarning."""
    out, messages = export_graph(graph)
    for message in messages:
        warnings.warn(message, NIRExportWarning, stacklevel=2)
    return out


def write_nir(graph: Graph, path: PathLike) -> list[str]:
    """Write ``graph`` as a NIR file; returns the warnings (losses other tools would see).

    Written to a temporary file next to ``path``, checked with nir.read (the type check
    other tools run), then moved over ``path``: a failure never leaves a half-written file.
    """
    out, messages = export_graph(graph)

    def write_checked(tmp: str) -> None:
        try:
            nir.write(tmp, out)
        except Exception as exc:  # OSError (directory, permissions, disk) or h5py's errors
            raise NIRConversionError(f"cannot write NIR file '{path}': {one_line(exc)}") from None
        try:
            nir.read(tmp)
        except Exception as exc:
            raise NIRConversionError(f"nir.read rejects the written graph: {one_line(exc)}") from None

    try:
        write_atomic(path, write_checked)
    except ModelFileError as exc:
        raise NIRConversionError(f"cannot write NIR file: {exc}") from None
    return messages


def from_nir(g: nir.NIRGraph, *, dt: float | None = None, convention: str = "nir",
             reset: str | None = None) -> Graph:
    """The IR graph for a NIR graph (written by neuromorph, snnTorch, Norse, ...).

    ``convention`` says what the file's parameters mean, see the module docstring;
    ``dt`` overrides the time step. ``reset`` ("value" or "subtract") is the reset mode
    of every spiking neuron imported: NIR cannot say it, so by default (None) a neuron
    gets the mode neuromorph wrote in its metadata, else "value" (an snnTorch model
    trained with ``reset_mechanism="subtract"`` needs ``reset="subtract"``).
    Unsupported nodes raise NIRConversionError.
    """
    return import_graph(g, dt, convention, reset)


def read_nir(path: PathLike, *, dt: float | None = None, convention: str = "nir",
             reset: str | None = None) -> Graph:
    """Read a NIR file into an IR graph; bad files raise NIRConversionError (one line).

    The HDF5 file is walked before nir.read touches its data (``check_file``): only a
    regular file of at most MAX_FILE_BYTES, only groups and datasets reached by hard
    links (no external or soft links, nothing linked twice), no external storage, no
    virtual datasets, no filters but HDF5's built-in ones, numeric or string data only,
    and at most MAX_NIR_DATA_BYTES of declared data. So a file can neither make us read
    another file nor make us allocate more than that bound.
    """
    path = os.fspath(path)
    shown_path = display_path(path)
    if not os.path.exists(path):
        raise NIRConversionError(f"NIR file '{shown_path}' does not exist")
    check_file(path)
    try:
        # Our own checks are stricter and name the node; nir's type check would refuse
        # files that we can repair (a batch dim in Input, as Norse writes).
        g = nir.read(path, type_check=False)
    except Exception as exc:  # h5py, nir: OSError, KeyError, ValueError, AssertionError, ...
        raise NIRConversionError(f"cannot read NIR file '{shown_path}': {one_line(exc)}") from None
    return from_nir(g, dt=dt, convention=convention, reset=reset)


MAX_NIR_DEPTH = 64
"""Deepest nesting of HDF5 groups accepted (a subgraph adds two levels: nodes/<name>)."""

MAX_NIR_DATA_BYTES = MAX_FILE_BYTES
"""Upper bound on the data a NIR file may declare, all datasets together; it may also
declare at most NIR_EXPANSION times its own size (plus NIR_SLACK_BYTES), which allows
compressed datasets but not a tiny file that claims terabytes of fill value."""
NIR_EXPANSION = 64
NIR_SLACK_BYTES = 16 * 2**20

BUILTIN_FILTERS = {
    h5py.h5z.FILTER_DEFLATE, h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_FLETCHER32,
    h5py.h5z.FILTER_SZIP, h5py.h5z.FILTER_NBIT, h5py.h5z.FILTER_SCALEOFFSET,
}
"""HDF5's own filters; any other id would make HDF5 search its plugin path and load a
shared library to decode the data."""


def check_file(path: str) -> None:
    """Refuse, before any dataset is read, what a NIR file must not do (see read_nir);
    also non-HDF5, non-NIR and truncated files, and unknown node types (named), which
    nir.read would turn into a bare KeyError or AssertionError."""
    shown_path = display_path(path)
    try:
        size = check_regular(path, NIRConversionError).st_size
    except NIRConversionError as exc:
        raise NIRConversionError(f"NIR file {exc}") from None
    budget = min(MAX_NIR_DATA_BYTES, NIR_EXPANSION * size + NIR_SLACK_BYTES)
    try:
        with h5py.File(path, "r") as f:
            _walk(f, shown_path, budget)
            if "node" not in f or not isinstance(f["node"], h5py.Group) or "type" not in f["node"]:
                raise NIRConversionError(f"'{shown_path}' is an HDF5 file but not a NIR graph (no 'node')")
            _check_types(f["node"], "")
    except NIRConversionError:
        raise
    except Exception as exc:
        raise NIRConversionError(
            f"cannot read NIR file '{shown_path}' (not HDF5, truncated or corrupted): {one_line(exc)}"
        ) from None


def _walk(root: h5py.Group, shown_path: str, budget: int) -> None:
    """Every object of the file, iteratively (no recursion), checking links and datasets
    from their metadata only."""
    seen: set[int] = {h5py.h5o.get_info(root.id).addr}
    total = 0
    stack: list[tuple[h5py.Group, str, int]] = [(root, "", 0)]
    while stack:
        group, where, depth = stack.pop()
        if depth >= MAX_NIR_DEPTH:
            raise NIRConversionError(f"'{shown_path}': groups nested deeper than {MAX_NIR_DEPTH} levels "
                                     f"at '{where}'")
        for key in group.keys():
            name = key.decode("utf8", errors="backslashreplace") if isinstance(key, bytes) else str(key)
            here = f"{where}/{name}"
            if not name.isprintable():
                raise NIRConversionError(f"'{shown_path}': the name {shown(here)} contains control characters")
            link = group.get(key, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise NIRConversionError(f"'{shown_path}': '{here}' is an external link (to "
                                         f"{shown(link.filename)}); a NIR file must be self-contained")
            if not isinstance(link, h5py.HardLink):
                raise NIRConversionError(f"'{shown_path}': '{here}' is a {type(link).__name__}, not an "
                                         "object of its own (NIR files hold plain groups and datasets)")
            obj = group[key]
            addr = h5py.h5o.get_info(obj.id).addr
            if addr in seen:
                raise NIRConversionError(f"'{shown_path}': '{here}' is linked a second time (a NIR file is a tree)")
            seen.add(addr)
            if isinstance(obj, h5py.Group):
                stack.append((obj, here, depth + 1))
            elif isinstance(obj, h5py.Dataset):
                total += _dataset_bytes(obj, shown_path, here)
                if total > budget:
                    raise NIRConversionError(
                        f"'{shown_path}': its datasets declare more than {budget} bytes (the bound for a "
                        f"file of its size); '{here}' has shape {obj.shape}")
            else:
                raise NIRConversionError(f"'{shown_path}': '{here}' is neither a group nor a dataset")


def _dataset_bytes(ds: h5py.Dataset, shown_path: str, here: str) -> int:
    """The bytes a dataset declares, after refusing external storage, virtual datasets,
    non-built-in filters and data that is neither numeric nor a string."""
    if ds.external:
        files = sorted({display_path(e[0]) for e in ds.external})
        raise NIRConversionError(f"'{shown_path}': '{here}' keeps its data in another file "
                                 f"({shown(', '.join(files))}); a NIR file must be self-contained")
    if ds.is_virtual:
        raise NIRConversionError(f"'{shown_path}': '{here}' is a virtual dataset (its data lives in "
                                 "other files); a NIR file must be self-contained")
    plist = ds.id.get_create_plist()
    for i in range(plist.get_nfilters()):
        code = plist.get_filter(i)[0]
        if code not in BUILTIN_FILTERS:
            raise NIRConversionError(f"'{shown_path}': '{here}' needs the HDF5 filter plugin {code}, "
                                     "which neuromorph does not load")
    dtype = ds.dtype
    if dtype.kind not in "biuf" and h5py.check_string_dtype(dtype) is None:
        raise NIRConversionError(f"'{shown_path}': '{here}' holds {dtype} data (NIR files hold "
                                 "numbers and strings)")
    shape = ds.shape or ()
    count = 1
    for s in shape:
        count *= int(s)
    return count * max(int(dtype.itemsize), 1)


def _check_types(root: h5py.Group, name: str) -> None:
    """Every node's type is one nir knows (iteratively through subgraphs)."""
    stack = [(root, name)]
    while stack:
        group, name = stack.pop()
        raw = group["type"][()]
        kind = raw.decode("utf8", errors="backslashreplace") if isinstance(raw, bytes) else str(raw)
        try:
            nir.str2NIRNode(kind)
        except (AssertionError, KeyError):
            where = f"node '{name}'" if name else "the file's root node"
            raise NIRConversionError(f"{where}: unknown NIR node type {shown(kind)}") from None
        if kind == "NIRGraph":
            children = [(child, f"{name}.{key}" if name else key) for key, child in group["nodes"].items()]
            stack.extend(reversed(children))  # depth first, in the file's order
