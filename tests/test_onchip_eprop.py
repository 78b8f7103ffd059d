"""On-chip e-prop in Lava's learning engine, float (backends/loihi2/lava/eprop_chip.py).

* The chip (RingBuffer -> LearningDense with the e-prop rule -> our EPropLIF, Lava float)
  equals the IR's EProp (``neuromorph.simulate``) to float round-off where the chip's
  one-step learning lag cannot act (the input is silent in the step after every step with
  an error), and in general equals the IR's rule with that lag (``reference(lag=1)``);
  the lag is real (the general case differs from the IR).
* The chip's weight change equals ``-dt*lr`` times the torch e-prop gradient
  (backends/torch/eprop.py, symmetric feedback) of the same network, input and label,
  when the error stream is torch's learning signal on the decision window.
* A guard: y1 and y2 are sent and learnt from (unwired, nothing would be learnt).
"""
import numpy as np
import pytest

from neuromorph.errors import IRError
from neuromorph.ir import LI, LIF, Affine, EProp, Graph, Input, Linear, Output, Scale
from neuromorph.simulate import simulate

from onchip_nets import ir_samples, recurrent_net  # noqa: E402

from neuromorph.backends.loihi2.lava.eprop_chip import eprop_spec, reference, run_layer  # noqa: E402

DT = 1e-3


def layer(rng, n_in=5, n=4, n_err=3, lr=30.0, feedback=True, bias=False, reset="subtract", tau=0.02,
          t_epoch=1) -> Graph:
    """x -> w (EProp, error Input 'err') -> h (LIF) -> z."""
    fb = rng.normal(0.0, 1.0, (n, n_err)) if feedback else None
    rule = EProp(error="err", lr=lr, tau_out=0.02, feedback=fb, gamma=0.3, t_epoch=t_epoch)
    w0 = rng.uniform(0.0, 0.6, (n, n_in))
    conn = Affine(w0, rng.normal(0.0, 0.05, n), plasticity=rule) if bias else Linear(w0, plasticity=rule)
    post = LIF(tau=tau, r=25.0, v_threshold=np.linspace(0.8, 1.2, n), v_leak=0.1, reset=reset)
    return Graph({"x": Input((n_in,)), "w": conn, "h": post, "z": Output(), "err": Input((n if fb is None else n_err,))},
                 [("x", "w"), ("w", "h"), ("h", "z")], dt=DT)


def streams(rng, g: Graph, steps=80, p_err=0.3, silent_after_error=True):
    x = (rng.random((steps, g.shape("x")[0])) < 0.4).astype(np.float64)
    err = rng.normal(0.0, 1.0, (steps, g.shape("err")[0])) * (rng.random((steps, 1)) < p_err)
    if silent_after_error:  # then D(t) x(t + 1) = 0: the chip's learning lag cannot act
        x[1:][np.abs(err[:-1]).sum(1) > 0] = 0.0
    return x, err


def rel_change(got: np.ndarray, want: np.ndarray, w0: np.ndarray) -> float:
    """Relative error of the weight change (stricter than of the weights)."""
    assert np.abs(want - w0).max() > 1e-2, "no learning: the comparison would be empty"
    return float(np.abs((got - w0) - (want - w0)).max() / np.abs(want - w0).max())


@pytest.mark.parametrize("feedback, bias", [(True, False), (False, True)], ids=["feedback", "error-direct-bias"])
def test_chip_weights_equal_the_irs_eprop(feedback, bias):
    rng = np.random.default_rng(3)
    g = layer(rng, feedback=feedback, bias=bias)
    x, err = streams(rng, g)
    w0 = g.nodes["w"].weight
    want = simulate(g, {"x": x, "err": err}, record=["w.weight"])["w.weight"][-1]
    chip = run_layer(eprop_spec(g, "w"), x, err)
    assert chip.spikes > 50 and chip.y1_sum > 1.0
    assert rel_change(chip.weight, want, w0) <= 1e-6
    np.testing.assert_allclose(chip.weight, want, rtol=1e-6, atol=0)


def test_in_general_the_chip_applies_each_update_one_step_late():
    """Where the input of step t + 1 meets a nonzero update of step t, the chip (which
    transmits x(t + 1) before it knows u(t)) runs the IR's rule with a one-step lag."""
    rng = np.random.default_rng(3)
    g = layer(rng)
    x, err = streams(rng, g, silent_after_error=False)
    w0 = g.nodes["w"].weight
    spec = eprop_spec(g, "w")
    ir = simulate(g, {"x": x, "err": err}, record=["w.weight"])["w.weight"][-1]
    assert rel_change(reference(spec, x, err, lag=0)["weight"], ir, w0) <= 1e-12  # the reference is the IR's rule
    lagged = reference(spec, x, err, lag=1)["weight"]
    chip = run_layer(spec, x, err)
    assert rel_change(chip.weight, lagged, w0) <= 1e-9
    assert rel_change(chip.weight, ir, w0) > 1e-3  # the lag changes the result at this rate


