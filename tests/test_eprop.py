"""e-prop (backends/torch/eprop.py, docs/eprop.md): exact where the theory is exact.

* With the true learning signal (the total derivative of the loss with respect to each
  spike, from autograd) the factorisation gives the BPTT gradient of the production torch
  network, for LIF, CubaLIF and ALIF recurrent layers, both reset modes.
* Symmetric e-prop equals autograd through the same network with the recurrent spike
  paths detached (Bellec et al.'s own verification construction), for input, recurrent and
  readout weights, biases and the firing-rate regulariser; over 2000 steps too.
* The approximate signals point downhill; feedback matrices are what they claim to be.
* It trains, from Python and the CLI, and refuses what it cannot train in one line.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import neuromorph as nm
from neuromorph import tasks
from neuromorph.backends.torch.eprop import (
    Eprop, EpropOptions, Feedback, SIGNALS, make_plan, reference_gradients,
)
from neuromorph.backends.torch.network import GraphNetwork
from neuromorph.backends.torch.surrogate import Surrogate
from neuromorph.errors import NeuromorphError
from neuromorph.ir import IF, LIF, Affine, CubaLIF
from neuromorph.streams import class_scores
from neuromorph.training import TrainConfig, train

BIN = Path(sys.executable).parent
HIDDEN = 10


def recurrent_layer(kind: str, reset: str = "value", seed: int = 1) -> nm.Graph:
    """6 inputs -> a recurrent layer of 10 neurons (LIF, CubaLIF, ALIF or IF) -> 3 LI readouts, with biases on the
    input and readout connections, strong enough weights that every neuron spikes."""
    g = nm.recurrent(6, HIDDEN, 3, n_adaptive=5, weight_scale=2.0, seed=seed, tau_adapt=0.2)
    dt = g.dt
    neuron = {
        "lif": LIF(tau=20e-3, r=20e-3 / dt, reset=reset),
        "cuba": CubaLIF(tau_syn=5e-3, tau_mem=20e-3, r=20e-3 / dt, w_in=5e-3 / dt, reset=reset),
        "alif": g.nodes["hidden"].replace(reset=reset),
        "if": IF(r=1.0 / dt, reset=reset),
    }[kind]
    rng = np.random.default_rng(seed)
    return g.replace_nodes(
        hidden=neuron,
        w_in=Affine(g.nodes["w_in"].weight, rng.normal(0.0, 0.3, HIDDEN)),
        w_out=Affine(g.nodes["w_out"].weight, rng.normal(0.0, 0.3, 3)),
    )


def batch(steps: int, seed: int = 0, n: int = 4):
    rng = np.random.default_rng(seed)
    x = torch.as_tensor((rng.random((n, steps, 6)) < 0.3).astype(np.float64))
    return x, torch.as_tensor(rng.integers(0, 3, n)), slice(steps - 10, steps)


def network(graph: nm.Graph) -> GraphNetwork:
    return GraphNetwork(graph, surrogate=Surrogate("triangle", 0.3), dtype=torch.float64)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    assert float(b.norm()) > 0, "a zero reference gradient compares nothing"
    return float((a - b).norm() / b.norm())


def production_bptt(net: GraphNetwork, x, y, decision) -> dict[str, torch.Tensor]:
    """The gradient the bptt method uses: autograd through GraphNetwork.forward."""
    loss = torch.nn.functional.cross_entropy(class_scores(net(x)["output"], decision), y, reduction="sum") / len(y)
    names = [f"{n}.{f}" for n in ("w_in", "w_rec", "w_out") for f in ("weight", "bias")
             if hasattr(net.graph.nodes[n], f)]
    params = [net._p(*k.split(".")) for k in names]
    return dict(zip(names, torch.autograd.grad(loss, params)))


CASES = [("lif", "value"), ("cuba", "value"), ("alif", "value"), ("lif", "subtract"), ("alif", "subtract"),
         ("if", "subtract")]


@pytest.mark.parametrize("kind,reset", CASES)
def test_true_learning_signal_gives_the_bptt_gradient(kind, reset):
    check_true_signal(kind, reset, 50)


@pytest.mark.parametrize("kind,reset", CASES)
def test_true_learning_signal_gives_the_bptt_gradient_over_1000_steps(kind, reset):
    check_true_signal(kind, reset, 1000)


def check_true_signal(kind: str, reset: str, steps: int) -> None:
    graph = recurrent_layer(kind, reset)
    net, plan = network(graph), make_plan(graph)
    x, y, decision = batch(steps)
    bptt = production_bptt(net, x, y, decision)
    _, reference, signal = reference_gradients(net, plan, x, y, decision)
    _, factorised = Eprop(net, plan, EpropOptions()).gradients(x, y, decision, signal=signal)
    with torch.no_grad():
        spikes = net(x, record=["hidden"])["hidden"]
    assert 0.05 < float(spikes.mean()) < 0.95, "the layer must spike, and not always"
    assert set(factorised) == set(bptt) == {"w_in.weight", "w_in.bias", "w_rec.weight", "w_out.weight", "w_out.bias"}
    for key in bptt:
        assert relative(reference[key], bptt[key]) <= 1e-12, key  # the reference is the production loss
        assert relative(factorised[key], bptt[key]) <= 1e-10, key


@pytest.mark.parametrize("kind,reset", CASES)
def test_symmetric_eprop_equals_autograd_with_the_recurrent_spikes_detached(kind, reset):
    graph = recurrent_layer(kind, reset)
    net, plan = network(graph), make_plan(graph)
    x, y, decision = batch(60, seed=2)
    options = EpropOptions(rate_reg=0.3, rate_target=40.0)
    _, detached, _ = reference_gradients(net, plan, x, y, decision, detach_delayed=True,
                                         rate_reg=options.rate_reg, rate_target=options.rate_target)
    _, eprop = Eprop(net, plan, options).gradients(x, y, decision)
    _, plain = Eprop(net, plan, EpropOptions()).gradients(x, y, decision)
    for key in detached:
        assert relative(eprop[key], detached[key]) <= 1e-9, key
    # The regulariser really is in there (a test of it that could not fail would be no test).
    assert relative(plain["w_in.weight"], eprop["w_in.weight"]) > 1e-3


def test_streaming_equals_autograd_over_2000_steps():
    graph = recurrent_layer("alif")
    net, plan = network(graph), make_plan(graph)
    x, y, decision = batch(2000, seed=3, n=2)
    options = EpropOptions(rate_reg=0.1)
    _, detached, _ = reference_gradients(net, plan, x, y, decision, detach_delayed=True, rate_reg=0.1)
    _, eprop = Eprop(net, plan, options).gradients(x, y, decision)
    for key in detached:
        assert relative(eprop[key], detached[key]) <= 1e-9, key


@pytest.mark.parametrize("signal", SIGNALS)
def test_approximate_signals_point_downhill(signal, capsys):
    """Cosine between e-prop's and BPTT's gradient. The readout's part is exact for every
    signal, so the whole gradient is clearly positive; the hidden part alone is printed
    (random and adaptive feedback start unaligned: their hidden part is near zero or
    negative before training, which is how feedback alignment works)."""
    graph = recurrent_layer("alif")
    net, plan = network(graph), make_plan(graph, signal)
    x, y, decision = batch(100, seed=0, n=8)
    _, bptt, _ = reference_gradients(net, plan, x, y, decision)
    _, eprop = Eprop(net, plan, EpropOptions(learning_signal=signal), seed=0).gradients(x, y, decision)
    cos = lambda keys: float(torch.nn.functional.cosine_similarity(  # noqa: E731
        torch.cat([eprop[k].flatten() for k in keys]), torch.cat([bptt[k].flatten() for k in keys]), 0))
    whole, hidden = cos(list(bptt)), cos(["w_in.weight", "w_in.bias", "w_rec.weight"])
    with capsys.disabled():
        print(f"\n  {signal:>9}: cosine to BPTT {whole:.3f} (hidden weights alone {hidden:.3f})")
    assert whole > 0.5
    if signal in ("symmetric", "broadcast"):
        assert hidden > 0.5


def test_feedback_matrices_are_what_they_claim():
    graph = recurrent_layer("alif")
    net, plan = network(graph), make_plan(graph)
    w_out = net._p("w_out", "weight").detach()
    assert torch.equal(Feedback(net, plan, "symmetric", 0).matrix("hidden"), w_out.T)
    broadcast = Feedback(net, plan, "broadcast", 0).matrix("hidden")
    assert torch.equal(torch.sign(broadcast), torch.sign(w_out.T)) and broadcast.abs().unique().numel() == 1
    a, b = Feedback(net, plan, "random", 0).matrix("hidden"), Feedback(net, plan, "random", 1).matrix("hidden")
    assert not torch.equal(a, b) and not torch.equal(a, w_out.T)
    # Kolen-Pollack: the feedback receives the readout's update; with decay the two converge.
    kp = Feedback(net, plan, "adaptive", 0)
    gap = (kp.matrix("hidden") - w_out.T).clone()
    with torch.no_grad():
        net._p("w_out", "weight").add_(0.1)
    kp.after_update(decay=0.0)
    assert torch.allclose(kp.matrix("hidden") - net._p("w_out", "weight").detach().T, gap, atol=1e-15)
    kp.after_update(decay=0.5)
    assert torch.allclose(kp.matrix("hidden") - net._p("w_out", "weight").detach().T, 0.5 * gap, atol=1e-15)


def test_eprop_trains_digits_and_is_reproducible():
    graph = nm.feedforward(64, [32], 10, seed=0)
    data = tasks.load("digits", steps=8)
    a = train(graph, data, TrainConfig(epochs=3, seed=0), method_name="eprop")
    b = train(graph, data, TrainConfig(epochs=3, seed=0), method_name="eprop")
    assert a.method == "eprop" and a.graph == b.graph
    losses = [h["loss"] for h in a.history]
    assert losses[-1] < 0.5 * losses[0]
    assert a.accuracy > 0.8  # chance 0.1; BPTT reaches the same after 3 epochs here


def test_a_feed_forward_network_is_exact_without_any_recurrence():
    """One hidden layer, no recurrence: symmetric e-prop IS the BPTT gradient."""
    graph = nm.feedforward(6, [HIDDEN], 3, seed=4, weight_scale=3.0)
    net, plan = network(graph), make_plan(graph)
    x, y, decision = batch(40, seed=5)
    bptt = production_bptt_ff(net, x, y, decision)
    _, eprop = Eprop(net, plan, EpropOptions()).gradients(x, y, decision)
    for key in bptt:
        assert relative(eprop[key], bptt[key]) <= 1e-10, key


def production_bptt_ff(net, x, y, decision):
    loss = torch.nn.functional.cross_entropy(class_scores(net(x)["output"], decision), y, reduction="sum") / len(y)
    names = [f"{n}.{f}" for n in ("fc1", "fc_out") for f in ("weight", "bias")]
    return dict(zip(names, torch.autograd.grad(loss, [net._p(*k.split(".")) for k in names])))


def test_what_eprop_cannot_train_is_refused_in_one_line():
    with pytest.raises(NeuromorphError, match="node 'conv1' is a Conv2d"):
        make_plan(nm.models.get("digits-conv"))
    deep = nm.feedforward(6, [8, 8], 3)
    with pytest.raises(NeuromorphError, match="'lif1' has none .use random or broadcast"):
        make_plan(deep, "symmetric")
    make_plan(deep, "random")  # a deep network trains with random or broadcast feedback
    with pytest.raises(NeuromorphError, match="unknown learning signal 'magic'"):
        EpropOptions.of({"learning_signal": "magic"})
    with pytest.raises(NeuromorphError, match="kp_decay must be < 1"):
        EpropOptions.of({"kp_decay": 1.0})
    with pytest.raises(NeuromorphError, match="the bptt method has no option learning_signal"):
        train(nm.feedforward(64, [8], 10), tasks.load("digits", steps=2), TrainConfig(options={"learning_signal": "random"}))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "neuromorph"), *args], capture_output=True, text=True, timeout=300)


def test_cli_refusals_are_one_line_with_exit_2(tmp_path):
    out = str(tmp_path / "m.json")
    for args, message in [
        (["--learning-signal", "random"], "the bptt method has no option learning_signal"),
        (["digits-conv", "--method", "eprop"], "e-prop cannot train this graph: node 'conv1'"),
        (["--method", "eprop", "--rate-reg", "-1"], "rate_reg must be a finite number >= 0"),
    ]:
        proc = run_cli("train", *args, "--task", "digits", "-o", out)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not Path(out).exists()


def test_cli_trains_with_eprop_and_says_so(tmp_path):
    out = tmp_path / "m.json"
    proc = run_cli("train", "--task", "digits", "--steps", "4", "--epochs", "1", "--method", "eprop",
                   "--learning-signal", "broadcast", "-o", str(out), "--json", "--quiet")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["method"] == "eprop" and data["learning_signal"] == "broadcast"
    assert data["accuracy"] > 0.6  # one epoch at 4 steps; chance 0.1
    assert nm.load(out).metadata["trained_on"]["task"] == "digits"


def _train_eprop_cli(tmp_path, out, launcher):
    model = nm.save(nm.recurrent(64, 16, 10, n_adaptive=8, seed=0), tmp_path / "model.json")
    # 1437 training samples in batches of 1436: the last batch has one sample, so one of two
    # ranks has an empty shard and must still join the rate regulariser's all-reduce.
    cmd = launcher + ["train", str(model), "--task", "digits", "--steps", "8", "--epochs", "1", "--method", "eprop",
                      "--rate-reg", "0.5", "--batch-size", "1436", "--device", "cpu", "--dtype", "float64",
                      "-o", str(out), "--json", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_two_gloo_processes_train_the_same_eprop_model_as_one(tmp_path):
    one = _train_eprop_cli(tmp_path, tmp_path / "one.json", [str(BIN / "neuromorph")])
    two = _train_eprop_cli(tmp_path, tmp_path / "two.json",
                           [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "neuromorph"])
    assert one["workers"] == 1 and two["workers"] == 2
    a, b = nm.load(tmp_path / "one.json"), nm.load(tmp_path / "two.json")
    for name in ("w_in", "w_rec", "w_out"):
        np.testing.assert_allclose(a.nodes[name].weight, b.nodes[name].weight, rtol=0, atol=1e-9)
