"""Compile -> run -> verify through the `neuromorph` command and the Python API, with real
Lava: fidelity against the references, aligned outputs, and every bad input refused."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import neuromorph as nm
from neuromorph import documents, model_file, tasks
from neuromorph.compile import compile_graph, load_artifact
from neuromorph.ir import (
    ALIF, LI, LIF, Affine, Conv2d, Delay, Flatten, Graph, Input, Linear, Output, Plasticity, SumPool2d,
)
from neuromorph.models import ZOO
from neuromorph.run import record, verify

BIN = Path(sys.executable).parent
DT = 1e-3


def cli(*args, rc=0):
    proc = subprocess.run([str(BIN / "neuromorph"), *map(str, args)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == rc, proc.stderr
    return proc


def one_line_error(proc):
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("neuromorph: error: ")
    assert "Traceback" not in proc.stderr
    return proc.stderr


def random_spikes(graph, samples=2, steps=20, seed=0, p=0.3):
    rng = np.random.default_rng(seed)
    return (rng.random((samples, steps, *graph.shape(graph.inputs[0]))) < p) * 1.0


def random_graphs():
    rng = np.random.default_rng(5)
    ff = nm.feedforward(12, [24, 16], 4, seed=3, weight_scale=2.0)
    rec = Graph({"x": Input((6,)), "w": Linear(rng.normal(0.4, 0.6, (20, 6))),
                 "h": ALIF(tau_mem=10e-3, tau_adapt=50e-3, beta=rng.uniform(0, 1, 20), r=10.0),
                 "rec": Linear(rng.normal(0, 0.5, (20, 20))), "w2": Linear(rng.normal(0, 1, (3, 20))),
                 "ro": LI(tau=20e-3, r=20.0), "y": Output()},
                [("x", "w"), ("w", "h"), ("h", "rec"), ("rec", "h", 1), ("h", "w2"), ("w2", "ro"), ("ro", "y")], dt=DT)
    conv = Graph({"x": Input((2, 6, 6)), "c": Conv2d(rng.normal(0.2, 0.8, (4, 2, 3, 3)), np.zeros(4), padding=1),
                  "l": LIF(tau=5e-3, r=5.0), "p": SumPool2d(2), "f": Flatten(),
                  "w": Affine(rng.normal(0, 1, (5, 36)), rng.normal(0, 0.1, 5)), "ro": LI(tau=10e-3, r=10.0),
                  "y": Output()},
                 [("x", "c"), ("c", "l"), ("l", "p"), ("p", "f"), ("f", "w"), ("w", "ro"), ("ro", "y")], dt=DT)
    return {"feedforward": ff, "recurrent": rec, "convolutional": conv}


# ------------------------------------------------------------------ fidelity


@pytest.mark.parametrize("name", list(ZOO) + list(random_graphs()))
def test_float_deployment_agrees_with_the_ir_semantics_spike_for_spike(name):
    graph = ZOO[name].build(0) if name in ZOO else random_graphs()[name]
    report = verify(compile_graph(graph, precision="float"), random_spikes(graph), slice(None))
    assert report["spikes_compared"] > 0
    assert report["spike_agreement"] == 1.0 and report["passed"]
    assert report["prediction_agreement"] == 1.0


@pytest.mark.parametrize("name", list(ZOO) + list(random_graphs()))
def test_fixed_deployment_equals_the_bit_exact_model(name):
    graph = ZOO[name].build(0) if name in ZOO else random_graphs()[name]
    x = random_spikes(graph)
    report = verify(compile_graph(graph, precision="fixed", calibration={graph.inputs[0]: x}),
                    x, slice(None))
    assert report["spike_agreement"] == 1.0
    assert report["prediction_agreement"] == 1.0
    assert report["max_output_difference"] == 0.0


# ------------------------------------------------------------------ the commands


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small digits model trained for one epoch (the accuracy is not the point here)."""
    from neuromorph.training import TrainConfig, train

    folder = tmp_path_factory.mktemp("deploy")
    data = tasks.load("digits")
    result = train(nm.feedforward(64, [32], 10), data, TrainConfig(epochs=1))
    return nm.save(result.graph, folder / "digits.json")