def test_chip_weight_change_is_the_torch_eprop_gradient_step():
    """Torch's e-prop (symmetric feedback) gives dE/dW_in = sum_t L(t) ebar(t) with L the
    readout error fed back through W_out^T on the decision window; fed with that error
    (err = -dE/dy on the window, feedback = W_out^T) the chip moves W_in by -dt*lr times it.
    The input is silent on the window, where the chip's (and the IR's) weights change but
    torch's stay fixed until the end."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    from neuromorph.backends.torch.eprop import Eprop, EpropOptions, make_plan
    from neuromorph.backends.torch.network import GraphNetwork
    from neuromorph.backends.torch.surrogate import Surrogate
    from neuromorph.streams import class_scores

    rng = np.random.default_rng(5)
    steps, n_in, n, n_out, window, lr = 60, 6, 8, 3, 10, 5.0
    w_in, w_out = rng.uniform(0.0, 0.5, (n, n_in)), rng.normal(0.0, 0.05, (n_out, n))
    hid, ro = LIF(tau=0.02, r=20.0, reset="subtract"), LI(tau=0.03, r=30.0)
    g_torch = Graph({"x": Input((n_in,)), "w_in": Linear(w_in), "hid": hid, "w_out": Linear(w_out), "ro": ro,
                     "y": Output()}, [("x", "w_in"), ("w_in", "hid"), ("hid", "w_out"), ("w_out", "ro"), ("ro", "y")],
                    dt=DT)
    x = (rng.random((steps, n_in)) < 0.5).astype(np.float64)
    x[steps - window:] = 0.0
    decision = slice(steps - window, steps)
    net = GraphNetwork(g_torch, surrogate=Surrogate("triangle", 0.3), dtype=torch.float64)
    xt, label = torch.as_tensor(x[None]), torch.as_tensor([1])
    _, grads = Eprop(net, make_plan(g_torch), EpropOptions()).gradients(xt, label, decision)
    grad = grads["w_in.weight"].numpy()
    with torch.no_grad():
        scores = class_scores(net(xt)["y"], decision)
    delta = torch.softmax(scores, 1) - F.one_hot(label, n_out).double()
    error = (delta * net._p("ro", "gain").reshape(-1) / window).numpy()[0]  # dE/dy(t) on the window

    rule = EProp(error="err", lr=lr, tau_out=0.03, feedback=w_out.T, gamma=0.3)
    g = Graph({"x": Input((n_in,)), "w_in": Linear(w_in, plasticity=rule), "hid": hid, "z": Output(),
               "err": Input((n_out,))}, [("x", "w_in"), ("w_in", "hid"), ("hid", "z")], dt=DT)
    err = np.zeros((steps, n_out))
    err[decision] = -error
    spec = eprop_spec(g, "w_in")
    assert np.linalg.norm(grad) > 0.05
    raw = reference(spec, x, err)["raw"]  # sum_t L(t) ebar(t), the raw eligibility-times-signal sum
    assert np.linalg.norm(raw + grad) <= 1e-12 * np.linalg.norm(grad)
    chip = run_layer(spec, x, err)
    step = -(DT * lr) * grad  # one plain SGD step with the e-prop gradient
    assert np.linalg.norm((chip.weight - w_in) - step) <= 1e-9 * np.linalg.norm(step)


def test_guard_y1_and_y2_are_sent_and_learnt_from():
    rng = np.random.default_rng(8)
    g = layer(rng)
    x, err = streams(rng, g, steps=40)
    spec = eprop_spec(g, "w")
    wired = run_layer(spec, x, err)
    assert wired.y1_sum > 0.5 and wired.y2_sum > 0.5  # the post sends both factors ...
    assert np.abs(wired.tag_1).max() > 1e-3  # ... y1 reached the eligibility (tag_1) ...
    assert np.abs(wired.weight - spec.weight).max() > 1e-3  # ... and y2 the weights
    unwired = run_layer(spec, x, err, traces=False)  # Lava reads zeros on unconnected y ports
    assert np.array_equal(unwired.weight, spec.chip_weight / spec.gain[:, None])  # unchanged, bit for bit
    assert not np.any(unwired.tag_1)


@pytest.mark.parametrize("kwargs, words", [
    ({"reset": "value"}, "a reset to a value cuts the eligibility per post neuron"),
    ({"tau": np.array([0.02, 0.02, 0.03, 0.02])}, "2 different time constants"),
    ({"tau": DT}, "dt/tau_mem = 1"),
    ({"t_epoch": 2}, "t_epoch > 1"),
])
def test_what_the_engine_cannot_hold_is_refused_in_one_line(kwargs, words):
    g = layer(np.random.default_rng(0), **kwargs)
    with pytest.raises(IRError) as exc:
        eprop_spec(g, "w")
    assert words in str(exc.value) and "node 'w'" in str(exc.value) and "\n" not in str(exc.value)


# ------------------------------------------------------------------ through the Loihi 2 target


def target_graph(rng, *, delay=1, feedback=True, bias=False, reset="subtract", t_epoch=1, error_output=False,
                 n_in=5, n=6, n_err=3, lr=10.0) -> Graph:
    """x -> w (EProp, error Input 'err') -> h (LIF) -> w_out -> ro (LI) -> y."""
    fb = rng.normal(0.0, 1.0, (n, n_err)) if feedback else None
    rule = EProp(error="err", lr=lr, tau_out=0.02, feedback=fb, gamma=0.3, t_epoch=t_epoch, delay=delay)
    w0 = rng.uniform(0.0, 0.6, (n, n_in))
    conn = Affine(w0, rng.normal(0.0, 0.05, n), plasticity=rule) if bias else Linear(w0, plasticity=rule)
    n_e = n if fb is None else n_err
    nodes = {"x": Input((n_in,)), "w": conn,
             "h": LIF(tau=0.02, r=25.0, v_threshold=np.linspace(0.8, 1.2, n), v_leak=0.1, reset=reset),
             "w_out": Linear(rng.normal(0.0, 0.5, (n_e, n))), "ro": LI(tau=0.03, r=10.0), "y": Output()}
    edges = [("x", "w"), ("w", "h"), ("h", "w_out"), ("w_out", "ro"), ("ro", "y")]
    if error_output:  # err(t) = label(t) - v_ro(t - 1), computed in the graph
        nodes.update({"label": Input((n_e,)), "neg": Scale(-1.0), "err": Output()})
        edges += [("ro", "neg", 1), ("neg", "err"), ("label", "err")]
    else:
        nodes["err"] = Input((n_e,))
    return Graph(nodes, edges, dt=DT)


def target_inputs(rng, g: Graph, n=3, steps=60, p_err=0.4):
    x = (rng.random((n, steps, g.shape("x")[0])) < 0.4).astype(np.float64)
    err = rng.normal(0.0, 1.0, (n, steps, g.shape("err")[0])) * (rng.random((n, steps, 1)) < p_err)
    return {"x": x, "err": err}


@pytest.mark.parametrize("feedback, bias", [(True, False), (False, True)], ids=["feedback", "error-direct-bias"])
def test_the_target_learns_eprop_as_the_ir_with_delay_one_sample_after_sample(feedback, bias):
    from neuromorph.artifact import dumps_text, loads_artifact
    from neuromorph.backends.loihi2.target import learned_weights
    from neuromorph.compile import compile_graph
    from neuromorph.registry import target

    rng = np.random.default_rng(7)
    g = target_graph(rng, feedback=feedback, bias=bias)
    inputs = target_inputs(rng, g)
    art = loads_artifact(dumps_text(compile_graph(g, backend="lava", precision="float")))  # through the file
    rec = target("lava").run(art, inputs, learn=True)
    want_w, want_out = ir_samples(g, inputs)
    got = rec.probes["w.weight"]
    w0 = g.nodes["w"].weight
    assert got.shape == (3, *w0.shape)
    prev = w0
    for j in range(3):  # every sample learns, and the chip's change equals the IR's
        assert rel_change(got[j], want_w[j], prev) <= 1e-6
        prev = want_w[j]
    np.testing.assert_allclose(rec.outputs["y"], want_out["y"], rtol=0, atol=1e-9)
    assert np.array_equal(learned_weights(rec)["w"], got[-1])
    # the latency is real: the IR without it ends elsewhere
    now, _ = ir_samples(g.replace_nodes(w=g.nodes["w"].replace(plasticity=g.nodes["w"].plasticity.replace(delay=0))),
                        inputs)
    assert rel_change(now[-1], want_w[-1], w0) > 1e-3


def test_simulate_with_delay_one_is_the_chips_lagged_rule():
    """eprop_chip.reference(lag=1), the rule the chip computes (module docstring, 4.), is
    the IR's EProp with delay 1."""
    rng = np.random.default_rng(3)
    g = layer(rng)
    x, err = streams(rng, g, silent_after_error=False)
    w0 = g.nodes["w"].weight
    spec = eprop_spec(g, "w")
    late = g.replace_nodes(w=g.nodes["w"].replace(plasticity=g.nodes["w"].plasticity.replace(delay=1)))
    ir = simulate(late, {"x": x, "err": err}, record=["w.weight"])["w.weight"][-1]
    assert rel_change(reference(spec, x, err, lag=1)["weight"], ir, w0) <= 1e-12


