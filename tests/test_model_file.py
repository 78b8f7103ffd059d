"""Model files: exact round trips, atomic writes, and refusal of bad files."""
import json

import numpy as np
import pytest

import neuromorph as nm
from neuromorph import documents, model_file
from neuromorph.errors import ModelFileError
from neuromorph.ir import Graph, Input, Linear, Output, Plasticity
from neuromorph.models import ZOO, get


@pytest.mark.parametrize("suffix", [".json", ".nm"])
@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_models_round_trip_exactly(tmp_path, name, suffix):
    g = get(name, seed=3)
    path = nm.save(g, tmp_path / f"m{suffix}")
    assert nm.load(path) == g


def test_round_trip_is_bit_exact_for_awkward_floats(tmp_path):
    w = np.array([[np.nextafter(0.1, 1.0), -0.0, 1e-310, 3.4e38]])
    g = Graph({"in": Input((4,)), "w": Linear(w, plasticity=Plasticity("stdp", {"a_plus": 0.01})),
               "out": Output()}, [("in", "w"), ("w", "out", 2)], dt=1e-4, metadata={"who": "test"})
    back = nm.load(nm.save(g, tmp_path / "m.json"))
    assert back == g
    assert back.nodes["w"].weight.tobytes() == w.tobytes()
    assert back.edges[1].delay == 2 and back.nodes["w"].plasticity.params["a_plus"] == 0.01


def test_truncated_file_is_refused(tmp_path):
    path = nm.save(get("digits-mlp"), tmp_path / "m.nm")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=r"not a complete neuromorph model file \(truncated: its header declares"):
        nm.load(path)
    path.write_text(model_file.dumps(get("digits-mlp"))[:5000])  # the JSON text form (version 1)
    with pytest.raises(ModelFileError, match="not valid JSON; truncated or foreign"):
        nm.load(path)


def test_the_file_name_chooses_the_form_and_old_json_files_still_load(tmp_path):
    g = get("digits-mlp", seed=2)
    text = nm.save(g, tmp_path / "m.JSON")  # what the name promises: JSON text
    assert json.loads(text.read_text())["version"] == model_file.TEXT_VERSION and nm.load(text) == g
    path = nm.save(g, tmp_path / "m.nm")  # any other name: the binary container
    assert path.read_bytes()[:8] == documents.MAGIC
    assert path.stat().st_size < 0.8 * text.stat().st_size
    old = tmp_path / "old.json"
    old.write_text(model_file.dumps(g))
    assert json.loads(old.read_text())["version"] == 1 and nm.load(old) == g
    assert model_file.loads(model_file.dump_bytes(g)) == g
    assert model_file.dump_bytes(g) == path.read_bytes()  # one byte layout per model


def test_corrupted_payload_fails_the_checksum(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(model_file.dumps(get("digits-mlp")))
    doc = json.loads(path.read_text())
    doc["model"]["dt"] = 2e-3
    path.write_text(json.dumps(doc))
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        nm.load(path)


def test_foreign_json_is_refused(tmp_path):
    path = tmp_path / "other.json"
    path.write_text('{"nodes": [], "edges": []}')
    with pytest.raises(ModelFileError, match="no 'neuromorph-model' header"):
        nm.load(path)


def test_binary_file_is_refused(tmp_path):
    path = tmp_path / "x.nir"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)))
    with pytest.raises(ModelFileError, match="not a neuromorph model file"):
        nm.load(path)


def test_future_version_is_refused(tmp_path):
    path = tmp_path / "m.json"
    doc = json.loads(model_file.dumps(get("digits-mlp")))
    doc["version"] = 99
    path.write_text(json.dumps(doc))
    with pytest.raises(ModelFileError, match=r"version 99 is not supported \(this neuromorph reads 1 and 2\)"):
        nm.load(path)


def test_checksummed_but_invalid_model_is_refused_with_the_node_named():
    payload = model_file.graph_to_dict(get("digits-mlp"))
    payload["edges"] = [e for e in payload["edges"] if e[1] != "output"]
    text = documents.dumps_document(model_file.FORMAT, model_file.VERSION, "model", payload)
    with pytest.raises(ModelFileError, match="invalid model: node 'readout': dangling node: its output goes nowhere"):
        model_file.loads(text)


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = nm.save(get("digits-mlp"), tmp_path / "m.json")
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(documents.os, "replace", boom)
    with pytest.raises(ModelFileError, match=r"m.json: cannot write \(disk full\)"):
        nm.save(get("lsnn-cue"), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        nm.save(get("digits-mlp"), tmp_path / "nope" / "m.json")
