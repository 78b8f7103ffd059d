"""The binary container of model files (version 2) and artifacts (version 3): its byte
layout, arrays at their own dtype, old JSON files still loading, and every refusal of
a damaged or hostile file in one line (docs/threat-model.md).

The helpers below parse and build the layout from its description in
neuromorph/documents.py, independently of the reader, and recompute the checksum as
anyone could, so the checks behind it are reached."""
import hashlib
import json
import struct
import tracemalloc

import numpy as np
import pytest

import neuromorph as nm
from neuromorph import artifact, documents, model_file, streams
from neuromorph.compile import compile_graph
from neuromorph.errors import ModelFileError
from neuromorph.ir import Graph
from neuromorph.models import ZOO, get

MAGIC = b"\x89NMF\r\n\x1a\n"
FIXED = struct.Struct("<8sIIQQ")


def align(n: int) -> int:
    return -(-n // 64) * 64


def unpack(data: bytes) -> tuple[dict, bytes]:
    """(JSON head, data section) of a binary file, by the documented layout."""
    magic, layout, flags, j, n = FIXED.unpack(data[:32])
    assert (magic, flags) == (MAGIC, 0) and layout in (1, 2, 3)
    start = align(64 + j)
    assert len(data) == start + n
    assert hashlib.sha256(data[:32] + data[64:]).digest() == data[32:64]
    return json.loads(data[64:64 + j]), data[start:]


def shares(head) -> bool:
    """Do two array references of the head repeat one span (layout 2)?"""
    spans = [tuple(r["__data__"]) for r in refs(head)
             if isinstance(r["__data__"], list) and len(r["__data__"]) == 2 and r["__data__"][1]]
    return len(set(spans)) < len(spans)


def pack(head, body: bytes, *, layout=None, flags=0, j=None, n=None, raw_head: bytes | None = None) -> bytes:
    """A binary file of this head and data section with a valid checksum (header fields
    overridable, to declare what the content is not; the layout by default as the writer
    stamps it: 3 where an array is narrowed, 2 where a span repeats, else 1)."""
    if layout is None:
        layout = 1 if raw_head is not None else 3 if any("stored" in r for r in refs(head)) else 2 if shares(head) else 1
    text = raw_head if raw_head is not None else json.dumps(head, separators=(",", ":")).encode()
    fixed = FIXED.pack(MAGIC, layout, flags, len(text) if j is None else j, len(body) if n is None else n)
    rest = text + bytes(align(64 + len(text)) - 64 - len(text)) + body
    return fixed + hashlib.sha256(fixed + rest).digest() + rest


def one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text and "\r" not in text, text
    return text


def refs(tree, out=None):
    """Every array reference in a JSON head, in document order."""
    out = [] if out is None else out
    if isinstance(tree, dict):
        if "__data__" in tree:
            out.append(tree)
        else:
            for v in tree.values():
                refs(v, out)
    elif isinstance(tree, list):
        for v in tree:
            refs(v, out)
    return out


@pytest.fixture(scope="module")
def small():
    return nm.feedforward(4, [3], 2, seed=1)


@pytest.fixture(scope="module")
def model_bytes(small):
    return model_file.dump_bytes(small)


@pytest.fixture(scope="module")
def fixed_artifact(small):
    return compile_graph(small, backend="lava", precision="fixed")


# ------------------------------------------------------------------ the layout


def test_the_byte_layout_is_the_documented_one(tmp_path, small):
    data = nm.save(small, tmp_path / "m.nm").read_bytes()
    head, body = unpack(data)
    assert list(head) == ["format", "version", "model"]  # format first: the sniff reads it
    assert (head["format"], head["version"]) == ("neuromorph-model", model_file.VERSION) == ("neuromorph-model", 2)
    j = FIXED.unpack(data[:32])[3]
    assert data[64 + j: align(64 + j)] == bytes(align(64 + j) - 64 - j)  # zero padding
    weights = [n.weight for n in small.nodes.values() if hasattr(n, "weight")]
    arrays = refs(head)
    end, seen = 0, set()
    for ref in arrays:
        offset, nbytes = ref["__data__"]
        assert ref["dtype"] == "float64"
        if (offset, nbytes) in seen:  # a repeat of an earlier array's bytes (layout 2)
            assert data[8:12] == (2).to_bytes(4, "little")
            assert body[offset:offset + nbytes] == body[offset:offset + nbytes]
            continue
        assert offset == align(end)
        seen.add((offset, nbytes))
        end = offset + nbytes
    assert end == len(body)
    assert data[8:12] == (2 if shares(head) else 1).to_bytes(4, "little")
    for w in weights:  # the raw little-endian bytes, as they are in memory
        assert w.astype("<f8").tobytes() in body


def test_arrays_keep_their_dtype_and_bytes():
    rng = np.random.default_rng(0)
    values = {name: (rng.normal(0, 1e3, (3, 5)) if name.startswith("float") else
                     rng.integers(0, 2, (3, 5)) if name == "bool" else
                     rng.integers(np.iinfo(name).min, np.iinfo(name).max, (3, 5), dtype=name, endpoint=True)
                     ).astype(name) for name in documents.DTYPES}
    values["scalar"] = np.array(np.nextafter(0.1, 1))
    values["empty"] = np.zeros((0, 7), np.int16)
    values["strided"] = np.arange(40, dtype=np.float64).reshape(5, 8)[:, ::3]
    values["big-endian"] = np.arange(6, dtype=">i4").reshape(2, 3)
    writer = documents.ArrayWriter()
    data = documents.dumps_binary("f", 1, "k", documents.encode_tree(values, writer.encode), writer)
    doc = documents.loads_any(data, "f", "k", "<test>", "test file", versions=(1,), binary_version=1)
    back = documents.decode_tree(doc.payload, "<test>", doc.arrays)
    doc.arrays.finish()
    for name, value in values.items():
        arr = back[name]
        assert arr.dtype == value.dtype.newbyteorder("=") and arr.shape == value.shape, name
        assert arr.tobytes() == np.ascontiguousarray(value, arr.dtype).tobytes(), name
        assert arr.flags.writeable and arr.flags.aligned, name
    # 8-bit values take a byte each: 15 int8 + 15 uint8 + 15 bool bytes, no more
    sizes = {r["dtype"]: r["__data__"][1] for r in refs(unpack(data)[0])}
    assert sizes["int8"] == sizes["uint8"] == sizes["bool"] == 15 and sizes["float64"] == 120
    back["int8"][0, 0] += 1  # views of one buffer, but no two share bytes
    assert back["uint8"].tobytes() == values["uint8"].tobytes()


def test_identical_arrays_are_stored_once_and_decode_apart():
    rng = np.random.default_rng(1)
    big = rng.normal(size=(300, 20))  # above the writer's small-array size
    values = {"a": big, "b": big.copy(), "c": big.reshape(20, 300), "d": big.astype(np.float32),
              "s": np.array(0.5), "t": np.array(0.5), "neg": np.array(-0.0), "pos": np.array(0.0),
              "near": np.where(np.arange(big.size).reshape(big.shape) == big.size - 1, 7.0, big)}
    writer = documents.ArrayWriter()
    data = documents.dumps_binary("f", 1, "k", documents.encode_tree(values, writer.encode), writer)
    head, body = unpack(data)
    spans = {k: tuple(r["__data__"]) for k, r in zip(values, refs(head))}
    assert spans["a"] == spans["b"] == spans["c"] and spans["s"] == spans["t"]
    assert len({spans[k] for k in ("a", "d", "neg", "pos", "near")}) == 5  # dtype, sign of 0, last byte
    assert data[8:12] == (2).to_bytes(4, "little") and len(body) < 3 * big.nbytes
    doc = documents.loads_any(data, "f", "k", "<test>", "test file", versions=(1,), binary_version=1)
    back = documents.decode_tree(doc.payload, "<test>", doc.arrays)
    doc.arrays.finish()
    for name, value in values.items():
        assert back[name].dtype == value.dtype and back[name].tobytes() == value.tobytes(), name
    back["a"][0, 0] += 1  # every decoded array is its own
    assert back["b"][0, 0] == back["c"][0, 0] == big[0, 0] and back["a"][0, 0] == big[0, 0] + 1
    # without a repeat the writer stamps layout 1, as earlier versions wrote
    writer = documents.ArrayWriter()
    data = documents.dumps_binary("f", 1, "k", documents.encode_tree({"a": big}, writer.encode), writer)
    assert data[8:12] == (1).to_bytes(4, "little")


def as_trained(graph: Graph) -> Graph:
    """``graph`` with its weights rounded to float32 values, as torch's training leaves them."""
    return graph.replace_nodes(**{k: n.replace(weight=np.asarray(n.weight, np.float32).astype(np.float64))
                                  for k, n in graph.nodes.items() if hasattr(n, "weight")})


def test_float64_arrays_that_float32_holds_take_4_bytes_a_value_and_read_back_bit_for_bit():
    rng = np.random.default_rng(2)
    exact = rng.normal(size=(10, 20)).astype(np.float32).astype(np.float64)
    exact[0, :4] = [-0.0, 0.0, np.inf, -np.inf]
    values = {"exact": exact, "copy": exact.copy(), "f32": exact.astype(np.float32),
              "inexact": np.where(np.arange(200).reshape(10, 20) == 7, 0.1, exact),  # one value float32 lacks
              "short": exact[0, 4:4 + documents.NARROW_MIN - 1].copy(), "nan": np.where(exact > 1, np.nan, exact),
              "huge": np.where(exact > 1, 1e300, exact), "subnormal": np.where(exact > 1, 5e-324, exact)}
    writer = documents.ArrayWriter()
    data = documents.dumps_binary("f", 1, "k", documents.encode_tree(values, writer.encode), writer)
    head, body = unpack(data)
    assert data[8:12] == (3).to_bytes(4, "little")
    recs = dict(zip(values, refs(head)))
    assert recs["exact"]["stored"] == "float32" and recs["exact"]["__data__"][1] == 4 * exact.size
    assert recs["exact"]["__data__"] == recs["copy"]["__data__"] == recs["f32"]["__data__"]  # the same bytes
    for name in ("inexact", "short", "nan", "huge", "subnormal"):
        assert "stored" not in recs[name] and recs[name]["__data__"][1] == 8 * values[name].size, name
    doc = documents.loads_any(data, "f", "k", "<test>", "test file", versions=(1,), binary_version=1)
    back = documents.decode_tree(doc.payload, "<test>", doc.arrays)
    doc.arrays.finish()
    for name, value in values.items():
        assert back[name].dtype == value.dtype and back[name].tobytes() == value.tobytes(), name
    assert np.signbit(back["exact"][0, 0]) and not np.signbit(back["exact"][0, 1])
    back["exact"][0, 0] = 5.0  # its own array
    assert back["copy"][0, 0] == 0.0


def test_a_trained_model_and_its_artifacts_take_about_half_the_bytes(tmp_path):
    g = nm.feedforward(64, [500], 10, seed=0)
    t = as_trained(g)
    sizes = {}
    for name, graph in (("float64", g), ("trained", t)):
        sizes[name] = nm.save(graph, tmp_path / f"{name}.nm").stat().st_size
        assert nm.load(tmp_path / f"{name}.nm") == graph
        for precision in ("float", "fixed"):
            a = compile_graph(graph, backend="lava", precision=precision)
            path = artifact.save_artifact(a, tmp_path / f"{name}.{precision}")
            sizes[name, precision] = path.stat().st_size
            back = artifact.load_artifact(path)
            assert back.graph == graph
    assert sizes["trained"] < 0.55 * sizes["float64"]
    assert sizes["trained", "float"] < 0.55 * sizes["float64", "float"]
    # fixed point: 4 bytes of source weight + 1 of mantissa, against 8 + 1
    assert sizes["trained", "fixed"] < 0.65 * sizes["float64", "fixed"]


@pytest.fixture(scope="module")
def trained_bytes():
    return model_file.dump_bytes(as_trained(nm.feedforward(16, [8], 4, seed=1)))


NARROWED = [
    ("narrowed in layout 2", lambda h, b: pack(h, bytes(b), layout=2), r"a narrowed array \('stored'\) in binary layout 1 or 2"),
    ("narrowed in layout 1", lambda h, b: pack(h, bytes(b), layout=1), "layout 1 or 2"),
    ("stored float16", lambda h, b: _narrowed(h).update(stored="float16"), "unsupported narrowing of 'float64' to 'float16'"),
    ("stored list", lambda h, b: _narrowed(h).update(stored=["float32"]), "unsupported narrowing"),
    ("int64 narrowed", lambda h, b: _narrowed(h).update(dtype="int64"), "unsupported narrowing of 'int64'"),
    ("shape of 8 bytes a value", lambda h, b: _narrowed(h).update(shape=[_narrowed(h)["__data__"][1] // 8]),
     r"shape \[\d+\] of float64 stored as float32 needs \d+ bytes"),
]


def _narrowed(head) -> dict:
    return next(r for r in refs(head) if "stored" in r)


@pytest.mark.parametrize("name, edit, words", NARROWED, ids=[c[0] for c in NARROWED])
def test_hostile_narrowed_arrays_are_refused_in_one_line(tmp_path, trained_bytes, name, edit, words):
    assert trained_bytes[8:12] == (3).to_bytes(4, "little")
    path = tmp_path / "m.nm"
    path.write_bytes(_edit(trained_bytes, edit))
    with pytest.raises(ModelFileError, match=words) as exc:
        nm.load(path)
    one_line(exc)


def test_a_compiled_artifact_stores_a_weight_shared_by_model_and_netlist_once(tmp_path):
    graph = nm.feedforward(64, [1000], 10, seed=0)  # gain 1: the netlist's weights are the model's
    for precision in ("float", "fixed"):
        a = compile_graph(graph, backend="lava", precision=precision)
        path = artifact.save_artifact(a, tmp_path / f"{precision}.art")
        weights = 8 * (64 * 1000 + 1000 * 10)
        assert path.stat().st_size < 1.25 * weights  # one float64 copy, not two
        b = artifact.load_artifact(path)
        for c1, c2 in zip(a.payload.netlist.connections, b.payload.netlist.connections):
            assert c1.weight.tobytes() == c2.weight.tobytes()
        assert not np.shares_memory(b.graph.nodes["fc1"].weight, b.payload.netlist.connections[0].weight)


def test_objects_strings_and_complex_numbers_are_not_written(tmp_path):
    for value in (np.array([1 + 2j]), np.array(["a"]), np.array([object()], dtype=object),
                  np.zeros(2, dtype=[("a", "<f8")]), np.array([1], dtype="M8[s]")):
        with pytest.raises(ModelFileError, match="cannot store an array of dtype") as exc:
            documents.ArrayWriter().encode(value)
        one_line(exc)


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_models_round_trip_exactly_in_binary(name):
    g = get(name, seed=4)
    data = model_file.dump_bytes(g)
    assert data[:8] == MAGIC and model_file.loads(data) == g


def test_a_fixed_artifact_keeps_the_dtypes_its_target_hands_over(tmp_path, fixed_artifact):
    from neuromorph.registry import target

    path = artifact.save_artifact(fixed_artifact, tmp_path / "a.loihi")
    assert path.read_bytes()[:8] == MAGIC and artifact.is_artifact(path)
    back = artifact.load_artifact(path)
    tgt = target(fixed_artifact.target)
    before, after = tgt.encode_payload(fixed_artifact.payload), tgt.encode_payload(back.payload)
    q0, q1 = before["quantized"], after["quantized"]
    for w0, w1 in zip(q0["weights"], q1["weights"]):
        assert w1.dtype == w0.dtype and np.array_equal(w0, w1)
    for c0, c1 in zip(before["netlist"]["connections"], after["netlist"]["connections"]):
        assert c1["weight"].dtype == np.float64 and c1["weight"].tobytes() == c0["weight"].tobytes()
    for pop, params in q0["populations"].items():
        for key, value in params.items():
            back_value = q1["populations"][pop][key]
            assert back_value.dtype == value.dtype and np.array_equal(back_value, value)
    assert back.graph == fixed_artifact.graph and back.report == json.loads(json.dumps(fixed_artifact.report))
    # the JSON text form (version 2) still loads: its integers are int64 in the file, read
    # back as the runtime's int32 mantissas and int64 parameters
    text = tmp_path / "old.loihi"
    text.write_text(artifact.dumps_text(fixed_artifact))
    assert json.loads(text.read_text())["version"] == 2 and artifact.is_artifact(text)
    old = artifact.load_artifact(text)
    assert all(w.dtype == np.int32 for w in old.payload.quantized.weights)
    assert all(np.array_equal(a, b) for a, b in zip(old.payload.quantized.weights, back.payload.quantized.weights))
    assert all(v.dtype == np.int64 for p in old.payload.quantized.populations.values() for v in p.values())


def test_json_text_at_the_binary_version_may_hold_any_plain_dtype():
    payload = {"w": {"__array__": "AQL/", "dtype": "int8", "shape": [3]}}
    new = documents.dumps_document("f", 2, "k", payload)
    doc = documents.loads_any(new, "f", "k", "<t>", "test file", versions=(1, 2), binary_version=2)
    assert documents.decode_tree(doc.payload, "<t>", doc.arrays)["w"].tolist() == [1, 2, -1]
    old = documents.dumps_document("f", 1, "k", payload)
    doc = documents.loads_any(old, "f", "k", "<t>", "test file", versions=(1, 2), binary_version=2)
    with pytest.raises(ModelFileError, match="unsupported array dtype 'int8'"):
        documents.decode_tree(doc.payload, "<t>", doc.arrays)


def test_loading_makes_no_copy_beyond_the_one_the_ir_makes(tmp_path):
    g = nm.feedforward(64, [4000], 10, seed=0)  # 2.6 MB of float64 weights
    path = nm.save(g, tmp_path / "m.nm")
    size = path.stat().st_size
    tracemalloc.start()
    back = nm.load(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert back == g
    assert peak < 2.3 * size, (peak, size)  # the file's buffer + the IR's own copy of each array


# ------------------------------------------------------------------ refusals: damage


def test_every_flipped_byte_is_refused_in_one_line(model_bytes, tmp_path):
    path = tmp_path / "m.nm"
    for i in [*range(64), *range(64, len(model_bytes), 5)]:  # the whole header, then every 5th byte
        damaged = bytearray(model_bytes)
        damaged[i] ^= 0x20
        path.write_bytes(bytes(damaged))
        with pytest.raises(ModelFileError) as exc:
            nm.load(path)
        text = one_line(exc)
        if 64 <= i:  # JSON head and data: the checksum
            assert "checksum mismatch" in text, (i, text)


def test_every_truncation_is_refused_in_one_line(model_bytes, tmp_path):
    path = tmp_path / "m.nm"
    for n in [*range(0, 80), *range(80, len(model_bytes), 37), len(model_bytes) - 1]:
        path.write_bytes(model_bytes[:n])
        with pytest.raises(ModelFileError) as exc:
            nm.load(path)
        text = one_line(exc)
        assert ("not a complete neuromorph model file" in text) if n >= 1 else ("not valid JSON" in text), (n, text)
    path.write_bytes(model_bytes + b"\x00")
    with pytest.raises(ModelFileError, match="header declares .* \\(data after its end\\)"):
        nm.load(path)


def _edit(model_bytes, edit):
    head, body = unpack(model_bytes)
    body = bytearray(body)
    out = edit(head, body)
    return out if isinstance(out, bytes) else pack(head, bytes(body))


def _ref(i):
    def get(head):
        return refs(head)[i]
    return get


def _set_ref(i, **changes):
    def edit(head, body):
        ref = refs(head)[i]
        for k, v in changes.items():
            ref[k if k != "data" else "__data__"] = v
    return edit


def _shift_all(head, body, by):
    """Every array moved ``by`` bytes on: the data section then starts with bytes of no array."""
    for ref in refs(head):
        if ref["__data__"][1]:
            ref["__data__"][0] += by
    return pack(head, bytes(by) + bytes(body))


def _offsets(head):
    return [r["__data__"] for r in refs(head)]


def _last(head):
    """The index of the reference to the last array of the data section."""
    offsets = _offsets(head)
    return offsets.index(max(offsets))


HOSTILE = [
    # header fields
    ("layout 4", lambda h, b: pack(h, bytes(b), layout=4), "binary layout 4 is not supported"),
    ("flags", lambda h, b: pack(h, bytes(b), flags=1), "header flags 0x1"),
    ("J huge", lambda h, b: pack(h, bytes(b), j=2**63), "truncated: its header declares"),
    ("N huge", lambda h, b: pack(h, bytes(b), n=2**64 - 1), "truncated: its header declares"),
    ("N short", lambda h, b: pack(h, bytes(b), n=len(b) - 64), "data after its end"),
    # the JSON head
    ("not JSON", lambda h, b: pack(h, bytes(b), raw_head=b"\xff{" + b"x" * 10), "not valid JSON"),
    ("deep", lambda h, b: pack(h, bytes(b), raw_head=b"[" * 5000 + b"]" * 5000), "nested 5000 levels deep"),
    ("NaN", lambda h, b: pack(h, bytes(b), raw_head=json.dumps(h).replace('"dt": 0.001', '"dt": NaN').encode()),
     "NaN is not a number"),
    ("version 3", lambda h, b: h.update(version=3), r"version 3 is not supported \(this neuromorph reads 1 and 2\)"),
    ("version 1", lambda h, b: h.update(version=1), "a binary neuromorph model file must be version 2, not 1"),
    ("format", lambda h, b: h.update(format="neuromorph-artifact"), "no 'neuromorph-model' header"),
    ("extra key", lambda h, b: h.update(sha256="0"), "keys"),
    # array references
    ("outside", _set_ref(0, data=[2**40, 96]), "points outside the data section"),
    ("past the end", lambda h, b: _set_ref(_last(h), data=[max(_offsets(h))[0], max(_offsets(h))[1] + 8])(h, b),
     "points outside the data section"),
    ("misaligned", _set_ref(1, data=[8, 24]), "misaligned"),
    ("overlap", lambda h, b: _set_ref(1, data=_offsets(h)[0][:1] + [_offsets(h)[1][1]])(h, b), "overlaps"),
    ("aliased in layout 1", lambda h, b: _set_ref(2, data=_offsets(h)[0], shape=_ref(0)(h)["shape"])(h, b)
     or pack(h, bytes(b), layout=1), "overlaps"),
    ("part of a span repeated", lambda h, b: _set_ref(2, data=[_offsets(h)[0][0], 8], shape=[1])(h, b)
     or pack(h, bytes(b), layout=2), "overlaps"),
    ("gap", lambda h, b: _shift_all(h, b, 64), "64 bytes of the data section before offset 64"),
    ("unreferenced tail", lambda h, b: pack(h, bytes(b) + bytes(64)), "the last 64 bytes of the data section"),
    ("shape", _set_ref(0, shape=[4, 4]), r"shape \[4, 4\] of float64 needs 128 bytes, the reference has 96"),
    ("shape huge", _set_ref(0, shape=[2**40, 2**40]), "is not a list of at most 32 ints"),
    ("shape zero huge", _set_ref(0, shape=[2**33, 0], data=[0, 0]), "is not a list of at most 32 ints"),
    ("shape negative", _set_ref(0, shape=[-3, -4]), "ints >= 0"),
    ("shape deep", _set_ref(0, shape=[1] * 33), "at most 32"),
    ("dtype object", _set_ref(0, dtype="object"), "unsupported array dtype 'object'"),
    ("dtype code", _set_ref(0, dtype="|O"), "unsupported array dtype '|O'"),
    ("dtype numpy string", _set_ref(0, dtype="<f8"), "unsupported array dtype '<f8'"),
    ("dtype structured", _set_ref(0, dtype=[["a", "<f8"]]), "unsupported array dtype"),
    ("dtype complex", _set_ref(0, dtype="complex128"), "unsupported array dtype 'complex128'"),
    ("dtype void", _set_ref(0, dtype="V8"), "unsupported array dtype 'V8'"),
    ("__data__ short", _set_ref(0, data=[0]), r"is not \[offset, nbytes\]"),
    ("__data__ negative", _set_ref(0, data=[-64, 96]), r"is not \[offset, nbytes\]"),
    ("__data__ bool", _set_ref(0, data=[False, 96]), r"is not \[offset, nbytes\]"),
    ("extra ref key", _set_ref(0, __array__=""), "corrupted array reference \\(keys"),
    ("inline array", lambda h, b: h["model"]["nodes"][1]["params"].update(
        weight=documents.encode_array(np.ones((3, 4)))), r"an inline \(base64\) array in a binary file"),
    ("NaN weight", lambda h, b: b.__setitem__(slice(0, 8), np.array([np.nan]).tobytes()), "contains NaN"),
]


@pytest.mark.parametrize("name, edit, words", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_binary_model_files_are_refused_in_one_line(tmp_path, model_bytes, name, edit, words):
    path = tmp_path / "m.nm"
    path.write_bytes(_edit(model_bytes, edit))
    with pytest.raises(ModelFileError, match=words) as exc:
        nm.load(path)
    one_line(exc)
    with pytest.raises(ModelFileError, match=words):  # the same from bytes
        model_file.loads(path.read_bytes(), str(path))


def test_a_bool_array_holds_only_zeros_and_ones():
    writer = documents.ArrayWriter()
    data = bytearray(documents.dumps_binary("f", 1, "k", {"b": writer.encode(np.array([True, False]))}, writer))
    head, body = unpack(bytes(data))
    bad = pack(head, b"\x02" + body[1:])
    doc = documents.loads_any(bad, "f", "k", "<t>", "test file", versions=(1,), binary_version=1)
    with pytest.raises(ModelFileError, match="a bool array holds a byte other than 0 or 1"):
        documents.decode_tree(doc.payload, "<t>", doc.arrays)


@pytest.mark.parametrize("where, words", [
    ("payload", "points outside the data section"),
    ("model", "points outside the data section"),
])
def test_hostile_binary_artifacts_are_refused_in_one_line(tmp_path, fixed_artifact, where, words):
    path = artifact.save_artifact(fixed_artifact, tmp_path / "a.loihi")
    head, body = unpack(path.read_bytes())
    refs(head["artifact"][where])[0]["__data__"][0] = align(len(body) + 1)
    path.write_bytes(pack(head, body))
    with pytest.raises(ModelFileError, match=words) as exc:
        artifact.load_artifact(path)
    one_line(exc)


def test_a_binary_artifact_with_a_damaged_weight_fails_its_payload_check(tmp_path, fixed_artifact):
    path = artifact.save_artifact(fixed_artifact, tmp_path / "a.loihi")
    head, body = unpack(path.read_bytes())
    quantized = head["artifact"]["payload"]["quantized"]
    ref = refs(quantized["weights"])[0]
    assert quantized["weight_signs"][0] == "mixed" and ref["dtype"] == "int8"
    offset, nbytes = ref["__data__"]
    body = bytearray(body)
    body[offset: offset + nbytes] = np.resize(np.array([3, 5], np.int8), nbytes).tobytes()  # no negative left
    path.write_bytes(pack(head, bytes(body)))
    with pytest.raises(ModelFileError, match="weight_signs: 'mixed', but the mantissas are excitatory") as exc:
        artifact.load_artifact(path)
    one_line(exc)


# ------------------------------------------------------------------ fixed point at its natural width
# Loihi 2's weights are 8-bit mantissas whose sign comes from the connection's sign mode
# (Lava's determine_sign_mode / truncate_weights): mixed signs keep even values -256..254,
# excitatory 0..255, inhibitory -255..0. The stored form (backends/loihi2/payload.py):
# mixed as w >> 1 in int8, excitatory as w and inhibitory as -w in uint8, the mode in
# quantized.weight_signs; population parameters at the narrowest signed dtype their range
# allows.

PARAM_DTYPES = {"du": "int16", "dv": "int16", "da": "int16", "bias_u": "int32", "bias_mant": "int16",
                "bias_exp": "int8", "vth": "int32", "v_init": "int32", "a_inc": "int32", "beta_mant": "int16",
                "beta_shift": "int8"}
"""Read off docs/compiler.md's field widths: 12-bit decays, 24-bit bias_u/v_init/a_inc,
13-bit bias and beta mantissas, 17-bit vth, bias_exp 0..7, beta_shift -27..62."""


@pytest.fixture(scope="module")
def signs_artifact():
    """A fixed artifact with one connection of each sign mode (x->h1 and x->h2
    excitatory, h1->h2 inhibitory, h2->ro mixed), whose every population spikes or moves."""
    from neuromorph.ir import LI, LIF, Input, Linear, Output

    rng = np.random.default_rng(3)
    g = Graph({"x": Input((4,)), "exc": Linear(rng.uniform(0.2, 1.5, (5, 4))), "h1": LIF(tau=10e-3, r=10.0),
               "inh": Linear(-rng.uniform(0.1, 0.8, (5, 5))), "exc2": Linear(rng.uniform(0.3, 1.2, (5, 4))),
               "h2": LIF(tau=10e-3, r=10.0), "mix": Linear(rng.normal(0, 1, (3, 5))), "ro": LI(tau=20e-3, r=20.0),
               "y": Output()},
              [("x", "exc"), ("exc", "h1"), ("h1", "inh"), ("inh", "h2"), ("x", "exc2"), ("exc2", "h2"),
               ("h2", "mix"), ("mix", "ro"), ("ro", "y")], dt=1e-3)
    return compile_graph(g, backend="lava", precision="fixed")


SIGNS = ["excitatory", "inhibitory", "excitatory", "mixed"]  # signs_artifact's connections, in order


def run_fixed(a):
    from neuromorph.backends.loihi2.quantize import simulate_fixed

    x = (np.random.default_rng(5).random((3, 40, 4)) < 0.5).astype(float)
    out, counts = simulate_fixed(a.payload.quantized, {"x": x}, record_spikes=True)
    return out, counts


def same_integers(a, b):
    qa, qb = a.payload.quantized, b.payload.quantized
    for wa, wb in zip(qa.weights, qb.weights, strict=True):
        assert wb.dtype == np.int32 and np.array_equal(wa, wb)
    assert qb.weight_exps == qa.weight_exps
    for name, params in qa.populations.items():
        for key, value in params.items():
            assert qb.populations[name][key].dtype == np.int64 and np.array_equal(qb.populations[name][key], value)
    out_a, counts_a = run_fixed(a)
    out_b, counts_b = run_fixed(b)
    assert counts_a == counts_b and set(out_a) == set(out_b)
    assert all(np.array_equal(out_a[k], out_b[k]) for k in out_a)  # bit-identical


def artifact_bytes(a, edit=None) -> bytes:
    """A binary artifact of ``a``'s content (as target.encode_payload hands it over) after
    ``edit(content)``, which sees the arrays as arrays; written by the container's writer."""
    content = artifact.to_dict(a, lambda x: x)
    if edit is not None:
        edit(content)
    writer = documents.ArrayWriter()
    return documents.dumps_binary(artifact.FORMAT, artifact.VERSION, "artifact",
                                  documents.encode_tree(content, writer.encode), writer)


def test_each_sign_mode_is_stored_in_a_byte_and_round_trips(tmp_path, signs_artifact):
    q = signs_artifact.payload.quantized
    counts = run_fixed(signs_artifact)[1]
    assert all(counts[p] > 0 for p in ("h1", "h2")), counts  # the inhibition acts on a spiking population
    path = artifact.save_artifact(signs_artifact, tmp_path / "a.loihi")
    head, body = unpack(path.read_bytes())
    stored = head["artifact"]["payload"]["quantized"]
    assert stored["weight_signs"] == SIGNS
    expected = {"excitatory": lambda w: w.astype("u1"), "inhibitory": lambda w: (-w).astype("u1"),
                "mixed": lambda w: (w // 2).astype("i1")}
    for mode, ref, w in zip(SIGNS, refs(stored["weights"]), q.weights, strict=True):
        offset, nbytes = ref["__data__"]
        assert ref["dtype"] == {"mixed": "int8"}.get(mode, "uint8") and nbytes == w.size  # a byte each
        assert body[offset: offset + nbytes] == expected[mode](w).tobytes(), mode
    # odd values of one sign keep their LSB; mixed signs are even and take both signs
    assert np.max(q.weights[1]) <= 0 and np.any(q.weights[1] % 2) and np.any(q.weights[0] % 2)
    assert np.min(q.weights[3]) < 0 < np.max(q.weights[3])
    for name, params in stored["populations"].items():
        assert {k: r["dtype"] for k, r in params.items()} == PARAM_DTYPES, name
    same_integers(signs_artifact, artifact.load_artifact(path))
    # the JSON text form (int64 arrays, the same weight_signs)
    text = tmp_path / "a.json"
    text.write_text(artifact.dumps_text(signs_artifact))
    assert json.loads(text.read_text())["artifact"]["payload"]["quantized"]["weight_signs"] == SIGNS
    same_integers(signs_artifact, artifact.load_artifact(text))


def _weights(i, convert):
    def edit(content):
        q = content["payload"]["quantized"]
        q["weights"][i] = convert(q["weights"][i])
    return edit


def _signs(i, mode):
    def edit(content):
        content["payload"]["quantized"]["weight_signs"][i] = mode
    return edit


def _param(key, dtype):
    def edit(content):
        for params in content["payload"]["quantized"]["populations"].values():
            params[key] = params[key].astype(dtype)
    return edit


WRONG_DTYPES = [
    ("mixed as uint8", _weights(3, lambda w: w.view("u1")),
     r"h2->ro: weights: stored as uint8, expected int8 \('mixed' mantissas as w >> 1\) or int64 \(JSON text\)"),
    ("mixed as int32", _weights(3, lambda w: w.astype("i4")), "h2->ro: weights: stored as int32, expected int8"),
    ("mixed as int16", _weights(3, lambda w: w.astype("i2")), "h2->ro: weights: stored as int16, expected int8"),
    ("excitatory as int8", _weights(0, lambda w: w.view("i1")),
     r"x->h1: weights: stored as int8, expected uint8 \('excitatory' mantissas as w\)"),
    ("inhibitory as int8", _weights(1, lambda w: w.view("i1")),
     r"h1->h2: weights: stored as int8, expected uint8 \('inhibitory' mantissas as -w\)"),
    ("inhibitory as int32", _weights(1, lambda w: -w.astype("i4")), "h1->h2: weights: stored as int32, expected uint8"),
    ("mixed declared excitatory", _signs(3, "excitatory"), "h2->ro: weights: stored as int8, expected uint8"),
    ("excitatory declared mixed", _signs(0, "mixed"), "x->h1: weights: stored as uint8, expected int8"),
    ("float weights", _weights(0, lambda w: w.astype("f8")), "x->h1: weights: stored as float64, expected uint8"),
    ("du as uint16", _param("du", "u2"), r"du: stored as uint16, expected int16 \(its range 0..4095\)"),
    ("bias_exp as int16", _param("bias_exp", "i2"), "bias_exp: stored as int16, expected int8"),
    ("v_init as float32", _param("v_init", "f4"), "v_init: stored as float32, expected int32"),
    ("unknown mode", _signs(2, "positive"), "x->h2: weight_signs: 'positive' is not a sign mode"),
    ("modes short", lambda c: c["payload"]["quantized"]["weight_signs"].pop(),
     "weight_signs: has 3 entries, expected 4"),
    ("inhibitory all zero", _weights(1, lambda w: np.zeros_like(w)),
     "h1->h2: weight_signs: 'inhibitory', but the mantissas are excitatory"),
]


@pytest.mark.parametrize("name, edit, words", WRONG_DTYPES, ids=[c[0] for c in WRONG_DTYPES])
def test_a_wrong_stored_dtype_or_mode_is_refused_in_one_line(tmp_path, signs_artifact, name, edit, words):
    path = tmp_path / "a.loihi"
    path.write_bytes(artifact_bytes(signs_artifact, edit))
    with pytest.raises(ModelFileError, match=words) as exc:
        artifact.load_artifact(path)
    one_line(exc)


def test_int64_is_read_as_the_json_text_form(tmp_path, signs_artifact):
    """Every integer array of the text form is int64 (documents.encode_array); the same
    arrays in the binary container load too, and are range-checked in their stored form."""
    def wide(content):
        q = content["payload"]["quantized"]
        q["weights"] = [w.astype(np.int64) for w in q["weights"]]
        for params in q["populations"].values():
            params.update({k: v.astype(np.int64) for k, v in params.items()})

    path = tmp_path / "a.loihi"
    path.write_bytes(artifact_bytes(signs_artifact, wide))
    same_integers(signs_artifact, artifact.load_artifact(path))
    for i, value, words in ((3, 128, r"h2->ro: weights \(stored as w >> 1\): value 128 is outside -128..127"),
                            (1, -1, r"h1->h2: weights \(stored as -w\): value -1 is outside 0..255"),
                            (0, 256, r"x->h1: weights \(stored as w\): value 256 is outside 0..255")):
        path.write_bytes(artifact_bytes(signs_artifact, lambda c: (
            wide(c), c["payload"]["quantized"]["weights"][i].__setitem__((0, 0), value))))
        with pytest.raises(ModelFileError, match=words) as exc:
            artifact.load_artifact(path)
        one_line(exc)


def test_an_odd_mantissa_with_mixed_signs_cannot_be_encoded(tmp_path, signs_artifact):
    """quantize.py emits mantissas that Lava leaves unchanged; one that is not (an odd one
    with mixed signs would lose its LSB in w >> 1) is a bug, never a file."""
    from dataclasses import replace

    from neuromorph.backends.loihi2.target import Deployment

    q = signs_artifact.payload.quantized
    for i, change, words in ((3, 1, "odd weight mantissa with mixed signs"),
                             (0, 300, "that Lava's clip and truncate would change")):
        weights = [w.copy() for w in q.weights]
        weights[i][0, 0] += change
        bad = replace(signs_artifact, payload=Deployment(signs_artifact.payload.netlist, replace(q, weights=weights)))
        with pytest.raises(AssertionError, match=words):
            artifact.save_artifact(bad, tmp_path / "bad.loihi")
        assert not (tmp_path / "bad.loihi").exists() and list(tmp_path.iterdir()) == []
    params = {k: dict(v) for k, v in q.populations.items()}
    params["h1"]["du"] = params["h1"]["du"] + 4096
    bad = replace(signs_artifact, payload=Deployment(signs_artifact.payload.netlist, replace(q, populations=params)))
    with pytest.raises(AssertionError, match="population 'h1': du outside 0..4095"):
        artifact.save_artifact(bad, tmp_path / "bad.loihi")


def _old_encoder(q):
    """What target.encode_payload handed over before the stored form: the mantissas as
    int32, the parameters as int64, no weight_signs."""
    from dataclasses import fields

    return {f.name: getattr(q, f.name) for f in fields(q) if f.name != "net"}


def test_artifacts_written_before_the_stored_form_still_load(tmp_path, signs_artifact, monkeypatch):
    from neuromorph.backends.loihi2 import payload

    with monkeypatch.context() as m:
        m.setattr(payload, "encode_quantized", _old_encoder)
        binary = artifact.save_artifact(signs_artifact, tmp_path / "old.loihi")
        text = tmp_path / "old.json"
        text.write_text(artifact.dumps_text(signs_artifact))
    head, _ = unpack(binary.read_bytes())
    stored = head["artifact"]["payload"]["quantized"]
    assert "weight_signs" not in stored and {r["dtype"] for r in refs(stored["weights"])} == {"int32"}
    assert {r["dtype"] for r in refs(stored["populations"])} == {"int64"}
    assert "weight_signs" not in json.loads(text.read_text())["artifact"]["payload"]["quantized"]
    for path in (binary, text):
        same_integers(signs_artifact, artifact.load_artifact(path))
    # the old form's checks: mantissas Lava leaves unchanged, and no narrow dtype without its mode
    old = _old_encoder(signs_artifact.payload.quantized)
    for i, convert, words in (
            (3, lambda w: w + 1, "h2->ro: weights: not 8-bit mantissas that Lava's clip and truncate leave"),
            (0, lambda w: w.astype(np.int8), "x->h1: weights: int8 without quantized.weight_signs"),
            (0, lambda w: w * 1000, r"x->h1: weights: value \d+ is outside -256..255")):
        def edit(content):
            content["payload"]["quantized"] = dict(old, weights=[convert(w) if j == i else w
                                                                 for j, w in enumerate(old["weights"])])
        binary.write_bytes(artifact_bytes(signs_artifact, edit))
        with pytest.raises(ModelFileError, match=words) as exc:
            artifact.load_artifact(binary)
        one_line(exc)


def test_huge_declared_sizes_are_refused_before_anything_is_allocated(tmp_path, model_bytes, monkeypatch):
    reads = []
    original = documents._read_into
    monkeypatch.setattr(documents, "_read_into", lambda *a: (reads.append(a), original(*a))[1])
    path = tmp_path / "m.nm"
    head, body = unpack(model_bytes)
    path.write_bytes(pack(head, body, n=2**62))  # 2 EiB declared in a file of 2 kB
    with pytest.raises(ModelFileError, match="truncated: its header declares"):
        nm.load(path)
    # a file that is as large as it says, but more than MEMORY_BOUND allows to load
    path.write_bytes(model_bytes)
    monkeypatch.setattr(streams, "MEMORY_BOUND", 1000)
    with pytest.raises(ModelFileError, match="loading this neuromorph model file would need about .* more than "
                                             "the bound of 1000 bytes") as exc:
        nm.load(path)
    one_line(exc)
    assert reads == []
    monkeypatch.setattr(streams, "MEMORY_BOUND", 10**9)
    assert nm.load(path) == model_file.loads(model_bytes) and len(reads) == 1


# ------------------------------------------------------------------ writing


def test_a_failed_binary_write_leaves_the_old_file_and_no_temporary(tmp_path, small):
    path = nm.save(small, tmp_path / "m.nm")
    before = path.read_bytes()
    bad = Graph(small.nodes, small.edges, small.dt, {"x": {1, 2}})  # not JSON: fails mid-write
    with pytest.raises(ModelFileError, match="not JSON-serialisable"):
        nm.save(bad, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.nm"]


def test_the_sniff_tells_binary_artifacts_from_binary_model_files(tmp_path, small, fixed_artifact):
    art = artifact.save_artifact(fixed_artifact, tmp_path / "a.bin")
    model = nm.save(Graph(small.nodes, small.edges, small.dt, {"format": "neuromorph-artifact"}), tmp_path / "m.bin")
    assert artifact.is_artifact(art) and not artifact.is_artifact(model)
    (tmp_path / "t.bin").write_bytes(art.read_bytes()[:40])
    assert not artifact.is_artifact(tmp_path / "t.bin")
    with pytest.raises(ModelFileError, match="not a neuromorph artifact \\(no 'neuromorph-artifact' header\\)"):
        artifact.load_artifact(model)
    with pytest.raises(ModelFileError, match="not a neuromorph model file \\(no 'neuromorph-model' header\\)"):
        nm.load(art)