def test_the_error_reaches_the_synapse_through_the_target():
    """Guard: with a zero error stream the compiled weights come back (to the round-off of
    the gain folded into the chip's weights and divided out again); with an
    error they move by the IR's amount (y1 and y2 both reach the engine: the change equals
    simulate's, which needs the eligibility as well as the signal)."""
    from neuromorph.compile import compile_graph
    from neuromorph.registry import target

    rng = np.random.default_rng(9)
    g = target_graph(rng)
    inputs = target_inputs(rng, g, n=1, steps=40)
    art = compile_graph(g, backend="lava")
    quiet = target("lava").run(art, {"x": inputs["x"], "err": np.zeros_like(inputs["err"])}, learn=True)
    np.testing.assert_allclose(quiet.probes["w.weight"][0], g.nodes["w"].weight, rtol=1e-14, atol=0)
    moved = target("lava").run(art, inputs, learn=True).probes["w.weight"][0]
    want, _ = ir_samples(g, inputs)
    assert np.abs(moved - g.nodes["w"].weight).max() > 0.05, "the third factor stayed zero: nothing learnt"
    assert rel_change(moved, want[0], g.nodes["w"].weight) <= 1e-6


@pytest.mark.parametrize("kwargs, precision, words", [
    ({"delay": 0}, "float", "set delay=1"),
    ({"reset": "value"}, "float", "a reset to a value cuts the eligibility per post neuron"),
    ({"t_epoch": 2}, "float", "t_epoch > 1"),
    ({"error_output": True}, "float", "give the path 'ro' -> 'err' a delay of 2"),
    ({"lr": 0.01}, "fixed", "too small for Lava's fixed learning engine"),
])
def test_the_target_refuses_what_it_cannot_run_at_compile_time(kwargs, precision, words):
    from neuromorph.compile import compile_graph

    g = target_graph(np.random.default_rng(0), **kwargs)
    with pytest.raises(IRError) as exc:
        compile_graph(g, backend="lava", precision=precision)
    text = str(exc.value)
    assert words in text and "node 'w'" in text and "\n" not in text


