"""On-chip learning on the Loihi 2 target (docs/onchip-learning.md): the delta rule
(ThreeFactor) lowered to Lava's LearningDense, its third factor computed on the chip by
the readout, checked against the IR semantics (docs/semantics.md section 6) sample
after sample; fixed point against the numpy model of the engine's arithmetic."""
from __future__ import annotations

import numpy as np
import pytest

from neuromorph.artifact import dumps_text, loads_artifact
from neuromorph.backends.loihi2.target import learned_weights, model_with_weights, with_weights
from neuromorph.compile import compile_graph
from neuromorph.errors import IRError, NeuromorphError
from neuromorph.ir import LI, LIF, STDP, Affine, Graph, Input, Linear, Output, Scale, ThreeFactor
from neuromorph.registry import target
from neuromorph.simulate import simulate

DT = 1e-3
REL = 1e-6


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def delta_graph(w: np.ndarray, *, lr: float = 200.0, tau: float = 0.01, v_delay: int = 1, label_delay: int = 0,
                t_epoch: int = 1, hidden: bool = False, w_max: float | None = None) -> Graph:
    """The readout of tests/test_plasticity.py's delta-rule test, with the error reading
    the readout through a delay of one step (what the chip computes: learning_model.py).
    ``hidden``: the plastic connection reads a LIF population instead of the input."""
    n_out, n_in = w.shape
    rule = ThreeFactor(error="err", lr=lr, tau_pre=tau, t_epoch=t_epoch, w_max=w_max)
    nodes = {"x": Input((n_in,)), "label": Input((n_out,)), "w": Linear(w, plasticity=rule), "ro": LI(tau=tau),
             "neg": Scale(-1.0), "half": Scale(0.5), "err": Output(), "y": Output()}
    edges = [("w", "ro"), ("ro", "y"), ("ro", "neg", v_delay), ("neg", "err"), ("label", "half", label_delay),
             ("half", "err")]
    if hidden:
        nodes.update({"win": Linear(np.full((n_in, n_in), 0.6)), "h": LIF(tau=0.005, r=4.0)})
        edges += [("x", "win"), ("win", "h"), ("h", "w")]
    else:
        edges.append(("x", "w"))
    return Graph(nodes, edges, dt=DT)


def host_error_graph(w: np.ndarray) -> Graph:
    """An Affine connection whose error is an Input stream fed with the run."""
    n_out, n_in = w.shape
    rule = ThreeFactor(error="m", lr=50.0, tau_pre=0.004)
    return Graph({"x": Input((n_in,)), "m": Input((n_out,)), "w": Affine(w, np.full(n_out, 0.5), plasticity=rule),
                  "ro": LI(tau=0.02), "y": Output()}, [("x", "w"), ("w", "ro"), ("ro", "y")], dt=DT)


def spikes(rng: np.random.Generator, shape: tuple[int, ...], p: float) -> np.ndarray:
    return (rng.random(shape) < p).astype(np.float64)


