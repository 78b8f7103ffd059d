"""NIR interchange: IR graphs to and from the Neuromorphic Intermediate Representation.

NIR carries continuous-time parameters but no time step, no edge delays and no plasticity.
What NIR can express maps one to one and round-trips exactly; what it cannot (scalar
parameters that were broadcast, dt, graph metadata, edge delays, ALIF adaptation,
plasticity, reset by subtraction) travels in a ``"neuromorph"`` metadata entry that our importer restores and
other tools ignore; losses they would see are returned as warnings.

Conventions (``convention=``) say what a foreign file's neuron parameters mean, as the
framework that wrote it means them; the IR's step is forward Euler of the NIR ODEs with
the input held over the step. One table, ``CONVENTIONS`` (``_conventions.py``), holds each
convention's default dt, default reset and parameter fixes; docs/nir-conventions.md
explains each one and names the writer/reader source it was read from:

- ``"nir"`` (default) and ``"snntorch"``: as written (snnTorch writes tau = dt/(1-beta),
  r = tau/dt and w_in = tau_syn/dt at dt = 1e-4, which reproduces ``mem = beta*mem + x``);
- ``"norse"``: corrects what Norse 1.1.0's to_nir writes (tau scaled by dt, norse#411;
  w_in = 1 and IF r = 1 for an unscaled input);
- ``"sinabs"``: per-step neurons (IF r = 1 adds the input unscaled each step), reset by
  subtraction, dt 1 (one step; any other dt only relabels time);
- ``"rockpool"``: exact exponential decays, dt read back from r, reset by subtraction;
- ``"spyx"``: tau = dt/(1-beta) at dt = 1, spikes one step late, reset by subtraction;
- ``"lava-dl"``: NIR's lava_to_nir / nir_to_lava, snnTorch's form at dt = 1e-4, reset to 0;
- ``"auto"``: the convention of the producer recognised from the file (its metadata, its
  node names and parameter layout, ``_conventions.recognise``), else ``"nir"``.

The default stays ``"nir"``, so no file imports differently than before; when the file
looks written by a framework that reads it differently, a NIRImportWarning says so and
names the convention to use. Files written by neuromorph carry their own metadata and are
restored exactly.

Reset (``reset=``): NIR neurons reset to ``v_reset``; NIR cannot say "subtract".
``reset="subtract"`` or ``"value"`` imports every spiking neuron with that mode
(docs/semantics.md); None (the default) keeps neuromorph's own metadata, else the
convention's default (``"subtract"`` for sinabs, rockpool and spyx, else ``"value"``).

How the imported graph's ``dt`` is chosen (the first that applies):

1. the ``dt`` argument of ``from_nir`` / ``read_nir``;
2. the dt stored by neuromorph when it wrote the file (including "unset", None);
3. the dt the file itself gives away (Rockpool's r encodes it);
4. the convention's default (``DEFAULT_DT``): a constant of the writer for snntorch and
   lava-dl (1e-4 s), else an assumption, and then a NIRImportWarning names it and the flag
   to change it if the graph holds neurons whose step rule depends on it.

A convention's corrections use this same dt, so pass the dt that was given to the
writer (Norse's or Spyx's ``to_nir``) if it was not the default.

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
from dataclasses import dataclass
from typing import Union

import h5py
import nir

from ...documents import MAX_FILE_BYTES, check_regular, display_path, shown, write_atomic
from ...errors import ModelFileError, NIRConversionError
from ...ir import Graph
from ._common import one_line
from ._export import export_graph
from ._import import CONVENTIONS, DEFAULT_DT, NIRImportWarning, import_graph, import_with_choice

PathLike = Union[str, "os.PathLike[str]"]

__all__ = [
    "CONVENTIONS", "DEFAULT_DT", "NIRExportWarning", "NIRImport", "NIRImportWarning", "from_nir",
    "read_nir", "read_nir_report", "to_nir", "write_nir",
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

    ``convention`` says what the file's parameters mean (a key of CONVENTIONS, or
    "auto"), see the module docstring; ``dt`` overrides the time step. ``reset`` ("value"
    or "subtract") is the reset mode of every spiking neuron imported: NIR cannot say it,
    so by default (None) a neuron gets the mode neuromorph wrote in its metadata, else the
    convention's (an snnTorch model trained with ``reset_mechanism="subtract"`` needs
    ``reset="subtract"``). An assumed dt that matters, or a convention that disagrees with
    the recognised producer, is a NIRImportWarning; the graph's metadata records the
    convention used, why, and where its dt came from. Unsupported nodes raise
    NIRConversionError.
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
    return from_nir(_read_file(path), dt=dt, convention=convention, reset=reset)


@dataclass(frozen=True)
class NIRImport:
    """What read_nir_report read: the graph, the convention used and why, where its dt
    came from, and the NIRImportWarnings as messages (the CLI prints them)."""

    graph: Graph
    convention: str
    reason: str
    dt_source: str
    warnings: list[str]

    @property
    def resets(self) -> list[str]:
        """The reset modes of the imported spiking neurons."""
        return sorted({n.reset for n in self.graph.nodes.values() if getattr(n, "spiking", False)})


def read_nir_report(path: PathLike, *, dt: float | None = None, convention: str = "nir",
                    reset: str | None = None) -> NIRImport:
    """read_nir, also saying which convention and dt were used and why; its
    NIRImportWarnings are returned, not issued (other warnings pass through)."""
    g = _read_file(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NIRImportWarning)
        graph, choice = import_with_choice(g, dt, convention, reset)
    messages = []
    for w in caught:
        if issubclass(w.category, NIRImportWarning):
            messages.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return NIRImport(graph, choice.convention.name, choice.reason, choice.dt_source, messages)


def _read_file(path: PathLike) -> nir.NIRGraph:
    """The NIR graph in a file, after check_file (see read_nir)."""
    path = os.fspath(path)
    shown_path = display_path(path)
    if not os.path.exists(path):
        raise NIRConversionError(f"NIR file '{shown_path}' does not exist")
    check_file(path)
    try:
        # Our own checks are stricter and name the node; nir's type check would refuse
        # files that we can repair (a batch dim in Input, as Norse writes).
        return nir.read(path, type_check=False)
    except Exception as exc:  # h5py, nir: OSError, KeyError, ValueError, AssertionError, ...
        raise NIRConversionError(f"cannot read NIR file '{shown_path}': {one_line(exc)}") from None


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