def test_three_factor_with_a_learning_delay_is_refused():
    from neuromorph.compile import compile_graph
    from neuromorph.ir import ThreeFactor

    g = Graph({"x": Input((3,)), "m": Input((2,)), "w": Linear(np.zeros((2, 3)), plasticity=ThreeFactor(
        error="m", lr=1.0, tau_pre=0.01, delay=1)), "ro": LI(tau=0.02), "y": Output()},
        [("x", "w"), ("w", "ro"), ("ro", "y")], dt=DT)
    with pytest.raises(IRError) as exc:
        compile_graph(g, backend="lava")
    assert "delay = 1" in str(exc.value) and "set delay=0" in str(exc.value) and "node 'w'" in str(exc.value)


def test_graded_input_to_an_eprop_synapse_is_refused_in_one_line():
    from neuromorph.compile import compile_graph
    from neuromorph.errors import NeuromorphError
    from neuromorph.registry import target

    rng = np.random.default_rng(1)
    g = target_graph(rng)
    inputs = target_inputs(rng, g, n=1, steps=10)
    inputs["x"] = inputs["x"] * 0.5
    with pytest.raises(NeuromorphError) as exc:
        target("lava").run(compile_graph(g, backend="lava"), inputs, learn=True)
    assert "plastic connection 'w'" in str(exc.value) and "\n" not in str(exc.value)


# ------------------------------------------------------------------ the error computed on the chip


def label_inputs(rng, n_in=5, n_out=3, n=3, steps=50) -> dict:
    x = (rng.random((n, steps, n_in)) < 0.4).astype(np.float64)
    label = np.zeros((n, steps, n_out))
    for j in range(n):
        label[j, :, j % n_out] = 1.0
    return {"x": x, "label": label}


def ir_learning(g: Graph, inputs: dict, plastic: list) -> list:
    """simulate, sample after sample from the previous sample's final weights: [{connection: W}]."""
    from neuromorph.backends.loihi2.target import model_with_weights

    out = []
    for j in range(len(inputs["x"])):
        res = simulate(g, {k: v[j] for k, v in inputs.items()}, record=[f"{p}.weight" for p in plastic])
        out.append({p: res[f"{p}.weight"][-1] for p in plastic})
        g = model_with_weights(g, out[-1])
    return out


def check_samples(got: dict, want: list, w0: dict) -> float:
    """Every connection moves in every sample and its change equals the IR's (relative 1e-6)."""
    worst = 0.0
    prev = dict(w0)
    for j, w in enumerate(want):
        for p, wj in w.items():
            worst = max(worst, rel_change(got[f"{p}.weight"][j], wj, prev[p]))
            np.testing.assert_allclose(got[f"{p}.weight"][j], wj, rtol=1e-6, atol=1e-9)
        prev = w
    assert worst <= 1e-6
    return worst


def test_eprop_rule_learns_a_recurrent_net_on_chip_with_the_error_computed_on_chip():
    """eprop_rule: e-prop on the input and recurrent connections (error Output reading the
    readout through a delay-2 edge, random feedback), the delta rule on the readout; the
    chip's weights after each of 3 samples equal simulate's (sample after sample)."""
    from neuromorph.build import eprop_rule
    from neuromorph.compile import compile_graph
    from neuromorph.registry import target

    rng = np.random.default_rng(0)
    g = eprop_rule(recurrent_net(rng), lr=4.0, lr_readout=3.0, seed=1)
    plastic = ["w_in", "w_rec", "w_out"]
    assert {p: g.nodes[p].plasticity.rule for p in plastic} == {"w_in": "eprop", "w_rec": "eprop",
                                                                 "w_out": "three_factor"}
    assert [e.delay for e in g.incoming("error_eprop_output")] == [2]
    inputs = label_inputs(rng)
    rec = target("lava").run(compile_graph(g, backend="lava", precision="float"), inputs, learn=True)
    want = ir_learning(g, inputs, plastic)
    check_samples(rec.probes, want, {p: g.nodes[p].weight for p in plastic})
    res = simulate(g, {k: v[0] for k, v in inputs.items()})
    for out in ("y", "error", "error_eprop"):
        np.testing.assert_allclose(rec.outputs[out][0], res[out], rtol=0, atol=1e-9)
    # the readout's term reaches the hidden population: without it the IR learns otherwise
    quiet = g.replace_nodes(error_eprop_output=g.nodes["error_eprop_output"].replace(scale=np.float64(0.0)))
    other = ir_learning(quiet, {k: v[:1] for k, v in inputs.items()}, ["w_in"])[0]["w_in"]
    assert rel_change(other, want[0]["w_in"], g.nodes["w_in"].weight) > 1e-3


