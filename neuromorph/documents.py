"""Versioned, checksummed JSON documents (model files, compiled artifacts).

Layout: ``{"format": F, "version": V, "sha256": H, <key>: payload}`` where ``H`` is the
SHA-256 of the canonical JSON of the payload (sorted keys, no spaces), so any change to
the payload is caught. Arrays are base64 of little-endian float64 or int64 bytes with
their shape: bit-exact. Files are written atomically (temporary file, then os.replace).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import ModelFileError

_DTYPES = {"float64": "<f8", "int64": "<i8"}


def encode_array(value: np.ndarray) -> dict[str, Any]:
    kind = "int64" if np.issubdtype(value.dtype, np.integer) or value.dtype == bool else "float64"
    data = np.ascontiguousarray(value, dtype=_DTYPES[kind])
    return {"__array__": base64.b64encode(data.tobytes()).decode("ascii"), "dtype": kind,
            "shape": list(value.shape)}


def decode_array(value: dict[str, Any], where: str) -> np.ndarray:
    dtype = _DTYPES.get(value.get("dtype"))  # type: ignore[arg-type]
    if dtype is None:
        raise ModelFileError(f"{where}: unsupported array dtype {value.get('dtype')!r}")
    try:
        raw = base64.b64decode(value["__array__"], validate=True)
        shape = tuple(int(s) for s in value["shape"])
        return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(value["dtype"])  # native order
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelFileError(f"{where}: corrupted array data ({exc})") from None


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


def loads_document(data: str | bytes, fmt: str, version: int, key: str, source: str, what: str) -> Any:
    """The checked payload of a document, or a one-line ModelFileError."""
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelFileError(f"{source}: not a {what} (not valid JSON; truncated or foreign?)") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise ModelFileError(f"{source}: not a {what} (no '{fmt}' header)")
    if doc.get("version") != version:
        raise ModelFileError(
            f"{source}: {what} version {doc.get('version')!r} is not supported (this neuromorph reads {version})"
        )
    payload = doc.get(key)
    if hashlib.sha256(canonical(payload)).hexdigest() != doc.get("sha256"):
        raise ModelFileError(f"{source}: checksum mismatch, the file is corrupted")
    return payload


def read_file(path: str | os.PathLike[str]) -> bytes:
    p = Path(path)
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{p}: is a directory, not a file") from None
    except OSError as exc:
        raise ModelFileError(f"{p}: cannot read ({exc.strerror})") from None


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
    if not directory.is_dir():
        raise ModelFileError(f"{p}: folder {directory} does not exist")
    if p.is_dir():
        raise ModelFileError(f"{p}: is a directory")
    tmp = None
    try:
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
