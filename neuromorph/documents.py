"""Versioned, checksummed documents (model files, compiled artifacts): a binary container
with the arrays as raw bytes at their own dtype, or (as older versions wrote) JSON text.

A document is ``{"format": F, "version": V, <key>: payload}``: the payload is JSON data
in which arrays appear as records. Two containers carry it; the first bytes tell which.

**Binary container** (what neuromorph writes; model files version 2, artifacts version 3)::

    offset  size  field
    0       8     magic  89 4E 4D 46 0D 0A 1A 0A  ("\\x89NMF\\r\\n\\x1a\\n", PNG-style: not text)
    8       4     layout, uint32 little-endian: 1, 2 when arrays share bytes, 3 when some are
                  narrowed (:data:`LAYOUTS`)
    12      4     flags, uint32 LE: 0 (reserved; anything else is refused)
    16      8     J, uint64 LE: length of the JSON head in bytes
    24      8     N, uint64 LE: length of the data section in bytes
    32      32    SHA-256 of every other byte of the file: [0, 32) and [64, end)
    64      J     JSON head, UTF-8: {"format": F, "version": V, <key>: payload}
    64+J    pad   zeros up to D = the next multiple of :data:`ALIGN` (64)
    D       N     data section: the arrays' bytes, little-endian, C order

An array in the head is ``{"dtype": NAME, "shape": [d0, ...], "__data__": [offset, nbytes]}``
with ``offset`` relative to D. NAME is one of :data:`DTYPES` (plain numbers: bool, signed
and unsigned 8..64-bit integers, 16..64-bit floats); an array keeps its dtype, so float64
weights round-trip bit-exactly and int8 data takes one byte per value. The writer packs
the arrays in order, each at the next multiple of ALIGN after the previous one's end
(an empty array: ``[0, 0]``), and the reader requires exactly that, so arrays cannot
overlap, be misaligned or leave unreferenced bytes: every offset is a multiple of ALIGN,
``offset + nbytes <= N``, no two non-empty arrays share a byte, and, sorted by offset,
the first starts at 0, each next one at ``align(previous offset + nbytes)``, and N is
the last one's end.

Layout 2 is layout 1 plus one thing: the data section is content-addressed. An array
whose bytes and dtype equal an array written before it in the same document is not
stored again; its reference repeats that array's ``[offset, nbytes]`` exactly (a
compiled artifact's model and its deployment often hold the same weight matrix, and
constant per-neuron arrays repeat). A reference may repeat an earlier span only
exactly (same offset and length; any other overlap is refused), and decodes to a copy
of those bytes, so that no two decoded arrays share memory; what those copies take
counts against :data:`neuromorph.streams.MEMORY_BOUND` with the file itself (a small
file cannot make the reader allocate without bound).
Layout 3 is layout 2 plus narrowed arrays: a float64 array of at least
:data:`NARROW_MIN` values that float32 holds exactly (a weight trained in torch's
float32 always is) is stored as float32, ``{"dtype": "float64", "stored": "float32",
"shape": ..., "__data__": [offset, nbytes]}`` (nbytes: 4 per value), and decodes to
float64 again, bit for bit (a value float32 holds exactly converts back to the same
float64, the sign of a zero included); what the widened copies take counts against
:data:`neuromorph.streams.MEMORY_BOUND` as the repeats do. No other narrowing exists; a
``stored`` key in layout 1 or 2, or with other dtypes, is refused.
The writer stamps layout 1 when no span repeats and nothing is narrowed (such a file is
byte for byte what earlier versions wrote, and they read it), 2 when a span repeats, 3
when an array is narrowed; the reader takes all three, and refuses a repeated span in
layout 1 as an overlap. The file size must be exactly ``D + N``; that is
checked from the 64-byte header and the file's size, and what loading takes against
:data:`neuromorph.streams.MEMORY_BOUND`, before the rest is read. Arrays are views
into the one buffer the file is read into (writeable; no copy per array, but for a
repeated span of layout 2). The padding
bytes are covered by the checksum, not checked to be zero.

**JSON text** (model files version 1, artifacts version 2, as neuromorph wrote them
before; still read): ``{"format": F, "version": V, "sha256": H, <key>: payload}``, ``H``
the SHA-256 of the canonical JSON of the payload (sorted keys, no spaces), arrays
``{"__array__": base64, "dtype": "float64" | "int64", "shape": [...]}``. The same text at
the binary version is read too (its inline arrays may then have any of :data:`DTYPES`):
that is what :func:`dumps_document` makes of a hand-edited payload.

Files are written atomically (temporary file, then os.replace). The checksum only
catches accidents: anyone can recompute it, so nothing read here is trusted
(docs/threat-model.md). Reading refuses, with one line, before doing the work: anything
but a regular file (a FIFO, a device), files above :data:`MAX_FILE_BYTES`, JSON nested
deeper than :data:`MAX_JSON_DEPTH`, ``NaN``/``Infinity`` and numbers that overflow a
float, duplicate keys, arrays whose data does not fill their shape, and in the binary
container: a wrong checksum, a size other than the header's, an unknown layout or
flags, dtypes outside :data:`DTYPES`, and arrays outside, overlapping or between the
packed positions of the data section.
"""
from __future__ import annotations

