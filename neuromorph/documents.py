"""Versioned, checksummed JSON documents (model files, compiled artifacts).

Layout: ``{"format": F, "version": V, "sha256": H, <key>: payload}`` where ``H`` is the
SHA-256 of the canonical JSON of the payload (sorted keys, no spaces), so any change to
the payload is caught. Arrays are base64 of little-endian float64 or int64 bytes with
their shape: bit-exact. Files are written atomically (temporary file, then os.replace).

The checksum only catches accidents: anyone can recompute it, so nothing read here is
trusted (docs/threat-model.md). Reading refuses, with one line, before doing the work:
anything but a regular file (a FIFO, a device), files above :data:`MAX_FILE_BYTES`,
JSON nested deeper than :data:`MAX_JSON_DEPTH`, ``NaN``/``Infinity`` and numbers that
overflow a float, duplicate keys, and arrays whose data does not fill their shape.
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import stat
import tempfile
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
    kind = "int64" if np.issubdtype(value.dtype, np.integer) or value.dtype == bool else "float64"
    data = np.ascontiguousarray(value, dtype=_DTYPES[kind])
    return {"__array__": base64.b64encode(data.tobytes()).decode("ascii"), "dtype": kind,
            "shape": list(value.shape)}


def decode_array(value: Any, where: str) -> np.ndarray:
    """An encoded array, refusing (ModelFileError) a dtype other than float64/int64, a
    shape that is not a list of ints >= 0, and data that does not fill the shape exactly."""
    if not isinstance(value, dict):
        raise ModelFileError(f"{where}: corrupted array data (not an object)")
    kind = value.get("dtype")
    dtype = _DTYPES.get(kind) if isinstance(kind, str) else None
    if dtype is None:
        raise ModelFileError(f"{where}: unsupported array dtype {shown(kind)}")
    data, shape = value.get("__array__"), value.get("shape")
    if not isinstance(data, str):
        raise ModelFileError(f"{where}: corrupted array data (the data is not a base64 string)")
    if (not isinstance(shape, list) or len(shape) > MAX_ARRAY_DIMS
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
        raise ModelFileError(f"{where}: corrupted array data (shape {shown(shape)} is not a list "
                             f"of at most {MAX_ARRAY_DIMS} ints >= 0)")
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError as exc:  # binascii.Error
        raise ModelFileError(f"{where}: corrupted array data ({exc})") from None
    count = math.prod(shape)
    if len(raw) != 8 * count:
        raise ModelFileError(f"{where}: corrupted array data ({len(raw)} bytes for shape {shown(shape)}, "
                             f"which needs {8 * count})")
    return np.frombuffer(raw, dtype=dtype).reshape(tuple(shape)).astype(kind)  # native order


def encode_tree(value: Any) -> Any:
    """Arrays anywhere inside dicts/lists become encoded arrays."""
    if isinstance(value, np.ndarray):
        return encode_array(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, dict):
        return {str(k): encode_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_tree(v) for v in value]
    return value


def decode_tree(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        if "__array__" in value:
            return decode_array(value, where)
        return {k: decode_tree(v, where) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_tree(v, where) for v in value]
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
    """The checked payload of a document, or a one-line ModelFileError."""
    doc = parse_json(data, source, what)
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise ModelFileError(f"{source}: not a {what} (no '{fmt}' header)")
    if doc.get("version") != version or isinstance(doc.get("version"), bool):
        raise ModelFileError(
            f"{source}: {what} version {shown(doc.get('version'))} is not supported (this neuromorph reads {version})"
        )
    if key not in doc:
        raise ModelFileError(f"{source}: not a {what} (no '{key}' content)")
    payload = doc[key]
    if hashlib.sha256(canonical(payload)).hexdigest() != doc.get("sha256"):
        raise ModelFileError(f"{source}: checksum mismatch, the file is corrupted")
    return payload


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


def read_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a regular file of at most MAX_FILE_BYTES; anything else (a FIFO,
    a device such as /dev/zero, a directory, a larger file) is refused unread."""
    shown_path = display_path(path)
    check_regular(path)
    try:
        # O_NONBLOCK: should the path be swapped for a FIFO after the check, opening it
        # does not block; fstat below then refuses it.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ModelFileError(f"{shown_path}: cannot read ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb", buffering=0) as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE_BYTES:
            raise ModelFileError(f"{shown_path}: changed while being opened (not a regular file "
                                 "of at most 4 GiB)")
        try:
            parts = [f.read(st.st_size) if st.st_size else b""]
            total = len(parts[0])
            while True:  # to the end, in case it grew (or is a /proc file of size 0)
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