@pytest.mark.parametrize("k", [1, 3])
def test_the_readout_lag_of_an_eprop_error_is_two_steps_at_least(k):
    """k_min = off(ro) - off(h) + 1 = 2: a delay-1 readout edge is refused naming the edge; a
    longer one runs (the chip adds the difference as synaptic delay) and equals the IR; a
    frozen readout (not learning) sends its membrane too."""
    from neuromorph.build import eprop_rule
    from neuromorph.compile import compile_graph
    from neuromorph.registry import target

    rng = np.random.default_rng(2)
    g = eprop_rule(recurrent_net(rng), lr=4.0, seed=3, feedback="symmetric")
    drop = {"error", "error_output"}  # the readout does not learn: no delta-rule error
    edges = [(e.source, e.target, k if (e.source, e.target) == ("ro", "error_eprop_output") else e.delay)
             for e in g.edges if e.source not in drop and e.target not in drop]
    nodes = {n: v for n, v in g.nodes.items() if n not in drop}
    g = Graph(dict(nodes, w_out=g.nodes["w_out"].replace(plasticity=None)), edges, dt=DT)
    if k == 1:
        with pytest.raises(IRError) as exc:
            compile_graph(g, backend="lava")
        text = str(exc.value)
        assert "edge 'ro' -> 'error_eprop_output'" in text and "a delay of 2" in text and "\n" not in text
        return
    inputs = label_inputs(rng, n=2, steps=40)
    rec = target("lava").run(compile_graph(g, backend="lava"), inputs, learn=True)
    plastic = ["w_in", "w_rec"]
    check_samples(rec.probes, ir_learning(g, inputs, plastic), {p: g.nodes[p].weight for p in plastic})


def test_eprop_connections_into_one_population_must_share_their_factors():
    from neuromorph.build import eprop_rule
    from neuromorph.compile import compile_graph

    g = eprop_rule(recurrent_net(np.random.default_rng(0)), lr=4.0)
    g = g.replace_nodes(w_rec=g.nodes["w_rec"].replace(plasticity=g.nodes["w_rec"].plasticity.replace(lr=2.0)))
    with pytest.raises(IRError) as exc:
        compile_graph(g, backend="lava")
    assert "must share their error, lr" in str(exc.value) and "\n" not in str(exc.value)


def test_eprop_rule_refuses_what_the_chip_cannot_learn_in_one_line():
    from neuromorph.build import eprop_rule, recurrent

    with pytest.raises(IRError) as exc:
        eprop_rule(recurrent(4, 5, 2), lr=1.0)  # an ALIF population
    assert "LIF populations" in str(exc.value) and "\n" not in str(exc.value)
    g = recurrent_net(np.random.default_rng(0))
    with pytest.raises(IRError) as exc:
        eprop_rule(g.replace_nodes(h=g.nodes["h"].replace(reset="value")), lr=1.0)
    assert 'reset="subtract"' in str(exc.value)


def test_run_learn_accepts_an_eprop_rule_model(tmp_path, capsys):
    """`neuromorph run ART --task digits --learn`: a small LIF model made learnable by eprop_rule."""
    import json

    import neuromorph as nm
    from neuromorph.build import eprop_rule
    from neuromorph.cli import main

    g = nm.feedforward(64, [12], 10, neuron=LIF(tau=0.01, r=10.0, reset="subtract"), seed=0)
    model, art = tmp_path / "m.nm", tmp_path / "m.loihi"
    nm.save(eprop_rule(g, lr=2.0), model)
    assert main(["compile", str(model), "--backend", "lava", "-o", str(art)]) == 0
    capsys.readouterr()
    assert main(["run", str(art), "--task", "digits", "--encoding", "rate", "--learn", "--limit", "10", "--quiet",
                 "--json"]) == 0  # spikes: the synapse's trace counts them
    out = json.loads(capsys.readouterr().out)
    assert out["learning_samples"] == 10 and out["plastic"] == ["fc1", "fc_out"]
    assert {"accuracy_before", "accuracy_after", "online_accuracy", "curve"} <= set(out)


# ------------------------------------------------------------------ fixed point


def test_fixed_eprop_on_lava_equals_the_engine_model_bit_for_bit():
    """Lava's fixed engine with the e-prop rule (learning_model.FixedEProp) against its numpy
    model (engine_eprop_fixed), fed the factors the post sent (rebuilt from the recorded
    integer membrane and spikes, and the error payloads): the same weights, sample after
    sample, for two rng seeds."""
    from neuromorph.backends.loihi2 import neuron_step
    from neuromorph.backends.loihi2.chip_model import Schedule, input_stream
    from neuromorph.backends.loihi2.learning_model import engine_eprop_fixed, error_stream
    from neuromorph.backends.loihi2.quantize import input_payload, learning_rules
    from neuromorph.backends.loihi2.target import with_weights
    from neuromorph.compile import compile_graph
    from neuromorph.registry import target
    from neuromorph.streams import Probe

    rng = np.random.default_rng(7)
    g = target_graph(rng, lr=30.0)
    inputs = target_inputs(rng, g, p_err=0.1)
    art = compile_graph(g, backend="lava", precision="fixed", calibration=inputs)
    q = art.payload.quantized
    net = q.net
    rule = learning_rules(q)["w"]
    i, _ = net.plastic("w")
    n, t = inputs["x"].shape[:2]
    sched = Schedule.of(net, n, t, min_gap=1)
    pop = net.population("h")
    th = neuron_step.FixedNeurons(q.populations["h"], True, True).vth.astype(np.int64)
    pre = input_stream(net, inputs, sched)["x"]
    errp = error_stream(input_payload(q, "err", inputs["err"]), n, t, sched.period, pop.offset, sched.total)
    kw = dict(offset=0, steps=t + 1, period=sched.period, samples=n)
    for seed in (1, 5):
        rec = target("lava").run(art, inputs, learn=True, rng_seed=seed, probes=[Probe("h"), Probe("h", "v")])
        v_int = np.rint((rec.probes["h.v"] - pop.v_shift) * q.v_scale["h"]).astype(np.int64)
        v_pre = v_int + rec.probes["h"].astype(np.int64) * th
        y1, y2, y3 = (np.zeros((sched.total, pop.size), np.int64) for _ in range(3))
        for j in range(n):
            for k in range(t):
                c = pop.offset + j * sched.period + k
                y1[c], y2[c], y3[c] = rule.y1(v_pre[j, k], th), rule.y2(errp[c]), rule.y3
        assert y1.sum() > 100 and np.abs(y2).sum() > 100  # both factors reach the engine
        model = engine_eprop_fixed(rule, q.weights[i], pre, y1, y2, y3, rng_seed=seed, **kw)
        mant = np.stack([with_weights(art, {"w": w}).payload.quantized.weights[i] for w in rec.probes["w.weight"]])
        assert np.array_equal(mant, model)
        assert np.abs(model[-1] - q.weights[i]).max() >= 20  # it learnt


