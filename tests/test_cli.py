"""The `neuromorph` command, run through the installed entry point as a user would."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import neuromorph as nm
from neuromorph.models import ZOO

NEUROMORPH = str(Path(sys.executable).parent / "neuromorph")


def run(*args, check_rc=0):
    proc = subprocess.run([NEUROMORPH, *map(str, args)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == check_rc, proc.stderr
    return proc


def one_json(stdout):
    """stdout must be exactly one JSON object."""
    obj = json.loads(stdout)
    assert isinstance(obj, dict)
    return obj


def _commands():
    import argparse

    from neuromorph.cli import build_parser

    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return list(sub.choices)


def test_help_is_available_for_every_command():
    commands = _commands()
    assert {"models", "inspect", "backends", "train", "compile", "run", "verify", "import-nir",
            "export-nir"} <= set(commands)
    top = run("--help").stdout
    for cmd in commands:
        assert cmd in top
        assert "usage: neuromorph " + cmd in run(cmd, "--help").stdout


def test_backends_lists_what_the_registry_holds():
    from neuromorph.registry import methods, targets

    data = one_json(run("backends", "--json").stdout)
    assert set(data["targets"]) == set(targets()) >= {"lava", "torch"}
    assert data["methods"] == sorted(methods()) and "bptt" in data["methods"]
    lava = data["targets"]["lava"]
    assert lava["precisions"] == ["float", "fixed"] and "compile" in lava["default_for"]
    assert "ALIF" in lava["node_types"] and "chips" in lava["options"]


def test_unknown_backend_and_method_name_the_registered_ones(tmp_path):
    proc = run("compile", "digits-mlp", "--backend", "spinnaker", "-o", tmp_path / "a.art", check_rc=2)
    assert "unknown backend 'spinnaker' (registered: lava, torch" in proc.stderr
    proc = run("train", "--task", "digits", "--method", "rtrl", "-o", tmp_path / "m.json", check_rc=2)
    assert "unknown training method 'rtrl' (registered: bptt" in proc.stderr
    assert not (tmp_path / "a.art").exists() and not (tmp_path / "m.json").exists()


def test_models_json_lists_every_zoo_model_with_its_task():
    data = one_json(run("models", "--json").stdout)
    assert {m["name"]: m["task"] for m in data["models"]} == {n: e.task for n, e in ZOO.items()}
    tasks = {m["task"] for m in data["models"]}
    assert {"digits", "randman", "cue-accumulation"} <= tasks


def test_models_writes_a_zoo_model_that_loads(tmp_path):
    out = tmp_path / "lsnn.json"
    run("models", "lsnn-cue", "-o", out, "--seed", "4")
    assert nm.load(out) == ZOO["lsnn-cue"].build(4)


def test_inspect_json_summarises_nodes_shapes_parameters_and_cycles(tmp_path):
    path = nm.save(ZOO["lsnn-cue"].build(0), tmp_path / "m.json")
    data = one_json(run("inspect", path, "--json").stdout)
    assert data["totals"]["parameters"] == nm.load(path).parameter_count()
    assert data["totals"]["neurons"] == 102
    assert data["cycles"] == [["hidden", "w_rec"]]
    hidden = next(n for n in data["nodes"] if n["name"] == "hidden")
    assert hidden["type"] == "ALIF" and hidden["output_shape"] == [100]
    assert {"source": "hidden", "target": "w_rec", "delay": 1} in data["edges"]


def test_inspect_text_mentions_every_node(tmp_path):
    text = run("inspect", "digits-conv").stdout
    for name in ZOO["digits-conv"].build(0).nodes:
        assert name in text


@pytest.mark.parametrize("content", [b"", b"{\"format\": \"neuromorph-model\"", b"\x00\x01garbage"])
def test_bad_model_file_is_one_line_and_exit_2(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    proc = run("inspect", path, check_rc=2)
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("neuromorph: error: ")
    assert "Traceback" not in proc.stderr


def test_missing_file_is_one_line_and_exit_2():
    proc = run("inspect", "/no/such/model.json", check_rc=2)
    assert proc.stderr.strip() == "neuromorph: error: /no/such/model.json: no such file"


def test_debug_shows_the_traceback(tmp_path):
    proc = run("--debug", "inspect", "/no/such/model.json", check_rc=1)
    assert "Traceback" in proc.stderr and "ModelFileError" in proc.stderr


def test_nir_export_and_import_round_trip_through_the_cli(tmp_path):
    model = nm.save(ZOO["lsnn-cue"].build(0), tmp_path / "m.json")
    nir_file = tmp_path / "m.nir"
    exported = one_json(run("export-nir", model, "-o", nir_file, "--json").stdout)
    assert any("ALIF" in w for w in exported["warnings"])
    back = tmp_path / "back.json"
    data = one_json(run("import-nir", nir_file, "-o", back, "--json").stdout)
    assert data["dt"] == 1e-3
    assert nm.load(back) == nm.load(model)


def test_import_of_a_non_nir_file_is_one_line_and_exit_2(tmp_path):
    bogus = tmp_path / "x.nir"
    bogus.write_text("hello")
    out = tmp_path / "out.json"
    proc = run("import-nir", bogus, "-o", out, check_rc=2)
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not out.exists()