def test_compile_json_reports_resources_and_quantization(trained, tmp_path):
    out = tmp_path / "d.loihi"
    data = json.loads(cli("compile", trained, "--precision", "fixed", "--task", "digits", "-o", out, "--json").stdout)
    assert {"backend", "precision", "cores", "neurons", "synapses", "quantization"} <= set(data)
    assert data["backend"] == "lava" and data["precision"] == "fixed"
    assert data["cores"] == 2 and data["neurons"] == 42 and data["synapses"] > 0
    assert data["quantization"]["connections"][0]["weight_exp"] is not None
    assert load_artifact(out).precision == "fixed"


def test_run_artifact_on_a_task_matches_the_bit_exact_model(trained, tmp_path):
    from neuromorph.backends.loihi2.quantize import simulate_fixed

    art = tmp_path / "d.loihi"
    cli("compile", trained, "--precision", "fixed", "--task", "digits", "-o", art)
    data = json.loads(cli("run", art, "--task", "digits", "--limit", "12", "--json", "--quiet").stdout)
    assert {"accuracy", "samples", "steps", "seconds", "spikes"} <= set(data)
    assert data["samples"] == 12 and data["steps"] == 16
    ds = tasks.load("digits")
    out, spikes = simulate_fixed(load_artifact(art).payload.quantized, ds.x_test[:12])
    pred = out["output"].mean(axis=1).argmax(axis=1)
    assert data["accuracy"] == pytest.approx(np.mean(pred == ds.y_test[:12]))
    assert data["spikes"] == sum(spikes.values())


def test_run_artifact_on_a_user_stream_is_aligned_with_the_reference(trained, tmp_path):
    art = tmp_path / "d.loihi"
    cli("compile", trained, "-o", art)
    x = np.random.default_rng(0).random((2, 16, 64))
    np.save(tmp_path / "x.npy", x)
    cli("run", art, "--input", tmp_path / "x.npy", "--output", tmp_path / "lava.npz", "--membrane", "--quiet")
    cli("run", trained, "--input", tmp_path / "x.npy", "--output", tmp_path / "torch.npz", "--membrane")
    lava, torch = np.load(tmp_path / "lava.npz"), np.load(tmp_path / "torch.npz")
    assert sorted(lava.files) == sorted(torch.files) == ["output", "readout.v"]
    for key in torch.files:
        np.testing.assert_allclose(lava[key], torch[key], atol=1e-9)


def test_verify_command_prints_the_agreements(trained, tmp_path):
    art = tmp_path / "d.loihi"
    cli("compile", trained, "-o", art)
    data = json.loads(cli("verify", art, "--task", "digits", "--limit", "5", "--json", "--quiet").stdout)
    assert {"spike_agreement", "prediction_agreement", "reference"} <= set(data)
    assert data["spike_agreement"] == 1.0 and data["prediction_agreement"] == 1.0 and data["passed"]
    assert data["reference"].startswith("IR semantics")


# ------------------------------------------------------------------ bad input


def test_over_capacity_network_is_refused(tmp_path):
    wide = Graph({"x": Input((200_000,)), "w": Linear(np.ones((1, 200_000))), "h": LIF(tau=0.01), "y": Output()},
                 [("x", "w"), ("w", "h"), ("h", "y")])
    model = nm.save(wide, tmp_path / "wide.json")
    err = one_line_error(cli("compile", model, "-o", tmp_path / "a.loihi", rc=2))
    assert "layer 'h'" in err and "synaptic memory" in err
    assert not (tmp_path / "a.loihi").exists()