def on_chip_error_graph(rng, k=2, **kwargs) -> Graph:
    """target_graph with err(t) = label(t) - v_ro(t - k) computed in the graph (k = 2: the
    chip's readout lag), the readout frozen (a ReadoutGroup sends its membrane)."""
    g = target_graph(rng, error_output=True, **kwargs)
    return Graph(dict(g.nodes), [(e.source, e.target, k if e.source == "ro" and e.target == "neg" else e.delay)
                                 for e in g.edges], dt=DT)


def fixed_eprop_factors(art, rec, inputs: dict, name: str, sched) -> tuple:
    """The factors the fixed e-prop post of ``name`` sent (y1, y2, y3 [total, n] int64),
    rebuilt from the recorded integer membranes (the post's, and the readout's for an error
    computed on the chip: learning_model.eprop_error_payloads) and spikes."""
    from neuromorph.backends.loihi2 import neuron_step
    from neuromorph.backends.loihi2.learning_model import eprop_error_payloads, error_stream
    from neuromorph.backends.loihi2.quantize import input_payload, learning_rules

    q = art.payload.quantized
    net = q.net
    rule = learning_rules(q)[name]
    spec = net.learning[name]
    pop = net.population(spec.target)
    n, t = inputs["x"].shape[:2]
    th = neuron_step.FixedNeurons(q.populations[pop.name], True, True).vth.astype(np.int64)

    def v_int(p):
        return np.rint((rec.probes[f"{p}.v"] - net.population(p).v_shift) * q.v_scale[p]).astype(np.int64)

    if spec.error_output is None:
        errp = error_stream(input_payload(q, spec.label, inputs[spec.label]), n, t, sched.period, pop.offset,
                            sched.total)
    else:
        errp = eprop_error_payloads(rule, spec, inputs.get(spec.label), v_int(spec.v_source),
                                    post_offset=pop.offset, ro_offset=net.population(spec.v_source).offset,
                                    period=sched.period, total=sched.total)
    v_pre = v_int(pop.name) + rec.probes[pop.name].astype(np.int64) * th
    y1, y2, y3 = (np.zeros((sched.total, pop.size), np.int64) for _ in range(3))
    for j in range(n):
        for k in range(t):
            c = pop.offset + j * sched.period + k
            y1[c], y2[c], y3[c] = rule.y1(v_pre[j, k], th), rule.y2(errp[c]), rule.y3
    return rule, y1, y2, y3


def test_fixed_eprop_with_the_error_computed_on_chip_equals_the_engine_model_bit_for_bit():
    """Fixed point, err(t) = label(t) - v_ro(t - 2) computed on the chip: the readout's
    integer membrane (24-bit graded spikes) through Lava's fixed Dense diag(c) into the
    post's err_in, summed with the label payloads. Lava's fixed weights equal
    engine_eprop_fixed fed the factors rebuilt from the recorded integer membranes (the
    err payloads by learning_model.eprop_error_payloads), sample after sample, 2 rng seeds;
    and the readout's term is in the error (it moves y2)."""
    from neuromorph.backends.loihi2.chip_model import Schedule, input_stream
    from neuromorph.backends.loihi2.learning_model import (
        engine_eprop_fixed, eprop_error_payloads, eprop_label_payloads,
    )
    from neuromorph.backends.loihi2.target import with_weights
    from neuromorph.compile import compile_graph
    from neuromorph.registry import target
    from neuromorph.streams import Probe

    rng = np.random.default_rng(7)
    g = on_chip_error_graph(rng, lr=30.0)
    inputs = label_inputs(rng, n=3, steps=60)
    art = compile_graph(g, backend="lava", precision="fixed", calibration=inputs)
    q = art.payload.quantized
    net = q.net
    entry = next(r for r in q.report["learning"] if r["connection"] == "w")
    assert entry["v_message_bits"] == 24 and entry["v_weight_exp"] in range(-8, 8) and entry["err_scale"] > 0
    i, _ = net.plastic("w")
    n, t = inputs["x"].shape[:2]
    sched = Schedule.of(net, n, t, min_gap=2)
    pre = input_stream(net, inputs, sched)["x"]
    kw = dict(offset=0, steps=t + 1, period=sched.period, samples=n)
    for seed in (1, 5):
        rec = target("lava").run(art, inputs, learn=True, rng_seed=seed,
                                 probes=[Probe("h"), Probe("h", "v"), Probe("ro", "v")])
        rule, y1, y2, y3 = fixed_eprop_factors(art, rec, inputs, "w", sched)
        assert y1.sum() > 100 and np.abs(y2).sum() > 100  # both factors reach the engine
        model = engine_eprop_fixed(rule, q.weights[i], pre, y1, y2, y3, rng_seed=seed, **kw)
        mant = np.stack([with_weights(art, {"w": w}).payload.quantized.weights[i] for w in rec.probes["w.weight"]])
        assert np.array_equal(mant, model)
        assert np.abs(model[-1] - q.weights[i]).max() >= 20  # it learnt
    # the readout's membrane reaches the post: without it y2 would differ
    spec, h, ro = net.learning["w"], net.population("h"), net.population("ro")
    labels = eprop_label_payloads(rule, spec, inputs["label"], n, t, sched.period, h.offset, sched.total)
    quiet = np.stack([rule.y2(row) for row in labels]) * (y3 != 0)  # the post's window steps only
    assert np.abs(quiet - y2).sum() > 50
    # the integer error is the IR's error of the run (the Output the host computes from the
    # recorded readout): E c / S_ro is a power of 2 here, so exactly
    v_ro = np.rint((rec.probes["ro.v"] - ro.v_shift) * q.v_scale["ro"]).astype(np.int64)
    errp = eprop_error_payloads(rule, spec, inputs["label"], v_ro, post_offset=h.offset, ro_offset=ro.offset,
                                period=sched.period, total=sched.total)
    chip = np.stack([errp[h.offset + j * sched.period:h.offset + j * sched.period + t] for j in range(n)])
    np.testing.assert_allclose(chip / rule.err_scale, rec.outputs["err"], rtol=0, atol=1e-12)


