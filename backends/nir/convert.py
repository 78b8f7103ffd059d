"""NIR interchange: IR graphs to and from the Neuromorphic Intermediate Representation.

NIR carries continuous-time parameters but no time step, no edge delays and no plasticity.
What NIR can express maps one to one and round-trips exactly; what it cannot (scalar
parameters that were broadcast, dt, graph metadata, edge delays, ALIF adaptation,
plasticity) travels in a ``"neuromorph"`` metadata entry that our importer restores and
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

from ...documents import write_atomic
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


def from_nir(g: nir.NIRGraph, *, dt: float | None = None, convention: str = "nir") -> Graph:
    """The IR graph for a NIR graph (written by neuromorph, snnTorch, Norse, ...).

    ``convention`` says what the file's parameters mean, see the module docstring;
    ``dt`` overrides the time step. Unsupported nodes raise NIRConversionError.
    """
    return import_graph(g, dt, convention)


def read_nir(path: PathLike, *, dt: float | None = None, convention: str = "nir") -> Graph:
    """Read a NIR file into an IR graph; bad files raise NIRConversionError (one line)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise NIRConversionError(f"NIR file '{path}' does not exist")
    _check_file(path)
    try:
        # Our own checks are stricter and name the node; nir's type check would refuse
        # files that we can repair (a batch dim in Input, as Norse writes).
        g = nir.read(path, type_check=False)
    except Exception as exc:  # h5py, nir: OSError, KeyError, ValueError, AssertionError, ...
        raise NIRConversionError(f"cannot read NIR file '{path}': {one_line(exc)}") from None
    return from_nir(g, dt=dt, convention=convention)


def _check_file(path: str) -> None:
    """Refuse non-HDF5, non-NIR and truncated files, and name unknown node types, before
    nir.read turns them into a bare KeyError or AssertionError."""
    try:
        with h5py.File(path, "r") as f:
            if "node" not in f or not isinstance(f["node"], h5py.Group) or "type" not in f["node"]:
                raise NIRConversionError(f"'{path}' is an HDF5 file but not a NIR graph (no 'node')")
            _check_types(f["node"], "")
    except NIRConversionError:
        raise
    except Exception as exc:
        raise NIRConversionError(
            f"cannot read NIR file '{path}' (not HDF5, truncated or corrupted): {one_line(exc)}"
        ) from None


def _check_types(group: h5py.Group, name: str) -> None:
    raw = group["type"][()]
    kind = raw.decode("utf8") if isinstance(raw, bytes) else str(raw)
    try:
        nir.str2NIRNode(kind)
    except (AssertionError, KeyError):
        where = f"node '{name}'" if name else "the file's root node"
        raise NIRConversionError(f"{where}: unknown NIR node type '{kind}'") from None
    if kind == "NIRGraph":
        for key, child in group["nodes"].items():
            _check_types(child, f"{name}.{key}" if name else key)