def test_unsupported_node_is_refused_naming_it(tmp_path):
    g = Graph({"x": Input((3,)), "w": Linear(np.ones((2, 3)), plasticity=Plasticity("stdp")),
               "h": LIF(tau=5e-3), "y": Output()}, [("x", "w"), ("w", "h"), ("h", "y")])
    err = one_line_error(cli("compile", nm.save(g, tmp_path / "m.json"), "-o", tmp_path / "a.loihi", rc=2))
    assert "node 'w'" in err
    g2 = Graph({"x": Input((2,)), "d": Delay([0.001, 0.002]), "h": LIF(tau=5e-3), "y": Output()},
               [("x", "d"), ("d", "h"), ("h", "y")], dt=DT)
    err = one_line_error(cli("compile", nm.save(g2, tmp_path / "m2.json"), "-o", tmp_path / "a.loihi", rc=2))
    assert "node 'd'" in err and "per-element" in err


def test_nan_weight_is_refused(tmp_path):
    payload = model_file.graph_to_dict(nm.feedforward(4, [3], 2))
    weight = documents.decode_array(payload["nodes"][1]["params"]["weight"], "test").copy()
    weight[0, 0] = np.nan
    payload["nodes"][1]["params"]["weight"] = documents.encode_array(weight)
    path = tmp_path / "nan.json"
    path.write_text(documents.dumps_document(model_file.FORMAT, model_file.VERSION, "model", payload))
    err = one_line_error(cli("compile", path, "-o", tmp_path / "a.loihi", rc=2))
    assert "node 'fc1'" in err and "NaN" in err


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupted_or_truncated_artifact_is_refused(trained, tmp_path, damage):
    art = tmp_path / "d.loihi"
    cli("compile", trained, "-o", art)
    data = bytearray(art.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 3]
    else:  # one bit of the last array's data (artifacts are the binary container)
        data[-1] ^= 1
    art.write_bytes(bytes(data))
    err = one_line_error(cli("run", art, "--task", "digits", rc=2))
    assert ("checksum mismatch" in err) if damage == "flip" else ("not valid JSON" in err or "not a" in err)


def test_wrong_input_shape_is_refused(trained, tmp_path):
    art = tmp_path / "d.loihi"
    cli("compile", trained, "-o", art)
    np.save(tmp_path / "bad.npy", np.zeros((16, 63)))
    err = one_line_error(cli("run", art, "--input", tmp_path / "bad.npy", "--output", tmp_path / "y.npz", rc=2))
    assert "[16, 63]" in err and "expected [T, 64]" in err
    assert not (tmp_path / "y.npz").exists()


def test_a_model_file_runs_on_any_target_compiled_in_memory(trained, tmp_path):
    art = tmp_path / "d.loihi"
    cli("compile", trained, "-o", art)
    args = ["--task", "digits", "--limit", "6", "--json", "--quiet"]
    direct = json.loads(cli("run", trained, "--backend", "lava", *args).stdout)
    compiled = json.loads(cli("run", art, *args).stdout)
    assert direct["backend"] == compiled["backend"] == "lava" and direct["precision"] == "float"
    assert direct["accuracy"] == compiled["accuracy"] and direct["spikes"] == compiled["spikes"] > 0


def test_an_artifact_runs_only_on_its_own_target(trained, tmp_path):
    art = tmp_path / "d.loihi"
    cli("compile", trained, "-o", art)
    err = one_line_error(cli("run", art, "--backend", "torch", "--task", "digits", rc=2))
    assert "compiled for 'lava'" in err


def test_norse_network_imported_from_nir_deploys_and_matches_norse():
    import norse.torch as norse
    import torch

    from neuromorph.backends.nir import from_nir

    torch.manual_seed(0)
    model = norse.SequentialState(
        torch.nn.Linear(6, 8), norse.LIFCell(norse.LIFParameters(tau_syn_inv=torch.tensor(200.0),
                                                                 tau_mem_inv=torch.tensor(100.0))),
        torch.nn.Linear(8, 3), norse.LIBoxCell(norse.LIBoxParameters(tau_mem_inv=torch.tensor(50.0))),
    )
    graph = from_nir(norse.to_nir(model, torch.zeros(1, 6)), convention="norse")
    x = torch.rand(40, 6) * 3
    state, theirs = None, []
    with torch.no_grad():
        for t in range(len(x)):
            y, state = model(x[t : t + 1], state)
            theirs.append(y[0].numpy())
    artifact = compile_graph(graph, precision="float")
    ours = record(artifact, x.double().numpy()[None]).outputs
    np.testing.assert_allclose(ours[graph.outputs[0]][0], np.array(theirs), atol=1e-5)
    assert np.abs(np.array(theirs)).max() > 0.01


