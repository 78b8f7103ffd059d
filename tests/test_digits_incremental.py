"""The class-incremental task, the delta-rule wiring and the ``run --learn`` front door
(what does not need Lava; the on-chip runs are in test_onchip_learning.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import neuromorph as nm
from neuromorph.build import delta_rule
from neuromorph.cli import main
from neuromorph.errors import IRError, NeuromorphError
from neuromorph.ir import Graph, Input, Linear, Output, ThreeFactor
from neuromorph.ir.plasticity import frozen, learning_ports
from neuromorph.learning import class_scores, online_curve, task_inputs
from neuromorph.simulate import simulate
from neuromorph.tasks import load, prepare


def test_the_task_trains_on_old_classes_tests_on_all_and_streams_what_it_is_told():
    ds = load("digits-incremental")
    assert set(ds.y_train) == {0, 1, 2, 3, 4} and set(ds.y_test) == set(range(10))
    assert ds.new_classes == (5, 6, 7, 8, 9) and len(ds.x_learn) == 1437
    base = load("digits")
    assert np.array_equal(np.sort(ds.y_learn), np.sort(base.y_train))  # every training sample, shuffled
    assert not np.array_equal(ds.y_learn, base.y_train)
    new = load("digits-incremental", stream="new", old_classes=7)
    assert set(new.y_learn) == {7, 8, 9} and new.new_classes == (7, 8, 9)
    few = load("digits-incremental", per_class=10)
    assert np.array_equal(np.bincount(few.y_learn), np.full(10, 10))
    shaped = load("digits-incremental", input_shape=(1, 8, 8))
    assert shaped.x_learn.shape[2:] == (1, 8, 8)


@pytest.mark.parametrize("options, words", [
    ({"old_classes": 10}, "old_classes must be 1..9"),
    ({"old_classes": 0}, "old_classes must be an integer >= 1"),
    ({"stream": "old"}, "stream must be one of all, new"),
    ({"per_class": -1}, "per_class must be an integer >= 0"),
])
def test_bad_options_are_refused_in_one_line(options, words):
    with pytest.raises(NeuromorphError, match=words):
        load("digits-incremental", **options)


def _readout_net(n_in: int = 6, n_out: int = 3, seed: int = 0) -> Graph:
    return nm.feedforward(n_in, [8], n_out, seed=seed)


def test_delta_rule_wires_the_error_into_the_graph_and_zeroes_the_rows_asked():
    g = delta_rule(_readout_net(), lr=50.0, target=2.0, zero_rows=[1, 2])
    rule = g.nodes["fc_out"].plasticity
    assert isinstance(rule, ThreeFactor) and rule.error == "error" and rule.tau_pre == float(g.nodes["readout"].tau)
    assert np.all(g.nodes["fc_out"].weight[1:] == 0) and np.all(g.nodes["fc_out"].bias[1:] == 0)
    assert np.any(g.nodes["fc_out"].weight[0] != 0)
    assert learning_ports(g) == (["label"], ["error"])
    assert learning_ports(frozen(g)) == (["label"], ["error"])  # a frozen copy keeps its ports
    assert frozen(g).nodes["fc_out"].plasticity is None
    # the error the graph computes is target*label - readout, every step
    rng = np.random.default_rng(0)
    x = (rng.random((2, 20, 6)) < 0.5).astype(np.float64)
    inputs = task_inputs(g, x, np.array([0, 2]))
    out = simulate(frozen(g), inputs)
    v_before = np.concatenate([np.zeros_like(out["output"][:, :1]), out["output"][:, :-1]], axis=1)
    assert np.allclose(out["error"], 2.0 * inputs["label"] - v_before)


def test_delta_rule_learns_a_readout_in_the_reference_simulator():
    """One long labelled sample: the rule drives the labelled unit to the target and the
    others to 0 (a wrong rule sign or a missing error would not)."""
    g = delta_rule(_readout_net(seed=3), lr=5, target=1.0)
    rng = np.random.default_rng(1)
    x = (rng.random((1, 600, 6)) < 0.4).astype(np.float64)
    inputs = task_inputs(g, x, np.array([1]))
    err = simulate(g, inputs)["error"][0]
    err0 = simulate(frozen(g), inputs)["error"][0]
    assert np.mean(err[-100:] ** 2) < 0.05 * np.mean(err0[-100:] ** 2)


def test_delta_rule_refuses_what_it_cannot_wire():
    g = _readout_net()
    with pytest.raises(IRError, match="Affine or Linear"):
        delta_rule(g, lr=1.0, connection="lif1")
    with pytest.raises(IRError, match="exactly one LI readout"):
        delta_rule(g, lr=1.0, connection="fc1")
    with pytest.raises(IRError, match="zero_rows must lie in 0..2"):
        delta_rule(g, lr=1.0, zero_rows=[3])
    with pytest.raises(IRError, match="already has one"):
        delta_rule(delta_rule(g, lr=1.0), lr=1.0)
    no_readout = Graph({"x": Input((2,)), "w": Linear(np.ones((2, 2))), "y": Output()}, [("x", "w"), ("w", "y")])
    with pytest.raises(IRError, match="cannot find the readout connection"):
        delta_rule(no_readout, lr=1.0)


def test_a_task_model_is_prepared_for_on_chip_learning_and_others_are_not():
    g = nm.models.get("digits-incremental")
    ready = prepare("digits-incremental", g, {})
    assert ready.nodes["fc_out"].plasticity is not None and np.all(ready.nodes["fc_out"].weight[5:] == 0)
    assert prepare("digits", g, {}) is g


def test_scores_and_curve():
    pred, y = np.array([0, 1, 5, 6, 6]), np.array([0, 2, 5, 6, 7])
    s = class_scores(pred, y, (5, 6, 7, 8, 9))
    assert s == {"accuracy": 0.6, "new_classes_accuracy": 2 / 3, "old_classes_accuracy": 0.5}
    assert online_curve(pred, y, window=2) == [{"samples": 2, "accuracy": 0.5}, {"samples": 4, "accuracy": 1.0},
                                               {"samples": 5, "accuracy": 0.0}]
    # by default a block of 100 samples, or a tenth of a shorter stream
    assert [len(online_curve(np.zeros(n), np.zeros(n))) for n in (5, 100, 1000, 1437)] == [5, 10, 10, 15]


def test_cli_trains_a_learnable_model_runs_it_frozen_and_refuses_learn_off_chip(tmp_path, capsys):
    model = tmp_path / "m.nm"
    assert main(["train", "--task", "digits-incremental", "--epochs", "1", "-o", str(model), "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["accuracy"] <= 0.55  # five of ten classes never trained
    assert main(["run", str(model), "--limit", "30", "--json"]) == 0  # frozen, on the model target
    ran = json.loads(capsys.readouterr().out)
    assert ran["task"] == "digits-incremental" and ran["samples"] == 30
    assert main(["run", str(model), "--learn"]) == 2
    assert "does not learn on chip: compile the model for a target that does (lava)" in capsys.readouterr().err
    assert main(["run", str(model), "--save-learned", str(tmp_path / "l.nm")]) == 2
    assert "--save-learned goes with --learn" in capsys.readouterr().err


def test_a_pass_through_input_is_data_not_a_label():
    g = Graph({"x": Input((3,)), "y": Output()}, [("x", "y")])
    assert learning_ports(g) == ([], [])
