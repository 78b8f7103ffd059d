"""Files are untrusted input (docs/threat-model.md): a model file, an artifact or a NIR file
can be refused, with one line, but can never make neuromorph read another file, block,
run away in memory or recursion, or run garbage.

Each test here failed before the fix it covers."""
import base64
import copy
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import neuromorph as nm
from neuromorph import artifact, documents, model_file
from neuromorph.backends.nir import read_nir, write_nir
from neuromorph.compile import compile_graph
from neuromorph.errors import IRError, ModelFileError, NeuromorphError, NIRConversionError
from neuromorph.ir import LIF, Graph, Input, Linear, Output, Scale

BIN = Path(sys.executable).parent


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "\r" not in text, text
    return text


def cli(*args, rc=2):
    proc = subprocess.run([str(BIN / "neuromorph"), *map(str, args)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == rc, proc.stderr
    if rc == 2:
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("neuromorph: error: "), proc.stderr
    return proc


def rewrite(path: Path, doc: dict, key: str, form: str = "text") -> Path:
    """Write a document with a recomputed (valid) checksum: what anyone can do. ``form``:
    JSON text, or the binary container with the same content (every inline array but
    the report's moved into the data section at its dtype)."""
    doc = dict(doc)
    if form == "binary":
        arrays = documents.ArrayWriter()

        def move(value):
            if isinstance(value, dict) and "__array__" in value:
                try:
                    return arrays.encode(documents.decode_array(value, "test", documents.DTYPES))
                except ModelFileError:
                    return value  # a malformed record stays as it is
            if isinstance(value, dict):
                return {k: v if k == "report" else move(v) for k, v in value.items()}
            if isinstance(value, list):
                return [move(v) for v in value]
            return value

        path.write_bytes(documents.dumps_binary(doc["format"], doc["version"] + 1, key, move(doc[key]), arrays))
        return path
    doc["sha256"] = hashlib.sha256(documents.canonical(doc[key])).hexdigest()
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture(scope="module")
def small():
    return nm.feedforward(4, [3], 2, seed=1)


# ------------------------------------------------------------------ NIR: no reads outside the file


@pytest.fixture
def nir_file(tmp_path, small):
    path = tmp_path / "g.nir"
    write_nir(small, path)
    return path


def _replace_weight(path: Path, make) -> None:
    with h5py.File(path, "a") as f:
        grp = f["node/nodes/fc1"]
        del grp["weight"]
        make(grp)


def _no_data_read(monkeypatch):
    """Record every dataset read (the checks must refuse before any)."""
    reads = []
    original = h5py.Dataset.__getitem__

    def spy(self, args, *rest, **kw):
        reads.append(self.name)
        return original(self, args, *rest, **kw)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    return reads


def test_nir_external_storage_is_refused_before_any_data_is_read(nir_file, monkeypatch):
    secret = nir_file.parent / "secret.bin"
    secret.write_bytes(np.arange(12, dtype="<f8").tobytes())  # any local file, e.g. /etc/passwd
    _replace_weight(nir_file, lambda g: g.create_dataset("weight", shape=(3, 4), dtype="<f8",
                                                          external=[(str(secret), 0, 96)]))
    reads = _no_data_read(monkeypatch)
    with pytest.raises(NIRConversionError, match="keeps its data in another file") as exc:
        read_nir(nir_file)
    one_line(exc.value)
    assert reads == []


def test_nir_external_link_is_refused(nir_file, tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.ones((3, 4))
    _replace_weight(nir_file, lambda g: g.__setitem__("weight", h5py.ExternalLink(str(other), "/data")))
    with pytest.raises(NIRConversionError, match="external link"):
        read_nir(nir_file)


def test_nir_virtual_dataset_is_refused(nir_file, tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.ones((3, 4))

    def make(g):
        layout = h5py.VirtualLayout(shape=(3, 4), dtype="f8")
        layout[:] = h5py.VirtualSource(str(other), "data", shape=(3, 4))
        g.create_virtual_dataset("weight", layout)

    _replace_weight(nir_file, make)
    with pytest.raises(NIRConversionError, match="virtual dataset"):
        read_nir(nir_file)


def test_nir_soft_links_and_shared_objects_are_refused(nir_file, tmp_path):
    soft = tmp_path / "soft.nir"
    soft.write_bytes(nir_file.read_bytes())
    _replace_weight(soft, lambda g: g.__setitem__("weight", h5py.SoftLink("/node/nodes/fc_out/weight")))
    with pytest.raises(NIRConversionError, match="SoftLink"):
        read_nir(soft)
    with h5py.File(nir_file, "a") as f:  # a loop: a group linked into its own child
        f["node/nodes/fc1/loop"] = f["node"]
    with pytest.raises(NIRConversionError, match="linked a second time"):
        read_nir(nir_file)


def test_nir_dataset_declaring_terabytes_is_refused_unread(nir_file, monkeypatch):
    # A chunked dataset with no chunk written reads as its fill value: a few bytes on
    # disk, 8 TB in memory.
    _replace_weight(nir_file, lambda g: g.create_dataset("weight", shape=(10**6, 10**6), dtype="f8",
                                                          chunks=(1, 1000)))
    reads = _no_data_read(monkeypatch)
    with pytest.raises(NIRConversionError, match="declare more than"):
        read_nir(nir_file)
    assert reads == []


def test_nir_deeply_nested_groups_are_refused(nir_file):
    with h5py.File(nir_file, "a") as f:
        g = f["node/nodes/fc1"]
        for _ in range(2000):
            g = g.create_group("g")
    with pytest.raises(NIRConversionError, match="nested deeper"):
        read_nir(nir_file)


def _edit_meta(path: Path, group: str, edit) -> None:
    with h5py.File(path, "a") as f:
        ds = f[f"{group}/metadata/neuromorph"]
        raw = ds[()]
        record = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        text = edit(record)
        del f[f"{group}/metadata/neuromorph"]
        f[f"{group}/metadata/neuromorph"] = text if isinstance(text, str) else json.dumps(text)


@pytest.mark.parametrize("edit, words", [
    (lambda r: {**r, "format": "abc"}, "'format' must be an int"),
    (lambda r: {**r, "edges": [[s, t, "x"] for s, t, _ in r["edges"]]}, "'edges' must be"),
    (lambda r: {**r, "nodes": 5}, "'nodes' must be a list"),
    (lambda r: {**r, "dt": "fast"}, "'dt' must be"),
    (lambda r: {**r, "metadata": []}, "'metadata' must be an object"),
    (lambda r: '{"format": 1, "x": ' + "[" * 100000 + "]" * 100000 + "}", "nested 100001 levels"),
    (lambda r: json.dumps(r).replace('"dt": 0.001', '"dt": NaN'), "NaN is not a number"),
    (lambda r: json.dumps(r).replace('"dt": 0.001', '"dt": 1e999'), "overflows"),
])
def test_malformed_neuromorph_metadata_in_a_nir_file_is_refused(nir_file, edit, words):
    _edit_meta(nir_file, "node", edit)
    with pytest.raises(NIRConversionError, match=words) as exc:
        read_nir(nir_file)
    one_line(exc.value)


def test_malformed_edge_delay_record_is_refused(tmp_path):
    g = Graph({"x": Input((2,)), "w": Linear(np.eye(2)), "h": LIF(tau=5e-3), "y": Output()},
              [("x", "w"), ("w", "h", 3), ("h", "y")], dt=1e-3)
    path = tmp_path / "d.nir"
    write_nir(g, path)
    with h5py.File(path, "r") as f:
        delay = next(k for k in f["node/nodes"] if "delay_to" in k)
    _edit_meta(path, f"node/nodes/{delay}", lambda r: {**r, "edge_delay": "x"})
    with pytest.raises(NIRConversionError, match="'edge_delay' must be an int"):
        read_nir(path)


def test_import_nir_command_refuses_external_storage_with_one_line(nir_file, tmp_path):
    _replace_weight(nir_file, lambda g: g.create_dataset("weight", shape=(3, 4), dtype="<f8",
                                                          external=[("/etc/passwd", 0, 96)]))
    err = cli("import-nir", nir_file, "-o", tmp_path / "m.json").stderr
    assert "another file" in err and not (tmp_path / "m.json").exists()


# ------------------------------------------------------------------ JSON documents


@pytest.mark.parametrize("swap, words", [
    (('"dt": 0.001', '"dt": NaN'), "NaN is not a number"),
    (('"dt": 0.001', '"dt": -Infinity'), "-Infinity is not a number"),
    (('"dt": 0.001', '"dt": 1e400'), "overflows a 64-bit float"),
    (('"dt": 0.001', '"dt": ' + "9" * 5000), "unreadable JSON"),
    (('"version": 1,', '"version": 1, "version": 1,'), "appears twice"),
])
def test_json_that_python_accepts_but_json_does_not_is_refused(tmp_path, small, swap, words):
    path = tmp_path / "m.json"
    text = model_file.dumps(small)  # the JSON text form (version 1)
    assert swap[0] in text
    path.write_text(text.replace(swap[0], swap[1], 1))
    with pytest.raises(ModelFileError, match=words) as exc:
        model_file.load(path)
    one_line(exc.value)


@pytest.mark.parametrize("kind", ["model", "artifact"])
def test_deep_nesting_is_refused_before_parsing(tmp_path, kind):
    fmt = "neuromorph-model" if kind == "model" else "neuromorph-artifact"
    path = tmp_path / "deep.json"
    path.write_text(f'{{"format": "{fmt}", "version": 1, "sha256": "", "{kind}": '
                    + "[" * 100000 + "]" * 100000 + "}")
    load = model_file.load if kind == "model" else artifact.load_artifact
    with pytest.raises(ModelFileError, match="nested 100001 levels deep"):
        load(path)


def test_nesting_within_the_bound_still_loads(tmp_path, small):
    deep: object = 1
    for _ in range(documents.MAX_JSON_DEPTH - 5):
        deep = [deep]
    g = Graph(small.nodes, small.edges, small.dt, {"deep": deep})
    assert model_file.load(nm.save(g, tmp_path / "m.json")).metadata == {"deep": deep}


def test_json_depth_skips_brackets_inside_strings():
    assert documents.json_depth('{"a": "[[[[[\\"[[[", "b": [[1]]}') == 3


# ------------------------------------------------------------------ model files


def _model_doc(tmp_path, small):
    return json.loads(model_file.dumps(small))


def test_duplicate_node_names_are_refused(tmp_path, small):
    doc = _model_doc(tmp_path, small)
    doc["model"]["nodes"].append(copy.deepcopy(doc["model"]["nodes"][1]))
    with pytest.raises(ModelFileError, match="node 'fc1': two nodes have this name"):
        model_file.load(rewrite(tmp_path / "dup.json", doc, "model"))


@pytest.mark.parametrize("name", ["fc1\n", "fc\t1", "fc1\r", "fc1\x00", "\u2028fc1"])
def test_control_characters_in_node_names_are_refused(tmp_path, small, name):
    with pytest.raises(IRError, match="invalid node name"):
        Graph({name: Input((1,)), "out": Output()}, [(name, "out")])
    doc = _model_doc(tmp_path, small)
    doc["model"]["nodes"][1]["name"] = name
    doc["model"]["edges"] = [[name if e == "fc1" else e for e in edge] for edge in doc["model"]["edges"]]
    with pytest.raises(ModelFileError, match="invalid node name") as exc:
        model_file.load(rewrite(tmp_path / "bad.json", doc, "model"))
    one_line(exc.value)


@pytest.mark.parametrize("where, value, words", [
    ("nodes", 5, "'nodes' must be a list"),
    ("edges", [["input", "fc1", "x"]], "edge 0 must be"),
    ("edges", ["ab"], "edge 0 must be"),
    ("metadata", [1], "'metadata' must be an object"),
    ("node0.shape", [10**30], "more than 2147483647 elements"),
    ("node0.shape", ["a"], "Input shape must be"),
    ("node1.weight", {"__array__": "", "dtype": ["x"], "shape": [1]}, "unsupported array dtype"),
    ("node1.weight", {"__array__": "", "dtype": "float64", "shape": [-1]}, "ints >= 0"),
    ("node1.weight", 10**400, "not numeric"),
    ("node1.plasticity", {"__plasticity__": "stdp", "params": [1]}, "params must be an object"),
])
def test_wrong_types_in_a_model_file_are_refused(tmp_path, small, where, value, words):
    doc = _model_doc(tmp_path, small)
    m = doc["model"]
    if "." in where:
        i, key = where[4:].split(".")
        m["nodes"][int(i)]["params"][key] = value
    else:
        m[where] = value
    with pytest.raises(ModelFileError, match=words) as exc:
        model_file.load(rewrite(tmp_path / "bad.json", doc, "model"))
    one_line(exc.value)


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.json"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def load():
        try:
            model_file.load(fifo)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001
            outcome.append(exc)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # unblock the reader, then fail
        with open(fifo, "wb"):
            pass
        worker.join(10)
        pytest.fail("loading a FIFO blocked")
    assert isinstance(outcome[0], ModelFileError) and "FIFO" in str(outcome[0])
    assert not artifact.is_artifact(fifo)


SUBPROCESS_LIMIT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))
from neuromorph import model_file
from neuromorph.errors import ModelFileError
try:
    model_file.load(sys.argv[1])
except ModelFileError as exc:
    print(exc)
"""


@pytest.mark.parametrize("which", ["/dev/zero", "sparse"])
def test_devices_and_huge_files_are_refused_without_reading_them(tmp_path, which):
    path = which
    if which == "sparse":
        path = tmp_path / "huge.json"
        with open(path, "wb") as f:
            f.truncate(documents.MAX_FILE_BYTES + 1)  # sparse: no disk used
    proc = subprocess.run([sys.executable, "-c", SUBPROCESS_LIMIT, str(path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-500:]
    assert ("character device" if which == "/dev/zero" else "larger than the bound") in proc.stdout


def test_the_size_bound_is_checked_before_reading(tmp_path, small, monkeypatch):
    path = nm.save(small, tmp_path / "m.json")
    monkeypatch.setattr(documents, "MAX_FILE_BYTES", 100)
    with pytest.raises(ModelFileError, match="larger than the bound"):
        model_file.load(path)


# ------------------------------------------------------------------ artifacts


@pytest.fixture(scope="module")
def artifacts(small):
    out = {}
    for precision in ("float", "fixed"):
        out[precision] = json.loads(artifact.dumps_text(compile_graph(small, backend="lava", precision=precision)))
    return out


def _arr(a):
    return documents.encode_array(np.asarray(a))


def _set(path: str, value):
    """An edit of the artifact content: 'a.b.0.c' = value ('-' deletes)."""
    def edit(d):
        *head, last = path.split(".")
        for k in head:
            d = d[int(k)] if isinstance(d, list) else d[k]
        if value == "-":
            del d[last]
        elif isinstance(d, list):
            d[int(last)] = value
        else:
            d[last] = value
    return edit


NET = "payload.netlist"
Q = "payload.quantized"
PAYLOAD_CASES = [
    ("float", f"{NET}.inputs.0.name", ["input"], "is not an Input node"),
    ("float", f"{NET}.populations.0.kind", "-", "missing kind"),
    ("float", f"{NET}.outputs.0.population", "nope", "is not the population that feeds"),
    ("float", f"{NET}.outputs.0.signal", "spikes", "signal"),
    ("float", f"{NET}.populations.0.du", _arr([np.nan] * 3), "du: contains NaN"),
    ("float", f"{NET}.populations.0.du", _arr([1.5] * 3), "du: value 1.5 is outside"),
    ("float", f"{NET}.populations.0.vth", _arr([-np.inf] * 3), "vth: contains an infinity"),
    ("float", f"{NET}.populations.1.vth", _arr([1.0] * 2), "LI population has no threshold"),
    ("float", f"{NET}.populations.0.kind", "hodgkin-huxley", "'hodgkin-huxley' is not one of"),
    ("float", f"{NET}.populations.0.kind", "li", "but the model's node is a LIF"),
    ("float", f"{NET}.populations.0.offset", -1, "offset: -1 is outside"),
    ("float", f"{NET}.populations.0.offset", 10**12, "offset: 1000000000000 is outside"),
    ("float", f"{NET}.populations.0.shape", [10**6], "is not the model's"),
    ("float", f"{NET}.populations.0.beta", _arr(np.zeros(4)), "has shape [4], expected [3]"),
    ("float", f"{NET}.connections.0.weight", _arr(np.ones((4, 3))), "has shape [4, 3], expected [3, 4]"),
    ("float", f"{NET}.connections.0.source", "ghost", "is not an input port or population"),
    ("float", f"{NET}.connections.0.ir_delay", 10**9, "ir_delay"),
    ("float", f"{NET}.connections.0.extra_delay", 5, "extra_delay"),
    ("float", f"{NET}.connections.0.extra_delay", "0", "extra_delay"),
    ("float", f"{NET}.source_nodes", [], "source_nodes"),
    ("float", "payload", [], "payload: must be an object"),
    ("float", f"{NET}.populations", {}, "must be a list"),
    ("fixed", f"{Q}.v_scale.lif1", 0, "v_scale: 0 is outside"),
    ("fixed", f"{Q}.weight_exps.0", 40, "weight_exp: 40 is outside -8..7"),
    ("fixed", f"{Q}.weight_exps.0", 1.5, "weight_exp: must be an int"),
    # the stored form (backends/loihi2/payload.py): connection 0 has mixed signs, w >> 1
    ("fixed", f"{Q}.weights.0", _arr(np.full((3, 4), 100000)), "value 100000 is outside -128..127"),
    ("fixed", f"{Q}.weights.0", _arr(np.array([[3, 5, 0, 1]] * 3)), "'mixed', but the mantissas are excitatory"),
    ("fixed", f"{Q}.weights.0", _arr(np.ones((3, 4)) * 0.5), "stored as float64, expected int8"),
    ("fixed", f"{Q}.weight_signs.0", "excitatory", "is outside 0..255"),
    ("fixed", f"{Q}.weight_signs.0", "both", "weight_signs: 'both' is not a sign mode"),
    ("fixed", f"{Q}.weight_signs.0", 1, "weight_signs: 1 is not a sign mode"),
    ("fixed", f"{Q}.weight_signs", ["mixed"], "weight_signs: has 1 entries, expected 2"),
    ("fixed", f"{Q}.weight_signs", "mixed", "weight_signs: must be a list"),
    ("fixed", f"{Q}.populations.lif1.du", _arr([0.5] * 3), "du: stored as float64, expected int16"),
    ("fixed", f"{Q}.populations.lif1.du", _arr([5000] * 3), "du: value 5000 is outside 0..4095"),
    ("fixed", f"{Q}.populations.lif1.vth", _arr([2**17] * 3), "vth: value 131072 is outside"),
    ("fixed", f"{Q}.populations.lif1.bias_mant", _arr([100000] * 3), "bias_mant"),
    ("fixed", f"{Q}.populations.lif1.bias_exp", _arr([40] * 3), "bias_exp"),
    ("fixed", f"{Q}.populations.lif1.v_init", _arr([2**24] * 3), "v_init"),
    ("fixed", f"{Q}.populations.lif1.beta_shift", _arr([100] * 3), "beta_shift"),
    ("fixed", f"{Q}.populations.lif1.a_inc", "-", "has keys"),
    ("fixed", f"{Q}.num_message_bits.input", 7, "num_message_bits"),
    ("fixed", f"{Q}.input_scale.input", -1.0, "input_scale"),
    ("fixed", f"{Q}.input_scale.input", "1", "input_scale"),
    ("fixed", Q, None, "without its integer data"),
    ("float", Q, {}, "carries no integer data"),
    ("float", "precision", ["float"], "precision"),
    ("float", "target", {"x": 1}, "target must be a name"),
    ("float", "target", "lava\nx", "target must be a name"),
    ("float", "dt", "0.001", "dt must be"),
    ("float", "report", [], "report is malformed"),
    ("float", "model", [], "model is malformed"),
    ("float", "model.nodes.1.name", "fc1\n", "invalid node name"),
]


@pytest.mark.parametrize("form", ["text", "binary"])
@pytest.mark.parametrize("precision, where, value, words", PAYLOAD_CASES,
                         ids=[f"{p}-{w}={str(v)[:20]}" for p, w, v, _ in PAYLOAD_CASES])
def test_every_payload_field_is_checked_on_load(tmp_path, artifacts, precision, where, value, words, form):
    doc = copy.deepcopy(artifacts[precision])
    _set(where, value)(doc["artifact"])
    path = rewrite(tmp_path / "a.loihi", doc, "artifact", form)
    with pytest.raises(ModelFileError, match=words.replace("[", r"\[").replace("(", r"\(")) as exc:
        artifact.load_artifact(path)
    one_line(exc.value)


def _raw(a, dtype):
    """An inline array record at ``dtype`` (the binary form keeps it; JSON text at
    version 2 refuses all but float64/int64)."""
    a = np.asarray(a, dtype)
    return {"__array__": base64.b64encode(a.tobytes()).decode(), "dtype": dtype, "shape": list(a.shape)}


OLD_WEIGHT_CASES = [  # artifacts written before the stored form: mantissas as int32/int64, no weight_signs
    ("text", _arr(np.full((3, 4), 100000)), "value 100000 is outside -256..255"),
    ("text", _arr(np.full((3, 4), 2**32)), "value 4.29497e.09 is outside -256..255"),  # not wrapped to 0
    ("text", _arr(np.array([[3, -5, 0, 1]] * 3)), "clip and truncate"),
    ("text", _arr(np.ones((3, 4)) * 0.5), "must be int64"),
    ("binary", _raw([[3, -5, 0, 1]] * 3, "int32"), "clip and truncate"),
    ("binary", _raw([[2, -4, 0, 2]] * 3, "int8"), "weights: int8 without quantized.weight_signs"),
    ("binary", _raw([[2, 4, 0, 2]] * 3, "uint8"), "weights: must be int64, got uint8"),
]


@pytest.mark.parametrize("form, value, words", OLD_WEIGHT_CASES,
                         ids=[f"{f}-{w[:20]}" for f, _, w in OLD_WEIGHT_CASES])
def test_the_weights_of_older_artifacts_are_checked_on_load(tmp_path, artifacts, form, value, words):
    doc = copy.deepcopy(artifacts["fixed"])
    _set(f"{Q}.weight_signs", "-")(doc["artifact"])
    _set(f"{Q}.weights.0", value)(doc["artifact"])
    path = rewrite(tmp_path / "a.loihi", doc, "artifact", form)
    with pytest.raises(ModelFileError, match=words.replace("(", r"\(")) as exc:
        artifact.load_artifact(path)
    one_line(exc.value)


def test_an_older_fixed_artifact_still_loads(tmp_path, artifacts):
    """Without weight_signs the stored integers are the mantissas themselves (int64 in
    JSON text, int32 in the binary container), parameters int64."""
    new = artifact.load_artifact(rewrite(tmp_path / "new.loihi", artifacts["fixed"], "artifact"))
    q = new.payload.quantized
    doc = copy.deepcopy(artifacts["fixed"])
    stored = doc["artifact"]["payload"]["quantized"]
    del stored["weight_signs"]
    for form, dtype in (("text", np.int64), ("binary", "int32")):
        stored["weights"] = [_arr(w) if form == "text" else _raw(w, dtype) for w in q.weights]
        stored["populations"] = {name: {k: _arr(v) for k, v in params.items()}
                                 for name, params in q.populations.items()}
        old = artifact.load_artifact(rewrite(tmp_path / f"old.{form}", doc, "artifact", form)).payload.quantized
        assert all(a.dtype == np.int32 and np.array_equal(a, b) for a, b in zip(old.weights, q.weights, strict=True))
        assert all(old.populations[p][k].dtype == np.int64 and np.array_equal(old.populations[p][k], v)
                   for p, params in q.populations.items() for k, v in params.items())


@pytest.mark.parametrize("form", ["text", "binary"])
@pytest.mark.parametrize("precision", ["float", "fixed"])
def test_valid_artifacts_still_load(tmp_path, artifacts, precision, form):
    a = artifact.load_artifact(rewrite(tmp_path / "a.loihi", artifacts[precision], "artifact", form))
    assert a.precision == precision and len(a.payload.netlist.populations) == 2


def test_run_refuses_a_garbage_artifact_before_running(tmp_path, artifacts):
    doc = copy.deepcopy(artifacts["float"])
    _set(f"{NET}.populations.0.du", _arr([np.nan] * 3))(doc["artifact"])
    path = rewrite(tmp_path / "a.loihi", doc, "artifact")
    np.save(tmp_path / "x.npy", np.zeros((5, 4)))
    err = cli("run", path, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npz").stderr
    assert "du: contains NaN" in err and not (tmp_path / "y.npz").exists()


@pytest.mark.parametrize("style", [{"separators": (",", ":")}, {"sort_keys": True}, {"indent": 4}])
def test_a_resaved_artifact_is_still_recognised(tmp_path, artifacts, style):
    from neuromorph.run import load_deployment

    path = tmp_path / "a.loihi"
    path.write_text(json.dumps(artifacts["float"], **style))
    assert artifact.is_artifact(path)
    a = load_deployment(str(path))
    assert isinstance(a, artifact.Artifact) and a.precision == "float"


def test_a_model_file_is_not_sniffed_as_an_artifact(tmp_path, small):
    g = Graph(small.nodes, small.edges, small.dt, {"format": "neuromorph-artifact"})
    assert not artifact.is_artifact(nm.save(g, tmp_path / "m.json"))
    (tmp_path / "t.json").write_text(model_file.dumps(g))
    assert not artifact.is_artifact(tmp_path / "t.json")


# ------------------------------------------------------------------ long graphs


def chain(n: int) -> Graph:
    nodes = {"x": Input((2,))}
    edges = []
    prev = "x"
    for i in range(n):
        nodes[f"n{i}"] = LIF(tau=0.01) if i % 2 else Linear(np.eye(2))
        edges.append((prev, f"n{i}"))
        prev = f"n{i}"
    nodes["y"] = Output()
    edges.append((prev, "y"))
    return Graph(nodes, edges, dt=1e-3)


def test_long_chains_need_no_recursion(tmp_path):
    g = chain(5001)
    assert g.order()[0] == "x" and g.order()[-1] == "y" and g.cycles() == []
    from neuromorph.cli import summarize

    assert summarize(g)["totals"]["nodes"] == 5003
    ring = {"x": Input((2,)), **{f"s{i}": Scale(1.0) for i in range(3000)}, "y": Output()}
    edges = [("x", "s0"), *((f"s{i}", f"s{i + 1}") for i in range(2999)), ("s2999", "s0", 1), ("s2999", "y")]
    loops = Graph(ring, edges).cycles()
    assert len(loops) == 1 and len(loops[0]) == 3000
    with pytest.raises(IRError, match="cycle with no delay"):
        Graph(ring, [*edges[:-2], ("s2999", "s0"), ("s2999", "y")])


def test_shape_inference_follows_delayed_edges_backwards():
    # Every node is reachable only through a delayed edge from later in the order.
    n = 2000
    nodes = {f"s{i}": Scale(1.0) for i in range(n)}
    nodes.update({"x": Input((2,)), "y": Output()})
    edges = [("x", f"s{n - 1}"), *((f"s{i + 1}", f"s{i}", 1) for i in range(n - 1)), ("s0", "y")]
    start = time.perf_counter()
    g = Graph(nodes, edges)
    assert g.shape("s0") == (2,) and time.perf_counter() - start < 5


@pytest.mark.slow
def test_loading_16000_nodes_is_near_linear(tmp_path):
    path = nm.save(chain(16000), tmp_path / "m.json")
    start = time.perf_counter()
    g = model_file.load(path)
    seconds = time.perf_counter() - start
    assert len(g.nodes) == 16002
    assert seconds < 20, seconds  # 108 s before (quadratic); about 2 s now


def test_refusals_are_neuromorph_errors():
    assert issubclass(ModelFileError, NeuromorphError) and issubclass(NIRConversionError, NeuromorphError)