import base64
import bisect
import hashlib
import io
import json
import math
import os
import re
import stat
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import ModelFileError, NeuromorphError

_DTYPES = {"float64": "<f8", "int64": "<i8"}

MAX_FILE_BYTES = 4 * 2**30
"""The largest file neuromorph reads (model files, artifacts, NIR files): 4 GiB. A larger
one is refused from its size, without reading it."""

MAX_JSON_DEPTH = 100
"""The deepest nesting of JSON arrays and objects accepted (our own documents need
about 10): checked before parsing, so no parser or decoder recursion can run away."""

MAX_ARRAY_DIMS = 32


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` for a message: one line (control characters escaped), at most
    ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def display_path(path: Any, limit: int = 120) -> str:
    """A path for a one-line message: control characters escaped, a very long one cut in
    the middle."""
    text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else str(path)
    if isinstance(text, bytes):
        text = text.decode("utf8", errors="backslashreplace")
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if len(text) <= limit:
        return text
    return f"{text[: limit // 2]}...{text[-limit // 4:]} ({len(text)} characters)"


def encode_array(value: np.ndarray) -> dict[str, Any]:
    """An array as a JSON text record: base64 of its float64 or int64 bytes (the text form
    every version reads; integer and bool arrays become int64, the rest float64)."""
    kind = "int64" if np.issubdtype(value.dtype, np.integer) or value.dtype == bool else "float64"
    data = np.ascontiguousarray(value, dtype=_DTYPES[kind])
    return {"__array__": base64.b64encode(data.tobytes()).decode("ascii"), "dtype": kind,
            "shape": list(value.shape)}


def _shape(shape: Any, where: str) -> tuple[int, ...]:
    """A stored shape: a list of at most MAX_ARRAY_DIMS ints in 0..MAX_FILE_BYTES (no
    array of a readable file has a longer axis, and numpy can make every such shape)."""
    if (not isinstance(shape, list) or len(shape) > MAX_ARRAY_DIMS
            or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_FILE_BYTES
                       for s in shape)):
        raise ModelFileError(f"{where}: corrupted array data (shape {shown(shape)} is not a list "
                             f"of at most {MAX_ARRAY_DIMS} ints >= 0, each at most {MAX_FILE_BYTES})")
    return tuple(shape)


def decode_array(value: Any, where: str, dtypes: dict[str, str] = _DTYPES) -> np.ndarray:
    """A JSON text array record, refusing (ModelFileError) a dtype not in ``dtypes``
    (float64/int64 unless the document's version allows :data:`DTYPES`), a shape that is
    not a list of ints >= 0, and data that does not fill the shape exactly."""
    if not isinstance(value, dict):
        raise ModelFileError(f"{where}: corrupted array data (not an object)")
    kind = value.get("dtype")
    dtype = dtypes.get(kind) if isinstance(kind, str) else None
    if dtype is None:
        raise ModelFileError(f"{where}: unsupported array dtype {shown(kind)}")
    data, shape = value.get("__array__"), value.get("shape")
    if not isinstance(data, str):
        raise ModelFileError(f"{where}: corrupted array data (the data is not a base64 string)")
    shape = _shape(shape, where)
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError as exc:  # binascii.Error
        raise ModelFileError(f"{where}: corrupted array data ({exc})") from None
    size = np.dtype(dtype).itemsize
    count = math.prod(shape)
    if len(raw) != size * count:
        raise ModelFileError(f"{where}: corrupted array data ({len(raw)} bytes for shape {shown(list(shape))}, "
                             f"which needs {size * count})")
    arr = np.frombuffer(raw, dtype=dtype).reshape(shape)
    if kind == "bool":
        _check_bool(arr, where)
    return arr.astype(kind)  # native order, a writeable copy


def _check_bool(arr: np.ndarray, where: str) -> None:
    if arr.size and int(arr.view(np.uint8).max()) > 1:
        raise ModelFileError(f"{where}: corrupted array data (a bool array holds a byte other than 0 or 1)")


DTYPES: dict[str, str] = {
    "bool": "|b1", "int8": "|i1", "uint8": "|u1", "int16": "<i2", "uint16": "<u2", "int32": "<i4",
    "uint32": "<u4", "int64": "<i8", "uint64": "<u8", "float16": "<f2", "float32": "<f4", "float64": "<f8",
}
"""The dtypes an array may have in a binary file (and in JSON text at the binary
version): plain numbers, by name, stored little-endian. Nothing else is ever handed to
numpy from a file: no object, string, structured, complex or datetime dtype."""

_DTYPE_NAMES = {np.dtype(code).newbyteorder("="): name for name, code in DTYPES.items()}


def dtype_name(dtype: np.dtype, where: str = "array") -> str:
    """The :data:`DTYPES` name of ``dtype`` (either byte order), or a ModelFileError."""
    name = _DTYPE_NAMES.get(np.dtype(dtype).newbyteorder("="))
    if name is None:
        raise ModelFileError(f"{where}: cannot store an array of dtype {dtype} (plain numbers only: "
                             f"{', '.join(DTYPES)})")
    return name


class TextArrays:
    """Decodes the inline (base64) arrays of a JSON text document; ``dtypes``: what its
    version allows."""

    def __init__(self, dtypes: dict[str, str] = _DTYPES) -> None:
        self.dtypes = dtypes

    def decode(self, value: Any, where: str) -> np.ndarray | None:
        """The array ``value`` stands for, or None if it is not an array record."""
        if isinstance(value, dict) and "__array__" in value:
            return decode_array(value, where, self.dtypes)
        return None

    def finish(self) -> None:
        """Nothing to check across a text document's arrays (each holds its own data)."""


def encode_tree(value: Any, encode: Callable[[np.ndarray], Any] = encode_array) -> Any:
    """Arrays anywhere inside dicts/lists become array records (``encode``: JSON text
    records by default, or an :class:`ArrayWriter`'s references)."""
    if isinstance(value, np.ndarray):
        return encode(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, dict):
        return {str(k): encode_tree(v, encode) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_tree(v, encode) for v in value]
    return value


def decode_tree(value: Any, where: str, arrays: Any = None) -> Any:
    """Array records anywhere inside dicts/lists become arrays (``arrays``: a
    :class:`TextArrays` (the default: float64/int64 text records) or the
    :class:`BinaryArrays` of a binary file)."""
    arrays = arrays if arrays is not None else TextArrays()
    if isinstance(value, dict):
        arr = arrays.decode(value, where)
        if arr is not None:
            return arr
        return {k: decode_tree(v, where, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_tree(v, where, arrays) for v in value]
    return value


def canonical(payload: Any) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def dumps_document(fmt: str, version: int, key: str, payload: Any) -> str:
    try:
        digest = hashlib.sha256(canonical(payload)).hexdigest()
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{fmt}: content is not JSON-serialisable: {exc}") from None
    doc = {"format": fmt, "version": version, "sha256": digest, key: payload}
    return json.dumps(doc, indent=1, allow_nan=False) + "\n"


class _Refused(Exception):
    """Raised inside json.loads by our hooks (not a ValueError, so it is told apart)."""


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a number (JSON has no NaN or Infinity)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text[:40]} overflows a 64-bit float")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _Refused(f"the key {shown(dup)} appears twice in one object")
    return out


_BRACKET = re.compile(r"[\[\]{}]")


def json_depth(text: str) -> int:
    """The deepest nesting of arrays/objects in JSON text (strings skipped), without
    parsing it: a linear scan, so it is safe on any input. Escaped backslashes and
    quotes are dropped first; then every other piece between quotes is outside strings."""
    if "\\" in text:
        text = text.replace("\\\\", "").replace('\\"', "")
    outside = "".join(text.split('"')[0::2])
    marks = "".join(_BRACKET.findall(outside))
    if not marks:
        return 0
    codes = np.frombuffer(marks.encode("ascii"), dtype=np.uint8)
    depth = np.cumsum(np.where((codes == ord("[")) | (codes == ord("{")), 1, -1))
    return int(depth.max())


def parse_json(data: str | bytes, source: str, what: str,
               error: type[NeuromorphError] = ModelFileError) -> Any:
    """JSON text -> data, refusing with one line (``error``) what is not valid JSON,
    nested deeper than MAX_JSON_DEPTH, ``NaN``/``Infinity``, a number that overflows a
    float, an integer longer than Python parses (4300 digits) and a duplicate key."""
    bad = f"{source}: not a {what}"
    try:
        text = data.decode(json.detect_encoding(data)) if isinstance(data, (bytes, bytearray)) else data
    except (UnicodeDecodeError, LookupError):
        raise error(f"{bad} (not valid JSON; truncated or foreign?)") from None
    if not isinstance(text, str):
        raise error(f"{bad} (not JSON text)")
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise error(f"{bad} (JSON nested {depth} levels deep; the bound is {MAX_JSON_DEPTH})")
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float,
                          object_pairs_hook=_unique_keys)
    except _Refused as exc:
        raise error(f"{bad} ({exc})") from None
    except json.JSONDecodeError:
        raise error(f"{bad} (not valid JSON; truncated or foreign?)") from None
    except (ValueError, RecursionError) as exc:  # an integer beyond Python's digit limit
        raise error(f"{bad} (unreadable JSON: {' '.join(str(exc).split())[:80]})") from None


def loads_document(data: str | bytes, fmt: str, version: int, key: str, source: str, what: str) -> Any:
    """The checked payload of a JSON text document of exactly ``version`` (arrays still
    encoded), or a one-line ModelFileError."""
    return _loads_text(data, fmt, key, source, what, (version,), None).payload


@dataclass(frozen=True)
class Document:
    """A checked document: its payload (arrays still as records), its version, and what
    decodes its arrays (:class:`TextArrays` or :class:`BinaryArrays`, both with
    ``decode(value, where)``; call ``finish()`` once every array was decoded)."""

    payload: Any
    version: int
    arrays: Any


def _versions(versions: tuple[int, ...]) -> str:
    return " and ".join(map(str, versions)) if len(versions) <= 2 else ", ".join(map(str, versions))


def _unsupported(source: str, what: str, version: Any, versions: tuple[int, ...]) -> ModelFileError:
    return ModelFileError(f"{source}: {what} version {shown(version)} is not supported "
                          f"(this neuromorph reads {_versions(versions)})")


def _loads_text(data: str | bytes | bytearray, fmt: str, key: str, source: str, what: str,
                versions: tuple[int, ...], binary_version: int | None) -> Document:
    doc = parse_json(bytes(data) if isinstance(data, bytearray) else data, source, what)
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise ModelFileError(f"{source}: not a {what} (no '{fmt}' header)")
    version = doc.get("version")
    if isinstance(version, bool) or version not in versions:
        raise _unsupported(source, what, version, versions)
    if key not in doc:
        raise ModelFileError(f"{source}: not a {what} (no '{key}' content)")
    payload = doc[key]
    if hashlib.sha256(canonical(payload)).hexdigest() != doc.get("sha256"):
        raise ModelFileError(f"{source}: checksum mismatch, the file is corrupted")
    return Document(payload, int(version), TextArrays(DTYPES if version == binary_version else _DTYPES))


# ------------------------------------------------------------------ the binary container

MAGIC = b"\x89NMF\r\n\x1a\n"
"""The first 8 bytes of a binary document (PNG-style: a high byte, so no text file starts
so, and CR LF / SUB / LF, so a text-mode transfer that mangles line ends is caught)."""

LAYOUT = 1
"""The byte layout of a binary container whose arrays are all stored once each (header
field 2). The document inside has its own version (per format)."""

LAYOUT_SHARED = 2
"""The byte layout of a container in which references may repeat an array's span
(identical arrays stored once; module docstring)."""

LAYOUT_NARROW = 3
"""Layout 2 plus float64 arrays stored as float32 where that is exact (module docstring)."""

LAYOUTS = (LAYOUT, LAYOUT_SHARED, LAYOUT_NARROW)
"""The byte layouts this neuromorph reads."""

NARROW_MIN = 64
"""The fewest values of a float64 array that the writer narrows to float32 (smaller ones,
such as neuron parameters, gain less than the ``stored`` key costs in the head)."""

ALIGN = 64
"""Alignment of the data section and of every array in it (bytes)."""

_HEAD = struct.Struct("<8sIIQQ")  # magic, layout, flags, JSON length, data length
HEADER_BYTES = _HEAD.size + 32  # then the SHA-256
assert HEADER_BYTES == 64


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def is_binary(data: bytes | bytearray | memoryview) -> bool:
    """Do these first bytes start a binary document (or a truncated start of one)?"""
    head = bytes(data[: len(MAGIC)])
    return head == MAGIC or (0 < len(head) < len(MAGIC) and MAGIC.startswith(head))


_COMPARE_CHUNK = 2**20


def _same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    """Do two C-contiguous arrays of the same size hold the same bytes? Compared a chunk
    at a time (a small first chunk: arrays that differ usually differ early), so that no
    temporary of the arrays' size is made."""
    x, y = a.reshape(-1).view(np.uint8), b.reshape(-1).view(np.uint8)
    start, step = 0, 4096
    while start < x.size:
        if not np.array_equal(x[start:start + step], y[start:start + step]):
            return False
        start, step = start + step, _COMPARE_CHUNK
    return True


class ArrayWriter:
    """Collects the arrays of a document being written: ``encode(array)`` returns the
    reference that stands for it in the JSON head and keeps the (little-endian,
    contiguous) data for :func:`write_binary`, packed in order, each at the first
    multiple of ALIGN after the one before (an empty array: offset 0, no bytes).

    An array with the same dtype and bytes as one encoded before is stored once: its
    reference repeats that one's span (``shared`` counts such references; the file is
    then layout 2, see the module docstring). Arrays are compared byte for byte (no hash
    to trust), so ``-0.0`` and ``0.0`` stay apart: small ones (up to :data:`SMALL`
    bytes, such as the scalars of neuron parameters) by their bytes as a dict key, larger
    ones against the earlier arrays of the same dtype and size."""

    SMALL = 4096

    def __init__(self) -> None:
        self.parts: list[tuple[int, np.ndarray]] = []
        self.size = 0
        self.shared = 0
        self.narrowed = 0
        self._small: dict[tuple[str, bytes], int] = {}
        self._large: dict[tuple[str, int], list[tuple[int, np.ndarray]]] = {}

    def _stored_at(self, name: str, data: np.ndarray) -> int | None:
        """The offset of an array stored before with this dtype and these bytes, if any."""
        if data.nbytes <= self.SMALL:
            return self._small.get((name, data.tobytes()))
        return next((offset for offset, other in self._large.get((name, data.nbytes), ())
                     if _same_bytes(data, other)), None)

    def encode(self, value: np.ndarray) -> dict[str, Any]:
        arr = np.asarray(value)
        name = dtype_name(arr.dtype)
        data = np.asarray(arr, dtype=DTYPES[name], order="C")
        if data.nbytes == 0:  # an empty array has no bytes: offset 0
            return {"dtype": name, "shape": list(arr.shape), "__data__": [0, 0]}
        record: dict[str, Any] = {"dtype": name}
        stored = name
        if name == "float64" and data.size >= NARROW_MIN:
            narrow = _float32_exact(data)
            if narrow is not None:
                data, stored = narrow, "float32"
                record["stored"] = stored
                self.narrowed += 1
        record["shape"] = list(arr.shape)
        offset = self._stored_at(stored, data)
        if offset is not None:
            self.shared += 1
            return {**record, "__data__": [offset, data.nbytes]}
        offset = _align(self.size)
        self.parts.append((offset, data))
        if data.nbytes <= self.SMALL:
            self._small[(stored, data.tobytes())] = offset
        else:
            self._large.setdefault((stored, data.nbytes), []).append((offset, data))
        self.size = offset + data.nbytes
        return {**record, "__data__": [offset, data.nbytes]}

    @property
    def layout(self) -> int:
        """The byte layout the arrays need: LAYOUT_NARROW if an array is narrowed, else
        LAYOUT_SHARED if a span is repeated, else LAYOUT."""
        return LAYOUT_NARROW if self.narrowed else LAYOUT_SHARED if self.shared else LAYOUT


def _float32_exact(data: np.ndarray) -> np.ndarray | None:
    """``data`` (float64) as little-endian float32 if float32 holds every value exactly,
    else None. Equal values are equal bits here: a float32 zero keeps its sign, and NaN
    (never equal) is not narrowed."""
    with np.errstate(over="ignore", invalid="ignore"):  # a value beyond float32: inf, unequal
        narrow = data.astype("<f4")
        return narrow if np.array_equal(narrow, data) else None


def write_binary(f: Any, fmt: str, version: int, key: str, payload: Any, arrays: ArrayWriter) -> int:
    """Write the binary document to the binary file object ``f`` (positioned at 0, seekable);
    returns its size. ``payload``: JSON data whose arrays are ``arrays``' references."""
    try:
        head = json.dumps({"format": fmt, "version": version, key: payload}, separators=(",", ":"),
                          allow_nan=False).encode("ascii")
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{fmt}: content is not JSON-serialisable: {exc}") from None
    start = _align(HEADER_BYTES + len(head))
    fixed = _HEAD.pack(MAGIC, arrays.layout, 0, len(head), arrays.size)
    digest = hashlib.sha256(fixed)
    f.write(fixed + bytes(32))

    def put(chunk: Any) -> None:
        digest.update(chunk)
        f.write(chunk)

    put(head + bytes(start - HEADER_BYTES - len(head)))
    at = 0
    for offset, data in arrays.parts:
        if offset > at:
            put(bytes(offset - at))
        put(memoryview(data.reshape(-1).view(np.uint8)))
        at = offset + data.nbytes
    f.seek(_HEAD.size)
    f.write(digest.digest())
    return start + arrays.size


def dumps_binary(fmt: str, version: int, key: str, payload: Any, arrays: ArrayWriter) -> bytes:
    """The binary document as bytes (:func:`write_binary` into memory)."""
    buf = io.BytesIO()
    write_binary(buf, fmt, version, key, payload, arrays)
    return buf.getvalue()


def _check_header(head: bytes | bytearray | memoryview, size: int, source: str,
                  what: str) -> tuple[int, int, int, int]:
    """``(J, D, N, layout)`` from a binary file's first bytes and its size, or a one-line
    refusal: truncated, another layout, flags, or a size other than the header declares."""
    if len(head) < HEADER_BYTES:
        raise ModelFileError(f"{source}: not a complete {what} (truncated: {size} bytes, shorter than "
                             f"the {HEADER_BYTES}-byte header)")
    magic, layout, flags, j, n = _HEAD.unpack(bytes(head[: _HEAD.size]))
    if layout not in LAYOUTS:
        raise ModelFileError(f"{source}: {what} in binary layout {layout} is not supported (this "
                             f"neuromorph reads layouts {_versions(LAYOUTS)}; written by a newer "
                             "neuromorph?)")
    if flags:
        raise ModelFileError(f"{source}: {what} has header flags {flags:#x}, which this neuromorph "
                             "does not know (they must be 0)")
    start = _align(HEADER_BYTES + j)
    if start + n != size:
        if start + n > size:
            raise ModelFileError(f"{source}: not a complete {what} (truncated: its header declares "
                                 f"{start + n} bytes, the file has {size})")
        raise ModelFileError(f"{source}: {what} is {size} bytes, but its header declares {start + n} "
                             "(data after its end)")
    return j, start, n, layout


class BinaryArrays:
    """Decodes the array references of a binary document into views of its buffer.

    ``decode`` checks one reference (exact keys, a :data:`DTYPES` name, the shape, an
    aligned offset, bytes inside the data section that fill the shape exactly, no byte
    shared with an array decoded before, except in layout 2 an exact repeat of an earlier
    span, which decodes to a copy: no two decoded arrays alias); ``finish`` then checks
    that the decoded arrays tile the data section as the writer packs them (no gap
    beyond alignment, nothing unreferenced)."""

    def __init__(self, buf: bytearray, start: int, size: int, source: str, layout: int = LAYOUT) -> None:
        self.buf, self.start, self.size, self.source = buf, start, size, source
        self.spans: list[tuple[int, int, str]] = []  # sorted (offset, end, where) of non-empty arrays
        self.empty = 0
        self.shared = layout in (LAYOUT_SHARED, LAYOUT_NARROW)  # may a reference repeat a span?
        self.narrow = layout == LAYOUT_NARROW  # may an array be stored narrowed?
        self.repeated = 0  # bytes decoded again from repeated spans, or widened

    def _claim(self, offset: int, end: int, where: str) -> bool:
        """Claim ``[offset, end)``; True if it is an exact repeat of a claimed span (layout 2)."""
        i = bisect.bisect_left(self.spans, (offset, end, where))
        for other in self.spans[max(0, i - 1): i + 1]:
            if other[0] < end and offset < other[1]:
                if self.shared and (other[0], other[1]) == (offset, end):
                    self._copies(end - offset, where, "repeated")
                    return True
                raise ModelFileError(f"{where}: array data [{offset}, {end}) overlaps the array data "
                                     f"[{other[0]}, {other[1]}) of {other[2]}")
        self.spans.insert(i, (offset, end, where))
        return False

    def _copies(self, nbytes: int, where: str, why: str) -> None:
        """Count ``nbytes`` of decoded copies against the memory bound."""
        from .streams import check_memory

        self.repeated += nbytes
        try:  # what read_document checked before reading, plus these copies
            check_memory(self.start + 2 * self.size + self.repeated, f"decoding this file's {why} arrays")
        except NeuromorphError as exc:
            raise ModelFileError(f"{where}: {exc}") from None

    def decode(self, value: Any, where: str) -> np.ndarray | None:
        if not isinstance(value, dict):
            return None
        if "__data__" not in value:
            if "__array__" in value:
                raise ModelFileError(f"{where}: an inline (base64) array in a binary file (its arrays "
                                     "are references into the data section)")
            return None
        narrowed = "stored" in value
        if set(value) != {"dtype", "shape", "__data__"} | ({"stored"} if narrowed else set()):
            raise ModelFileError(f"{where}: corrupted array reference (keys {shown(sorted(value))}, expected "
                                 "['__data__', 'dtype', 'shape'] and, in layout 3, 'stored')")
        kind = value["dtype"]
        if not isinstance(kind, str) or kind not in DTYPES:
            raise ModelFileError(f"{where}: unsupported array dtype {shown(kind)} (plain numbers only: "
                                 f"{', '.join(DTYPES)})")
        if narrowed:
            if not self.narrow:
                raise ModelFileError(f"{where}: a narrowed array ('stored') in binary layout 1 or 2 (only "
                                     "layout 3 narrows)")
            if (kind, value["stored"]) != ("float64", "float32"):
                raise ModelFileError(f"{where}: unsupported narrowing of {shown(kind)} to "
                                     f"{shown(value['stored'])} (only float64 stored as float32)")
        shape = _shape(value["shape"], where)
        span = value["__data__"]
        if (not isinstance(span, list) or len(span) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in span)):
            raise ModelFileError(f"{where}: corrupted array reference (__data__ {shown(span)} is not "
                                 "[offset, nbytes], two ints >= 0)")
        offset, nbytes = span
        if offset % ALIGN:
            raise ModelFileError(f"{where}: array data at offset {offset} is misaligned (offsets are "
                                 f"multiples of {ALIGN})")
        if offset + nbytes > self.size:
            raise ModelFileError(f"{where}: array data [{offset}, {offset + nbytes}) points outside the "
                                 f"data section ({self.size} bytes)")
        dtype = np.dtype(DTYPES[value["stored"] if narrowed else kind])
        count = math.prod(shape)
        if count * dtype.itemsize != nbytes:
            stored = f"{kind} stored as {value['stored']}" if narrowed else kind
            raise ModelFileError(f"{where}: corrupted array reference (shape {list(shape)} of {stored} needs "
                                 f"{count * dtype.itemsize} bytes, the reference has {nbytes})")
        if count == 0:
            self.empty += 1
            return np.zeros(shape, np.dtype(DTYPES[kind]).newbyteorder("="))
        repeat = self._claim(offset, offset + nbytes, where)
        arr = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.start + offset).reshape(shape)
        if narrowed:  # widened to float64: exact (module docstring)
            self._copies(8 * count, where, "narrowed")
            return arr.astype(np.float64)
        if kind == "bool":
            _check_bool(arr, where)
        if not arr.dtype.isnative:
            return arr.astype(dtype.newbyteorder("="))
        return arr.copy() if repeat else arr

    def finish(self) -> None:
        """Refuse (one line) data-section bytes that belong to no decoded array, beyond
        the alignment padding after each (the writer's packing)."""
        end = 0
        for offset, stop, where in self.spans:
            if offset != _align(end):
                raise ModelFileError(f"{self.source}: {offset - end} bytes of the data section before "
                                     f"offset {offset} ({where}) belong to no array")
            end = stop
        if end != self.size:
            raise ModelFileError(f"{self.source}: the last {self.size - end} bytes of the data section "
                                 "belong to no array")


def _loads_binary(buf: bytearray, fmt: str, key: str, source: str, what: str,
                  versions: tuple[int, ...], binary_version: int) -> Document:
    j, start, n, layout = _check_header(memoryview(buf)[:HEADER_BYTES], len(buf), source, what)
    view = memoryview(buf)
    digest = hashlib.sha256(view[: _HEAD.size])
    digest.update(view[HEADER_BYTES:])
    if digest.digest() != bytes(view[_HEAD.size: HEADER_BYTES]):
        raise ModelFileError(f"{source}: checksum mismatch, the file is corrupted")
    doc = parse_json(bytes(view[HEADER_BYTES: HEADER_BYTES + j]), source, what)
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise ModelFileError(f"{source}: not a {what} (no '{fmt}' header)")
    version = doc.get("version")
    if isinstance(version, bool) or version not in versions:
        raise _unsupported(source, what, version, versions)
    if version != binary_version:
        raise ModelFileError(f"{source}: a binary {what} must be version {binary_version}, not "
                             f"{shown(version)}")
    if set(doc) != {"format", "version", key}:
        raise ModelFileError(f"{source}: not a {what} (keys {shown(sorted(doc))}, expected format, "
                             f"version and {key})")
    return Document(doc[key], int(version), BinaryArrays(buf, start, n, source, layout))


def loads_any(data: str | bytes | bytearray, fmt: str, key: str, source: str, what: str, *,
              versions: tuple[int, ...], binary_version: int) -> Document:
    """The checked document in ``data``, binary (by its first bytes) or JSON text, of one
    of ``versions`` (binary: exactly ``binary_version``); a one-line ModelFileError
    otherwise. Binary arrays become writeable views of one buffer (``bytes`` are copied
    into a ``bytearray`` once, for that)."""
    if isinstance(data, (bytes, bytearray)) and is_binary(data):
        buf = data if isinstance(data, bytearray) else bytearray(data)
        return _loads_binary(buf, fmt, key, source, what, versions, binary_version)
    return _loads_text(data, fmt, key, source, what, versions, binary_version)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def file_kind(path: str | os.PathLike[str], error: type[NeuromorphError] = NeuromorphError) -> str:
    """``"file"`` (a regular file), ``"missing"`` or ``"directory"``, without opening it.
    Anything else (a FIFO, /dev/zero, a socket) and paths the system refuses (too long,
    no permission) are a one-line ``error``: reading them would block, never end or fail
    later."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except ValueError:  # an embedded NUL character
        raise error(f"{display_path(path)!r}: not a valid file name") from None
    except OSError as exc:
        raise error(f"{display_path(path)}: cannot read ({exc.strerror or exc})") from None
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    raise error(f"{display_path(path)}: is {_kind(mode)}, not a regular file")


def check_regular(path: str | os.PathLike[str], error: type[NeuromorphError] = ModelFileError) -> os.stat_result:
    """The stat of a regular file of at most MAX_FILE_BYTES, or a one-line ``error``
    (no such file, a directory, a FIFO or device, too large). Opens nothing."""
    shown_path = display_path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{shown_path}: no such file") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        raise error(f"{shown_path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{shown_path}: is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{shown_path}: is {_kind(st.st_mode)}, not a regular file")
    if st.st_size > MAX_FILE_BYTES:
        raise error(f"{shown_path}: {st.st_size} bytes is larger than the bound of "
                    f"{MAX_FILE_BYTES} bytes (4 GiB)")
    return st


def _open_regular(path: str | os.PathLike[str], shown_path: str) -> tuple[Any, os.stat_result]:
    """An unbuffered binary file object of a regular file of at most MAX_FILE_BYTES, and
    its fstat (after check_regular)."""
    check_regular(path)
    try:
        # O_NONBLOCK: should the path be swapped for a FIFO after the check, opening it
        # does not block; fstat below then refuses it.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ModelFileError(f"{shown_path}: cannot read ({exc.strerror or exc})") from None
    f = os.fdopen(fd, "rb", buffering=0)
    st = os.fstat(f.fileno())
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE_BYTES:
        f.close()
        raise ModelFileError(f"{shown_path}: changed while being opened (not a regular file "
                             "of at most 4 GiB)")
    return f, st


def _read_rest(f: Any, size: int, shown_path: str) -> bytes:
    """``f`` from where it is to its end (``size``: its size when opened; it is read to
    the end in case it grew, or is a /proc file of size 0)."""
    try:
        parts = [f.read(size) if size else b""]
        total = len(parts[0])
        while True:
            more = f.read(2**20)
            if not more:
                break
            total += len(more)
            if total > MAX_FILE_BYTES:
                raise ModelFileError(f"{shown_path}: grew beyond {MAX_FILE_BYTES} bytes while read")
            parts.append(more)
    except OSError as exc:
        raise ModelFileError(f"{shown_path}: cannot read ({exc.strerror or exc})") from None
    return b"".join(parts) if len(parts) > 1 else parts[0]


def read_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a regular file of at most MAX_FILE_BYTES; anything else (a FIFO,
    a device such as /dev/zero, a directory, a larger file) is refused unread."""
    shown_path = display_path(path)
    f, st = _open_regular(path, shown_path)
    with f:
        return _read_rest(f, st.st_size, shown_path)


def _read_into(f: Any, view: memoryview, shown_path: str) -> None:
    got = 0
    try:
        while got < len(view):
            n = f.readinto(view[got:])
            if not n:
                raise ModelFileError(f"{shown_path}: changed while being read (shorter than when opened)")
            got += n
        if f.read(1):
            raise ModelFileError(f"{shown_path}: changed while being read (longer than its header declares)")
    except OSError as exc:
        raise ModelFileError(f"{shown_path}: cannot read ({exc.strerror or exc})") from None


def read_document(path: str | os.PathLike[str], fmt: str, key: str, what: str, *,
                  versions: tuple[int, ...], binary_version: int) -> Document:
    """The checked document in a file (:func:`loads_any`). A binary file's header is
    checked against the file's size, and what loading it would take (the file, plus one
    copy of its arrays) against :data:`neuromorph.streams.MEMORY_BOUND`, before anything
    else is read or allocated; it is then read into one buffer that its arrays view."""
    from .streams import check_memory

    source = display_path(path)
    f, st = _open_regular(path, source)
    with f:
        try:
            head = f.read(HEADER_BYTES) if st.st_size else b""
        except OSError as exc:
            raise ModelFileError(f"{source}: cannot read ({exc.strerror or exc})") from None
        head = head or b""
        if not is_binary(head):
            try:
                f.seek(0)  # read as read_file does: one buffer, no join of the head and the rest
            except OSError as exc:
                raise ModelFileError(f"{source}: cannot read ({exc.strerror or exc})") from None
            return _loads_text(_read_rest(f, st.st_size, source), fmt, key, source, what, versions,
                               binary_version)
        _, start, n, _ = _check_header(head, st.st_size, source, what)
        try:
            check_memory(start + 2 * n, f"loading this {what}")
        except NeuromorphError as exc:
            raise ModelFileError(f"{source}: {exc}") from None
        buf = bytearray(start + n)
        buf[:HEADER_BYTES] = head
        _read_into(f, memoryview(buf)[HEADER_BYTES:], source)
    return _loads_binary(buf, fmt, key, source, what, versions, binary_version)


def write_atomic(path: str | os.PathLike[str], data: bytes | Callable[[str], None]) -> Path:
    """Write a file so that readers see either the old file or the complete new one.

    ``data``: the bytes, or a function that writes the file at the temporary path it is
    given (for writers that take a file name, such as ``nir.write``); its exceptions pass
    through and the temporary file is removed. The one atomic writer of the project: model
    files, artifacts, NIR files, result streams and figures all go through it. An OS
    error (missing folder, permissions, full disk, a name too long) is a one-line
    ModelFileError.
    """
    p = Path(path)
    directory = p.parent if str(p.parent) else Path(".")
    tmp = None
    try:
        if not directory.is_dir():
            raise ModelFileError(f"{p}: folder {directory} does not exist")
        if p.exists() and not p.is_file():  # a rename would replace a folder, a FIFO, /dev/null
            raise ModelFileError(f"{p}: is a directory" if p.is_dir() else
                                 f"{p}: is not a regular file (a FIFO or a device)")
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name[:64]}.", suffix=".tmp", dir=directory)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a model file is an ordinary file
        with os.fdopen(fd, "wb") as f:
            if not callable(data):
                f.write(data)
        if callable(data):
            data(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, p)
        tmp = None
    except OSError as exc:
        raise ModelFileError(f"{p}: cannot write ({exc.strerror or exc})") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
    return p