def test_eprop_rule_learns_in_fixed_point_with_the_error_computed_on_chip_bit_for_bit():
    """eprop_rule on the recurrent net: e-prop on w_in and w_rec (one error computed on the
    chip, random feedback; the two synapses share h's integer factors) and the delta rule on
    w_out, all three in Lava's fixed engine in one run: each equals its numpy engine model
    (engine_eprop_fixed; engine_fixed with y2_stream) fed the factors rebuilt from the
    recorded integer membranes and spikes, sample after sample."""
    from neuromorph.backends.loihi2.chip_model import Schedule, input_stream
    from neuromorph.backends.loihi2.learning_model import engine_eprop_fixed, engine_fixed, y2_stream
    from neuromorph.backends.loihi2.quantize import input_payload, learning_rules
    from neuromorph.backends.loihi2.target import with_weights
    from neuromorph.build import eprop_rule
    from neuromorph.compile import compile_graph
    from neuromorph.registry import target
    from neuromorph.streams import Probe

    rng = np.random.default_rng(0)
    g = eprop_rule(recurrent_net(rng), lr=30.0, lr_readout=3.0, seed=1)
    inputs = label_inputs(rng, n=3, steps=50)
    art = compile_graph(g, backend="lava", precision="fixed", calibration=inputs)
    q = art.payload.quantized
    net = q.net
    n, t = inputs["x"].shape[:2]
    gap = max(s.v_delay for s in net.learning.values() if s.rule == "eprop")
    sched = Schedule.of(net, n, t, min_gap=gap)
    rec = target("lava").run(art, inputs, learn=True, rng_seed=3,
                             probes=[Probe("h"), Probe("h", "v"), Probe("ro", "v")])
    plastic = ("w_in", "w_rec", "w_out")
    mant = {p: np.stack([with_weights(art, {p: w}).payload.quantized.weights[net.plastic(p)[0]]
                         for w in rec.probes[f"{p}.weight"]]) for p in plastic}
    h, ro = net.population("h"), net.population("ro")
    spikes = np.zeros((sched.total, h.size), np.int64)  # h's spikes at its chip steps (w_rec's, w_out's source)
    for j in range(n):
        spikes[h.offset + j * sched.period: h.offset + j * sched.period + t] = rec.probes["h"][j]
    # e-prop on w_in and w_rec: the same factors (h's), each synapse its own constants
    sources = {"w_in": (input_stream(net, inputs, sched)["x"], 0), "w_rec": (spikes, h.offset)}
    for p in ("w_in", "w_rec"):
        i, _ = net.plastic(p)
        rule, y1, y2, y3 = fixed_eprop_factors(art, rec, inputs, p, sched)
        assert y1.sum() > 100 and np.abs(y2).sum() > 100
        pre, offset = sources[p]
        model = engine_eprop_fixed(rule, q.weights[i], pre, y1, y2, y3, offset=offset, steps=t + 1,
                                   period=sched.period, samples=n, rng_seed=3)
        assert np.array_equal(mant[p], model), p
        assert np.abs(model[-1] - q.weights[i]).max() >= 10, p
    # the delta rule on w_out (its source: h's spikes, its post ro's integer membrane)
    i, _ = net.plastic("w_out")
    spec = net.learning["w_out"]
    delta = learning_rules(q)["w_out"]
    v_ro = np.rint((rec.probes["ro.v"] - ro.v_shift) * q.v_scale["ro"]).astype(np.int64)
    label = input_payload(q, spec.label, inputs[spec.label]) if spec.label else None
    y2d = y2_stream(delta, spec, label, v_ro, source_offset=h.offset, post_offset=ro.offset, period=sched.period,
                    total=sched.total)
    model = engine_fixed(delta, q.weights[i], spikes, y2d, offset=h.offset, steps=t, period=sched.period, samples=n,
                         rng_seed=3)
    assert np.array_equal(mant["w_out"], model)
    assert np.abs(model[-1] - q.weights[i]).max() >= 4