def test_snntorch_recurrent_export_with_dotted_names_deploys_and_verifies(tmp_path):
    """snnTorch names a recurrent layer's nodes '1.lif' and '1.w_rec': every command must
    take those names (probes are split at the last dot, a full node name wins)."""
    import nir
    import snntorch as snn
    import torch
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(5, 8),
        snn.RLeaky(beta=torch.full((8,), 0.9), threshold=torch.ones(8), linear_features=8,
                   init_hidden=True, reset_mechanism="zero", reset_delay=False),
    )
    with torch.no_grad():
        net[0].weight.mul_(3.0)
    source = tmp_path / "rleaky.nir"
    nir.write(str(source), export_to_nir(net, torch.zeros(1, 5), ignore_dims=[0]))
    model = tmp_path / "rleaky.json"
    cli("import-nir", source, "-o", model, "--convention", "snntorch")
    assert {"1.lif", "1.w_rec"} <= set(nm.load(model).nodes)

    for precision, expected in (("fixed", 1.0), ("float", 0.999)):
        art = tmp_path / f"r-{precision}.loihi"
        cli("compile", model, "--precision", precision, "-o", art)
        report = json.loads(cli("verify", art, "--limit", "4", "--steps", "40", "--json", "--quiet").stdout)
        assert report["passed"] and report["spike_agreement"] >= expected, report
        assert set(report["spike_agreement_per_node"]) == {"1.lif"} and report["spikes_compared"] == 4 * 40 * 8

    x = (np.random.default_rng(3).random((40, 5)) < 0.3).astype(np.float64)
    np.save(tmp_path / "x.npy", x)
    art = tmp_path / "r-fixed.loihi"
    cli("run", art, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npz", "--membrane",
        "--raster", tmp_path / "r.png", "--quiet")
    out = np.load(tmp_path / "y.npz")
    assert sorted(out.files) == ["1.lif.v", "output"] and out["output"].shape == (40, 8)
    assert out["output"].sum() > 0
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_trained_model_remembers_its_task_for_compile_run_and_verify(tmp_path):
    model, art = tmp_path / "m.json", tmp_path / "m.loihi"
    cli("train", "--task", "digits", "--steps", "8", "--epochs", "1", "-o", model, "--quiet")
    assert nm.load(model).metadata["trained_on"] == {"task": "digits", "seed": 0, "options": {"steps": 8}}
    compiled = cli("compile", model, "--precision", "fixed", "-o", art)
    assert "calibrating on digits" in compiled.stderr
    assert load_artifact(art).payload.quantized.num_message_bits["input"] > 0  # graded, as trained
    ran = json.loads(cli("run", art, "--limit", "12", "--json", "--quiet").stdout)
    assert ran["task"] == "digits" and ran["steps"] == 8 and ran["samples"] == 12
    wins = json.loads(cli("run", art, "--limit", "12", "--steps", "16", "--json", "--quiet").stdout)
    assert wins["steps"] == 16  # an explicit flag wins over what the model recorded
    checked = json.loads(cli("verify", art, "--limit", "3", "--json", "--quiet").stdout)
    assert checked["passed"] and checked["steps"] == 8 and checked["spike_agreement"] == 1.0
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((2, 5, 64)))
    own = json.loads(cli("verify", art, "--input", tmp_path / "x.npy", "--json", "--quiet").stdout)
    assert own["passed"] and own["samples"] == 2 and own["steps"] == 5


def test_malformed_training_metadata_is_one_line(tmp_path):
    g = nm.feedforward(64, [8], 10)
    g = Graph(g.nodes, g.edges, g.dt, {"trained_on": {"task": "digits", "seed": "zero", "options": {}}})
    model = nm.save(g, tmp_path / "m.json")
    err = one_line_error(cli("run", model, "--limit", "2", rc=2))
    assert "metadata 'trained_on' is malformed" in err