def ir_chain(graph: Graph, inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """The IR run sample after sample, each from the weights the previous one ended with
    (what a learning run on the chip computes): outputs [N, T, ...] and W after each sample."""
    n = len(next(iter(inputs.values())))
    outs: dict[str, list[np.ndarray]] = {}
    weights = []
    for j in range(n):
        res = simulate(graph, {k: v[j] for k, v in inputs.items()}, record=["w.weight"])
        for k in graph.outputs:
            outs.setdefault(k, []).append(res[k])
        weights.append(res["w.weight"][-1])
        graph = model_with_weights(graph, {"w": weights[-1]})
    return {k: np.stack(v) for k, v in outs.items()}, weights


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def case(kind: str, n: int = 3, t: int = 40, seed: int = 0) -> tuple[Graph, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    if kind == "host_error":
        g = host_error_graph(rng.normal(0.0, 0.3, (2, 3)))
        return g, {"x": spikes(rng, (n, t, 3), 0.5), "m": rng.normal(0.0, 1.0, (n, t, 2))}
    g = delta_graph(rng.normal(0.0, 0.3, (2, 3)), hidden=kind == "hidden", label_delay=1 if kind == "hidden" else 0)
    label = np.broadcast_to(rng.uniform(-1, 1, (n, 1, 2)), (n, t, 2)).copy()
    return g, {"x": spikes(rng, (n, t, 3), 0.5), "label": label}


# ------------------------------------------------------------------ float: the IR, exactly


@pytest.mark.parametrize("kind", ["readout", "hidden", "host_error"])
def test_float_learning_on_lava_equals_the_ir_sample_after_sample(kind):
    g, inputs = case(kind)
    art = loads_artifact(dumps_text(compile_graph(g, backend="lava", precision="float")))  # through the file
    rec = target("lava").run(art, inputs, learn=True)
    want_out, want_w = ir_chain(g, inputs)
    got_w = rec.probes["w.weight"]
    assert got_w.shape == (3, 2, 3)
    for j in range(3):
        assert rel_error(got_w[j], want_w[j]) <= REL
    for name, want in want_out.items():
        assert rel_error(rec.outputs[name], want) <= REL, name
    # it learnt: the weights moved by far more than the tolerance
    assert np.abs(want_w[-1] - g.nodes["w"].weight).max() > 0.05
    assert np.array_equal(learned_weights(rec)["w"], got_w[-1])


def test_the_third_factor_reaches_the_synapse():
    """Guard: a label with a zero readout path still moves the weights, by exactly the
    delta rule's amount; a run whose y2 stayed 0 (an unconnected port receives zeros)
    would leave them where they were."""
    rng = np.random.default_rng(3)
    g = delta_graph(np.zeros((2, 3)), lr=100.0)
    x = spikes(rng, (1, 30, 3), 0.6)
    label = np.broadcast_to([1.0, -1.0], (1, 30, 2)).copy()
    rec = target("lava").run(compile_graph(g, backend="lava"), {"x": x, "label": label}, learn=True)
    moved = rec.probes["w.weight"][0]
    # expected: dW = rate * sum_t err(t) xbar(t) with err(t) = 0.5 label - v(t - 1)
    _, want = ir_chain(g, {"x": x, "label": label})
    assert np.all(np.abs(moved) > 0.01), "the third factor stayed zero: the weights did not move"
    assert np.all(np.sign(moved[0]) > 0) and np.all(np.sign(moved[1]) < 0)
    assert rel_error(moved, want[0]) <= REL


def test_a_plastic_artifact_runs_frozen_and_takes_learnt_weights(tmp_path):
    g, inputs = case("readout", n=4, t=30, seed=5)
    art = compile_graph(g, backend="lava")
    learnt = learned_weights(target("lava").run(art, inputs, learn=True))
    after = loads_artifact(dumps_text(with_weights(art, learnt)))
    assert np.array_equal(after.graph.nodes["w"].weight, learnt["w"])
    frozen = target("lava").run(after, inputs)  # lanes, no learning
    assert "w.weight" not in frozen.probes
    static = model_with_weights(g, learnt).replace_nodes(
        w=Linear(learnt["w"]))  # the same network without the rule
    want = simulate(static, inputs)
    assert rel_error(frozen.outputs["y"], want["y"]) <= REL
    assert rel_error(frozen.outputs["err"], want["err"]) <= REL


# ------------------------------------------------------------------ refusals


def _refusal(graph: Graph, precision: str = "float") -> str:
    with pytest.raises((IRError, NeuromorphError)) as exc:
        compile_graph(graph, backend="lava", precision=precision)
    return one_line(exc)


W0 = np.zeros((2, 3))


@pytest.mark.parametrize("graph, words", [
    (delta_graph(W0, v_delay=0), "give the path 'ro' -> 'err' a delay of 1 step"),
    (delta_graph(W0, t_epoch=2), "t_epoch = 2"),
    (delta_graph(W0, w_max=1.0), "weight bounds"),
])
def test_what_the_engine_cannot_do_is_refused_naming_the_connection(graph, words):
    text = _refusal(graph)
    assert "node 'w'" in text and words in text


def test_wirings_the_chip_cannot_compute_are_refused_naming_the_connection():
    rule = ThreeFactor(error="err", lr=1.0, tau_pre=0.01)
    composed = Graph({"x": Input((3,)), "w": Linear(W0, plasticity=ThreeFactor(error="m", lr=1.0, tau_pre=0.01)),
                      "s": Scale(2.0), "m": Input((2,)), "ro": LI(tau=0.01), "y": Output()},
                     [("x", "w"), ("w", "s"), ("s", "ro"), ("ro", "y")])
    assert "node 'w'" in _refusal(composed) and "its own synapse" in _refusal(composed)
    other = Graph({"x": Input((3,)), "label": Input((2,)), "w": Linear(W0, plasticity=rule), "ro": LI(tau=0.01),
                   "w2": Linear(np.ones((2, 3))), "h": LIF(tau=0.01), "err": Output(), "y": Output(), "z": Output()},
                  [("x", "w"), ("w", "ro"), ("ro", "y"), ("x", "w2"), ("w2", "h"), ("h", "z"), ("h", "err", 1),
                   ("label", "err")])
    text = _refusal(other)
    assert "node 'w'" in text and "reads 'h'" in text
    stdp = Graph({"x": Input((3,)), "w": Linear(W0, plasticity=STDP()), "h": LIF(tau=0.01), "y": Output()},
                 [("x", "w"), ("w", "h"), ("h", "y")])
    text = _refusal(stdp)  # STDP runs on the chip with its learning delay of 1 (tests/test_onchip_stdp.py)
    assert "node 'w'" in text and "plasticity 'stdp' with delay = 0" in text and "set delay=1" in text


def test_graded_input_to_a_learning_synapse_is_refused_in_one_line():
    g, inputs = case("readout", n=1, t=10)
    inputs["x"] = inputs["x"] * 0.5
    with pytest.raises(NeuromorphError) as exc:
        target("lava").run(compile_graph(g, backend="lava"), inputs, learn=True)
    assert "plastic connection 'w'" in one_line(exc) and "spikes (0 or 1)" in one_line(exc)


# ------------------------------------------------------------------ fixed point


def test_fixed_point_runs_a_plastic_artifact_frozen():
    g, inputs = case("readout", n=2, t=20, seed=7)
    art = compile_graph(g, backend="lava", precision="fixed", calibration=inputs)
    frozen = target("lava").run(art, inputs)
    want = simulate(model_with_weights(g, {}).replace_nodes(w=Linear(g.nodes["w"].weight)), inputs)
    assert np.abs(frozen.outputs["y"] - want["y"]).max() < 0.05 * np.abs(want["y"]).max() + 1e-3
    assert np.abs(frozen.outputs["err"] - want["err"]).max() < 0.05 * np.abs(want["err"]).max() + 1e-3
    moved = with_weights(art, {"w": g.nodes["w"].weight * 0.5})
    i, _ = moved.payload.netlist.plastic("w")
    q0, q1 = art.payload.quantized, moved.payload.quantized
    assert q1.weight_exps[i] == q0.weight_exps[i]
    assert np.abs(q1.weights[i] - q0.weights[i] / 2).max() <= 1  # the same scale, re-rounded
    with pytest.raises(NeuromorphError) as exc:
        with_weights(art, {"w": g.nodes["w"].weight * 1000})
    assert "do not fit its 8-bit mantissas" in one_line(exc)


def fixed_case(kind: str, n: int = 4, t: int = 40, lr: float = 1.0, seed: int = 0):
    """A fixed-point learning run and the streams the engine saw: (graph, inputs,
    artifact, recording, rule, kwargs of the engine model, w0, pre spikes, y2)."""
    from neuromorph.backends.loihi2.chip_model import Schedule, input_stream
    from neuromorph.backends.loihi2.learning_model import y2_stream
    from neuromorph.backends.loihi2.quantize import input_payload, learning_rules
    from neuromorph.streams import Probe

    rng = np.random.default_rng(seed)
    hidden = kind == "hidden"
    g = delta_graph(rng.normal(0.0, 0.3, (2, 3)), lr=lr, hidden=hidden, label_delay=1 if hidden else 0)
    label = np.broadcast_to(rng.uniform(-1, 1, (n, 1, 2)), (n, t, 2)).copy()
    inputs = {"x": spikes(rng, (n, t, 3), 0.5), "label": label}
    art = compile_graph(g, backend="lava", precision="fixed", calibration=inputs)
    q = art.payload.quantized
    net = q.net
    rule, spec = learning_rules(q)["w"], net.learning["w"]
    rec = target("lava").run(art, inputs, learn=True, probes=[Probe("ro")] + ([Probe("h")] if hidden else []))
    i, conn = net.plastic("w")
    sched = Schedule.of(net, n, t)
    src = 0 if not hidden else net.population("h").offset
    if hidden:
        pre = np.zeros((sched.total, 3))
        for j in range(n):
            pre[src + j * sched.period: src + j * sched.period + t] = rec.probes["h"][j]
    else:
        pre = input_stream(net, inputs, sched)["x"]
    v_int = np.rint((rec.probes["ro"] - net.population("ro").v_shift) * q.v_scale["ro"]).astype(np.int64)
    y2 = y2_stream(rule, spec, input_payload(q, "label", label), v_int, source_offset=src,
                   post_offset=net.population("ro").offset, period=sched.period, total=sched.total)
    kw = dict(offset=src, steps=t, period=sched.period, samples=n)
    return g, inputs, art, rec, rule, kw, q.weights[i], pre, y2


@pytest.mark.parametrize("kind", ["readout", "hidden"])
def test_fixed_learning_on_lava_equals_the_engine_model_bit_for_bit_and_the_float_rule_within_the_bound(kind):
    from neuromorph.backends.loihi2.learning_model import engine_fixed, fixed_bound, float_engine

    g, inputs, art, rec, rule, kw, w0, pre, y2 = fixed_case(kind)
    got = rec.probes["w.weight"]  # model units
    i, _ = art.payload.netlist.plastic("w")
    mant = np.stack([with_weights(art, {"w": w}).payload.quantized.weights[i] for w in got])
    model = engine_fixed(rule, w0, pre, y2, rng_seed=1, **kw)
    assert np.array_equal(mant, model)  # Lava's fixed engine, exactly
    assert np.abs(model).max() < 255  # no saturation: the bound applies
    assert np.abs(model[-1] - w0).max() >= 20  # it learnt
    ref = float_engine(rule, w0, pre, y2, **kw)
    bound = fixed_bound(rule, pre, y2, **kw)
    assert np.all(np.abs(model - ref) <= bound)  # the worst case
    likely = fixed_bound(rule, pre, y2, delta=1e-6, **kw)  # Azuma-Hoeffding, 1e-6 per synapse
    assert np.all(np.abs(model - ref) <= likely)
    assert likely[-1].max() < 0.5 * bound[-1].max()  # far below the worst case
    # another seed draws other rounding: the engine model follows it
    other = target("lava").run(art, inputs, learn=True, rng_seed=5).probes["w.weight"]
    mant5 = np.stack([with_weights(art, {"w": w}).payload.quantized.weights[i] for w in other])
    assert np.array_equal(mant5[0], engine_fixed(rule, w0, pre, y2, rng_seed=5, **kw)[0])


def test_fixed_learnt_state_runs_frozen_exactly_through_the_file():
    from neuromorph.backends.loihi2.quantize import simulate_fixed

    g, inputs, art, rec, rule, kw, w0, pre, y2 = fixed_case("readout", n=3)
    learnt = learned_weights(rec)
    after = loads_artifact(dumps_text(with_weights(art, learnt)))
    q = after.payload.quantized
    assert np.any(q.weights[0] % 2), "learnt mantissas include odd ones (8 bits + sign)"
    assert np.array_equal(q.weights[0], with_weights(art, learnt).payload.quantized.weights[0])
    want, _ = simulate_fixed(q, inputs)
    for lanes in (1, None):
        got = target("lava").run(after, inputs, lanes=lanes)
        assert np.array_equal(got.outputs["y"], want["y"]), lanes


@pytest.mark.parametrize("lr, words", [(1e7, "too large"), (1e-5, "too small")])
def test_learning_rates_the_fixed_engine_cannot_hold_are_refused_at_compile_time(lr, words):
    g, inputs = case("readout", n=1, t=10)
    g = delta_graph(g.nodes["w"].weight, lr=lr)
    with pytest.raises((IRError, NeuromorphError)) as exc:
        compile_graph(g, backend="lava", precision="fixed", calibration=inputs)
    assert "node 'w'" in one_line(exc) and words in one_line(exc)


@pytest.mark.parametrize("precision", ["float", "fixed"])
def test_verify_compares_a_plastic_artifact_run_without_learning_with_frozen_weights(precision):
    from neuromorph.run import verify

    g, inputs = case("hidden", n=2, t=25, seed=11)
    art = compile_graph(g, backend="lava", precision=precision, calibration=inputs)
    result = verify(art, inputs)
    assert result["passed"], result
    assert result["max_output_difference"] < (1e-9 if precision == "float" else 0.05)


def test_run_learn_refuses_an_error_stream_the_task_cannot_fill():
    """A rule whose third factor is an Input of its own (an error stream given with the run
    API) cannot learn from a task's labels: --learn says so before any run."""
    from neuromorph.learning import check_learnable

    g = Graph({"x": Input((3,)), "err": Input((2,)),
               "w": Linear(np.zeros((2, 3)), plasticity=ThreeFactor(error="err", lr=1.0, tau_pre=0.02)),
               "ro": LI(tau=0.02, r=20.0), "y": Output()},
              [("x", "w"), ("w", "ro"), ("ro", "y")])
    art = compile_graph(g, backend="lava", precision="float")
    with pytest.raises(NeuromorphError, match="third factor 'err' is an Input of its own"):
        check_learnable(art)


def test_cli_compiles_verifies_and_learns_a_digits_incremental_model(tmp_path, capsys):
    """The user story through the CLI: train (0-4), compile fixed (calibrated with the
    label stream), verify the frozen deployment, learn on chip, save the learned model."""
    import json

    from neuromorph.cli import main

    model, art, learned = tmp_path / "m.nm", tmp_path / "m.loihi", tmp_path / "learned.nm"
    assert main(["train", "--task", "digits-incremental", "--epochs", "1", "-o", str(model), "--quiet"]) == 0
    assert main(["compile", str(model), "--backend", "lava", "--precision", "fixed", "-o", str(art)]) == 0
    assert main(["verify", str(art), "--limit", "5", "--json"]) == 0
    capsys.readouterr()
    assert main(["run", str(art), "--learn", "--limit", "40", "--quiet", "--json", "--save-learned", str(learned)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["learning_samples"] == 40 and out["precision"] == "fixed"
    assert {"accuracy_before", "accuracy_after", "new_classes_accuracy", "old_classes_accuracy"} <= set(out)
    assert main(["run", str(learned), "--quiet", "--json"]) == 0  # the learned model runs anywhere
    assert json.loads(capsys.readouterr().out)["task"] == "digits-incremental"