@pytest.mark.parametrize("kwargs, words", [
    ({"lr": 0.01}, "too small"),
    ({"error_output": True, "c": 1e-4}, "mantissa levels"),
])
def test_fixed_eprop_refuses_what_it_cannot_represent_in_one_line(kwargs, words):
    from neuromorph.compile import compile_graph

    rng = np.random.default_rng(0)
    if kwargs.get("error_output"):  # the readout's factor c too small for the message's 8-bit mantissas
        g = on_chip_error_graph(rng)
        g = g.replace_nodes(neg=g.nodes["neg"].replace(scale=np.float64(-kwargs["c"])))
    else:
        g = target_graph(rng, **kwargs)
    with pytest.raises(IRError) as exc:
        compile_graph(g, backend="lava", precision="fixed")
    text = str(exc.value)
    assert words in text and "node 'w'" in text and "\n" not in text


def test_fixed_eprop_stays_within_the_derived_bound_of_the_real_valued_rule():
    """engine_eprop_fixed (Lava's fixed engine, bit for bit: the test above) against the
    real-valued rule it rounds (eprop_float_engine), for given factor streams: within
    eprop_fixed_bound after every sample, for 8 rng seeds, in a regime where nothing
    saturates (the real trajectory's peaks plus the bound stay inside the 9-bit weights
    and tag_1). The compiled rule of target_graph at lr 3 (e_a = -5, e_w = -1: a rate the
    former x0 products refused), with y1 over its 7 bits and y2 up to +-40 at a tenth of
    the steps."""
    from neuromorph.backends.loihi2.learning_model import engine_eprop_fixed, eprop_fixed_bound, eprop_float_engine
    from neuromorph.backends.loihi2.quantize import learning_rules
    from neuromorph.compile import compile_graph

    rng = np.random.default_rng(7)
    g = target_graph(rng, lr=3.0)
    art = compile_graph(g, backend="lava", precision="fixed", calibration=target_inputs(rng, g, p_err=0.1))
    q = art.payload.quantized
    rule = learning_rules(q)["w"]
    assert (rule.ea, rule.ew) == (-5, -1)
    i, _ = q.net.plastic("w")
    w0 = (q.weights[i] // 8) * 2  # a quarter of the compiled weights: room to move
    (n_out, n_in), samples, t = w0.shape, 3, 60
    period = t + 1
    total = samples * period
    r = np.random.default_rng(0)
    pre = (r.random((total, n_in)) < 0.3).astype(np.int64)
    y1 = np.where(r.random((total, n_out)) < 0.3, r.integers(0, 128, (total, n_out)), 0)
    y2 = np.where(r.random((total, 1)) < 0.1, r.integers(-40, 41, (total, n_out)), 0)
    y3 = np.zeros((total, n_out), np.int64)
    for j in range(samples):  # the post's window: y3 = -Y; idle step: nothing
        y3[j * period: j * period + t] = rule.y3
        y1[j * period + t:(j + 1) * period] = 0
        y2[j * period + t:(j + 1) * period] = 0
    kw = dict(offset=0, steps=t + 1, period=period, samples=samples)
    peaks: dict = {}
    real = eprop_float_engine(rule, w0, pre, y1, y2, y3, peaks=peaks, **kw)
    bound_w, bound_t = eprop_fixed_bound(rule, pre, y1, y2, y3, **kw)
    assert peaks["weight"] + bound_w.max() < 255 and peaks["tag"] + bound_t.max() < 255  # nothing saturates
    assert np.abs(real[-1] - w0).max() > 10  # it learns
    worst = 0.0
    for seed in range(1, 9):
        fixed = engine_eprop_fixed(rule, w0, pre, y1, y2, y3, rng_seed=seed, **kw)
        err = np.abs(fixed - real).max(axis=2)  # [samples, out]
        assert np.all(err <= bound_w), (seed, err, bound_w)
        worst = max(worst, float((err / bound_w).max()))
    assert 0.0 < worst <= 1.0


def test_fixed_eprop_keeps_the_previous_trace_in_tag_2_and_takes_low_rates():
    """The fixed rule reads the previous step's trace from tag_2 (dd = u0 * x1 - u0 * d) in
    place of the former x0 products (x1 - I x0), whose exponents >= -7 forced e_a >= -4 and
    e_w >= 2 on this network: lr 0.3 compiles now (lr 10 was refused), with y2 over most of
    its range and psi over all 127 y1 levels."""
    from neuromorph.backends.loihi2.quantize import learning_rules
    from neuromorph.compile import compile_graph

    for lr, want in ((30.0, (-5, 2)), (0.3, (-6, -3))):
        rng = np.random.default_rng(7)
        g = target_graph(rng, lr=lr)
        art = compile_graph(g, backend="lava", precision="fixed", calibration=target_inputs(rng, g, p_err=0.1))
        rule = learning_rules(art.payload.quantized)["w"]
        assert (rule.ea, rule.ew) == want
        assert rule.dd_rule() == "(1) * u0 * x1 - (1) * u0 * d"
        assert "x0" not in rule.dt_rule() + rule.dw_rule() and "d" in rule.dt_rule().split(" * ")[-1]
        assert round(rule.ky1 * 0.3) == 127  # gamma 0.3: Ky1 = 127 / gamma, not lowered
        for target, products in rule.products().items():
            assert all(abs(m) <= 7 and -7 <= e <= 8 for _, _, m, e in products), target
