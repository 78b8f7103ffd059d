"""The reference simulator implements docs/semantics.md, rule by rule.

Numbers are chosen as short binary fractions (dt = 0.5, tau = 1, ...) where a test
needs exact equality, so that "v == v_threshold" really is equal in float64.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neuromorph.discretize import (
    DEFAULT_DT, delay_steps, discretize_cuba_lif, discretize_lif, discretize_node, resolve_dt,
)
from neuromorph.errors import IRError, NeuromorphError
from neuromorph.ir import (
    ALIF, IF, LI, LIF, Affine, Conv1d, Conv2d, CubaLIF, Delay, Flatten, Graph, Input, Linear,
    Output, Scale, SumPool2d,
)
from neuromorph.simulate import simulate


def chain(*layers, shape=(1,), dt=None, delays=None) -> Graph:
    """Input -> layers... -> Output, every edge delay 0 unless ``delays`` says otherwise."""
    names = ["x"] + [f"n{k}" for k in range(len(layers))] + ["out"]
    nodes = {"x": Input(shape), **{f"n{k}": l for k, l in enumerate(layers)}, "out": Output()}
    delays = delays or [0] * (len(names) - 1)
    edges = [(a, b, d) for a, b, d in zip(names, names[1:], delays)]
    return Graph(nodes, edges, dt=dt)


def const(value: float, steps: int, width: int = 1) -> np.ndarray:
    return np.full((steps, width), value, dtype=np.float64)


# ------------------------------------------------------------------------ LIF


def test_lif_follows_forward_euler_closed_form_below_threshold():
    # v[t] = r X (1 - (1 - dt/tau)^(t+1)) from v[-1] = v_leak = 0
    tau, r, dt, x = 0.02, 2.0, 1e-3, 0.3
    g = chain(LIF(tau=tau, r=r, v_threshold=100.0), dt=dt)
    v = simulate(g, const(x, 50), record=["n0.v"])["n0.v"][:, 0]
    t = np.arange(50)
    np.testing.assert_allclose(v, r * x * (1 - (1 - dt / tau) ** (t + 1)), rtol=1e-12)


def test_lif_spikes_periodically_at_the_closed_form_crossing():
    # After each reset to v_reset = v_leak = 0 the trajectory restarts, so the neuron
    # fires every n steps, n = first k with r X (1 - (1 - dt/tau)^k) > v_threshold.
    tau, dt, x = 0.01, 1e-3, 1.5
    k = np.arange(1, 100)
    n = int(k[1.5 * (1 - (1 - dt / tau) ** k) > 1.0][0])
    g = chain(LIF(tau=tau), dt=dt)
    z = simulate(g, const(x, 60))["out"][:, 0]
    expected = np.zeros(60)
    expected[n - 1 :: n] = 1.0
    np.testing.assert_array_equal(z, expected)


def test_lif_threshold_is_strict():
    # dt/tau = 0.5, gain = dt r / tau = 1: v = 1 == v_threshold (no spike), then 1.5.
    g = chain(LIF(tau=1.0, r=2.0), dt=0.5)
    out = simulate(g, const(1.0, 2), record=["n0.v"])
    np.testing.assert_array_equal(out["out"][:, 0], [0.0, 1.0])
    assert out["n0.v"][0, 0] == 1.0


def test_lif_resets_to_v_reset_and_starts_at_v_leak():
    g = chain(LIF(tau=1.0, r=2.0, v_leak=0.25, v_reset=-0.75), dt=0.5)
    v = simulate(g, np.array([[0.0], [4.0], [0.0]]), record=["n0.v"])["n0.v"][:, 0]
    # t0: 0.5*0.25 + 0.125 + 0 = 0.25 (stays at v_leak); t1: 0.125+0.125+4 > 1 -> reset
    # t2: 0.5*(-0.75) + 0.125 = -0.25
    np.testing.assert_array_equal(v, [0.25, -0.75, -0.25])


# ------------------------------------------------------------- other neurons


def test_if_integrates_without_leak_and_resets_to_v_reset():
    # gain = dt r = 1, X = 0.25, v starts at v_reset = -0.5:
    # v = -.25 0 .25 .5 .75 1.0 (== threshold: no spike) 1.25 (spike, back to -0.5) ...
    g = chain(IF(r=2.0, v_reset=-0.5), dt=0.5)
    z = simulate(g, const(0.25, 14))["out"][:, 0]
    expected = np.zeros(14)
    expected[[6, 13]] = 1.0
    np.testing.assert_array_equal(z, expected)


def test_if_starts_at_v_reset():
    g = chain(IF(v_reset=0.75, v_threshold=1.0), dt=1e-3)
    v = simulate(g, const(0.0, 3), record=["n0.v"])["n0.v"][:, 0]
    np.testing.assert_array_equal(v, [0.75, 0.75, 0.75])


def test_cuba_lif_membrane_uses_this_steps_current():
    # One input pulse at t = 0: i[0] = di w_in X = 0.5, v[0] = dv r i[0] = 0.25 already.
    g = chain(CubaLIF(tau_syn=1.0, tau_mem=1.0, v_threshold=10.0), dt=0.5)
    out = simulate(g, np.array([[1.0], [0.0], [0.0]]), record=["n0.i", "n0.v"])
    np.testing.assert_array_equal(out["n0.i"][:, 0], [0.5, 0.25, 0.125])
    # v[1] = 0.5*0.25 + 0.5*0.25 = 0.25; v[2] = 0.5*0.25 + 0.5*0.125 = 0.1875
    np.testing.assert_array_equal(out["n0.v"][:, 0], [0.25, 0.25, 0.1875])


def test_cuba_lif_reset_leaves_the_current_alone():
    g = chain(CubaLIF(tau_syn=1.0, tau_mem=0.5, w_in=2.0, v_reset=-1.0), dt=0.5)
    out = simulate(g, np.array([[3.0], [0.0]]), record=["n0.i", "n0.v"])
    # i[0] = 0.5*2*3 = 3, v[0] = 1*3 = 3 > 1 -> spike, v = -1, i stays 3
    np.testing.assert_array_equal(out["out"][:, 0], [1.0, 1.0])
    np.testing.assert_array_equal(out["n0.i"][:, 0], [3.0, 1.5])
    np.testing.assert_array_equal(out["n0.v"][:, 0], [-1.0, -1.0])


def test_alif_threshold_rises_by_beta_per_spike_and_decays():
    # dv = 1 makes v = X (memoryless); da = 0.5; theta[t] = 1 + a[t-1].
    g = chain(ALIF(tau_mem=0.5, tau_adapt=1.0, beta=1.0), dt=0.5)
    out = simulate(g, const(1.5, 7), record=["n0.a"])
    # t0 theta 1 spike; t1 theta 2; t2 theta 1.5 (1.5 not > 1.5); t3 theta 1.25 spike; ...
    np.testing.assert_array_equal(out["out"][:, 0], [1, 0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(
        out["n0.a"][:, 0], [1.0, 0.5, 0.25, 1.125, 0.5625, 0.28125, 1.140625]
    )


def test_alif_with_zero_beta_is_lif():
    x = np.random.default_rng(0).uniform(0, 3, size=(40, 4))
    alif = simulate(chain(ALIF(tau_mem=0.01, tau_adapt=0.1, beta=0.0), shape=(4,)), x)
    lif = simulate(chain(LIF(tau=0.01), shape=(4,)), x)
    assert alif["out"].sum() > 0
    np.testing.assert_array_equal(alif["out"], lif["out"])


def test_li_outputs_its_membrane_potential():
    g = chain(LI(tau=1.0, r=2.0, v_leak=0.5), dt=0.5)
    out = simulate(g, np.array([[1.0], [0.0], [0.0]]), record=["n0.v"])
    # v[-1] = 0.5; v = 0.5 v + 0.25 + X
    np.testing.assert_array_equal(out["out"][:, 0], [1.5, 1.0, 0.75])
    np.testing.assert_array_equal(out["out"], out["n0.v"])


def test_per_neuron_parameters_broadcast():
    g = chain(LIF(tau=np.array([1.0, 0.5]), r=2.0), shape=(2,), dt=0.5)
    v = simulate(g, const(0.25, 1, width=2), record=["n0.v"])["n0.v"]
    np.testing.assert_array_equal(v, [[0.25, 0.5]])  # gains 1 and 2


# ------------------------------------------------------------------ the graph


def test_feed_forward_chain_has_no_delay():
    # An input spike at t reaches the output through weights and two neurons at t.
    g = chain(
        Linear(weight=[[4.0]]), LIF(tau=0.01, r=10.0), Affine(weight=[[4.0]], bias=[0.0]),
        IF(r=1000.0),
    )
    x = np.zeros((6, 1))
    x[3] = 1.0
    np.testing.assert_array_equal(simulate(g, x)["out"][:, 0], x[:, 0])


def test_edge_delay_shifts_by_whole_steps():
    g = chain(Scale(scale=2.0), delays=[0, 2])
    x = np.arange(1.0, 6.0)[:, None]
    np.testing.assert_array_equal(simulate(g, x)["out"][:, 0], [0, 0, 2, 4, 6])


def test_recurrent_edge_with_delay_one_delivers_previous_steps_spikes():
    # Neuron 0 fires at t = 0 from the input; w_rec carries its spike to neuron 1,
    # which must fire at t = 1 (not t = 0, not t = 2).
    lif = LIF(tau=1.0, r=2.0)  # at dt = 0.5: v = 0.5 v + X
    g = Graph(
        {
            "x": Input((1,)),
            "w_in": Linear(weight=[[3.0], [0.0]]),
            "lif": lif,
            "w_rec": Linear(weight=[[0.0, 0.0], [3.0, 0.0]]),
            "out": Output(),
        },
        [("x", "w_in"), ("w_in", "lif"), ("lif", "w_rec"), ("w_rec", "lif", 1), ("lif", "out")],
        dt=0.5,
    )
    x = np.array([[1.0], [0.0], [0.0], [0.0]])
    np.testing.assert_array_equal(simulate(g, x)["out"], [[1, 0], [0, 1], [0, 0], [0, 0]])


def test_several_incoming_edges_are_summed():
    g = Graph(
        {"x": Input((2,)), "a": Scale(scale=2.0), "b": Scale(scale=[3.0, -1.0]), "out": Output()},
        [("x", "a"), ("x", "b"), ("a", "out"), ("b", "out")],
    )
    x = np.array([[1.0, 2.0], [0.5, -1.0]])
    np.testing.assert_array_equal(simulate(g, x)["out"], x * [5.0, 1.0])


def test_two_inputs_and_two_outputs_by_name():
    g = Graph(
        {"a": Input((2,)), "b": Input((2,)), "s": Scale(scale=1.0), "o1": Output(), "o2": Output()},
        [("a", "s"), ("b", "s"), ("s", "o1"), ("b", "o2")],
    )
    a, b = np.ones((3, 2)), np.full((3, 2), 2.0)
    out = simulate(g, {"a": a, "b": b})
    np.testing.assert_array_equal(out["o1"], a + b)
    np.testing.assert_array_equal(out["o2"], b)


def test_affine_and_flatten():
    w = np.arange(12.0).reshape(2, 6)
    g = chain(Flatten(), Affine(weight=w, bias=[1.0, -1.0]), shape=(2, 3))
    x = np.random.default_rng(1).normal(size=(4, 2, 3))
    np.testing.assert_allclose(simulate(g, x)["out"], x.reshape(4, 6) @ w.T + [1.0, -1.0])


# --------------------------------------------------------------------- Delay node


def test_delay_node_shifts_each_element_by_round_delay_over_dt():
    g = chain(Delay(delay=[0.0, 0.002, 0.003]), shape=(3,), dt=1e-3)
    x = np.arange(1.0, 6.0)[:, None] * [1.0, 10.0, 100.0]
    expected = np.array([[1, 0, 0], [2, 0, 0], [3, 10, 0], [4, 20, 100], [5, 30, 200]])
    np.testing.assert_array_equal(simulate(g, x)["out"], expected)


def test_delay_that_is_not_a_whole_number_of_steps_is_refused():
    with pytest.raises(IRError, match=r"node 'd'.*2\.5 steps.*0\.0005 s"):
        delay_steps(Delay(delay=0.0025), 1e-3, name="d")
    np.testing.assert_array_equal(delay_steps(Delay(delay=[0.003, 0.0]), 1e-3), [3, 0])


# ----------------------------------------------------------- convolutions, pooling


def _run_stateless(node, in_shape, x):
    return simulate(chain(node, shape=in_shape), x)["out"]


def test_conv2d_matches_torch():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(6, 2, 3, 2))  # groups = 2: 4 input channels
    b = rng.normal(size=6)
    node = Conv2d(weight=w, bias=b, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
    x = rng.normal(size=(3, 5, 4, 7, 6))  # [B, T, C, H, W]
    got = _run_stateless(node, (4, 7, 6), x)
    ref = F.conv2d(
        torch.from_numpy(x.reshape(15, 4, 7, 6)), torch.from_numpy(w), torch.from_numpy(b),
        stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2,
    ).numpy()
    np.testing.assert_allclose(got, ref.reshape(3, 5, *ref.shape[1:]), rtol=1e-10, atol=1e-12)


def test_conv1d_matches_torch():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(4, 1, 3))  # depthwise-ish: groups = 2, 2 input channels
    b = rng.normal(size=4)
    node = Conv1d(weight=w, bias=b, stride=3, padding=2, dilation=2, groups=2)
    x = rng.normal(size=(6, 2, 11))  # [T, C, N]
    got = _run_stateless(node, (2, 11), x)
    ref = F.conv1d(
        torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b),
        stride=3, padding=2, dilation=2, groups=2,
    ).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)


def test_sum_pool2d_matches_torch():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 3, 3, 7, 8))
    node = SumPool2d(kernel_size=(3, 2), stride=(2, 3), padding=(1, 1))
    got = _run_stateless(node, (3, 7, 8), x)
    ref = F.avg_pool2d(
        torch.from_numpy(x.reshape(6, 3, 7, 8)), (3, 2), stride=(2, 3), padding=(1, 1),
        count_include_pad=True,
    ).numpy() * 6.0
    np.testing.assert_allclose(got, ref.reshape(2, 3, *ref.shape[1:]), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------- inputs


def _small_network() -> Graph:
    rng = np.random.default_rng(5)
    return Graph(
        {
            "x": Input((3,)),
            "w": Affine(weight=rng.normal(size=(4, 3)), bias=np.zeros(4)),
            "lif": LIF(tau=0.01, v_threshold=0.3),
            "rec": Linear(weight=rng.normal(size=(4, 4))),
            "ro": Linear(weight=rng.normal(size=(2, 4))),
            "li": LI(tau=0.02),
            "out": Output(),
        },
        [("x", "w"), ("w", "lif"), ("lif", "rec"), ("rec", "lif", 1), ("lif", "ro"),
         ("ro", "li"), ("li", "out")],
    )


def test_batched_and_unbatched_inputs_give_the_same_result():
    g = _small_network()
    x = np.random.default_rng(6).uniform(0, 2, size=(4, 30, 3))
    batched = simulate(g, x, record=["lif", "lif.v"])
    assert batched["out"].shape == (4, 30, 2) and batched["lif.v"].shape == (4, 30, 4)
    assert batched["lif"].sum() > 0
    for b in range(4):
        single = simulate(g, x[b], record=["lif", "lif.v"])
        assert single["out"].shape == (30, 2)
        for key in ("out", "lif", "lif.v"):
            np.testing.assert_array_equal(single[key], batched[key][b])


def test_wrong_input_shape_is_a_one_line_error():
    g = _small_network()
    with pytest.raises(NeuromorphError, match=r"input 'x' has shape \[10, 4\], expected \[T, 3\]"):
        simulate(g, np.zeros((10, 4)))
    with pytest.raises(NeuromorphError, match="input 'x'"):
        simulate(g, np.zeros((2, 10, 3, 1)))


def test_missing_input_and_unknown_record_are_errors():
    g = _small_network()
    with pytest.raises(NeuromorphError, match="missing: x"):
        simulate(g, {"y": np.zeros((3, 3))})
    with pytest.raises(NeuromorphError, match="lif.i"):
        simulate(g, np.zeros((3, 3)), record=["lif.i"])
    with pytest.raises(NeuromorphError, match="nope"):
        simulate(g, np.zeros((3, 3)), record=["nope"])


def test_nan_input_is_refused():
    with pytest.raises(NeuromorphError, match="NaN"):
        simulate(_small_network(), np.full((2, 3), np.nan))


# -------------------------------------------------------------------- discretize


def test_discretize_refuses_dt_above_tau():
    with pytest.raises(IRError, match=r"node 'hidden'.*dt/tau_mem = 2\.5 > 1.*0\.0004 s"):
        discretize_cuba_lif(CubaLIF(tau_syn=0.01, tau_mem=4e-4), 1e-3, name="hidden")
    with pytest.raises(IRError, match="dt/tau = 2"):
        simulate(chain(LIF(tau=5e-4)), const(1.0, 3))  # default dt 1e-3
    # dt == tau is the limit, still allowed (v jumps to its target in one step)
    assert float(discretize_lif(LIF(tau=1e-3), 1e-3).dv) == 1.0


def test_discretize_coefficients():
    c = discretize_node(
        CubaLIF(tau_syn=0.005, tau_mem=0.01, r=2.0, v_leak=-0.5, w_in=3.0), 1e-3
    )
    assert c is not None
    np.testing.assert_allclose(
        [c.di, c.gain_i, c.dv, c.gain_v, c.leak], [0.2, 0.6, 0.1, 0.2, -0.05], rtol=1e-12
    )
    assert discretize_node(Scale(scale=1.0), 1e-3) is None


@pytest.mark.parametrize("bad", [0.0, -1e-3, float("nan"), float("inf")])
def test_dt_must_be_positive_and_finite(bad):
    with pytest.raises(IRError, match="dt"):
        resolve_dt(chain(LIF(tau=0.01)), bad)


def test_dt_comes_from_argument_then_graph_then_default():
    assert resolve_dt(chain(LIF(tau=0.01))) == DEFAULT_DT == 1e-3
    assert resolve_dt(chain(LIF(tau=0.01), dt=1e-4)) == 1e-4
    assert resolve_dt(chain(LIF(tau=0.01), dt=1e-4), 5e-4) == 5e-4
    # and the simulator uses it: one step of IF with r = 1 adds dt * X
    g = chain(IF(v_threshold=10.0), dt=0.25)
    assert simulate(g, const(1.0, 1), record=["n0.v"])["n0.v"][0, 0] == 0.25
    assert simulate(g, const(1.0, 1), dt=0.5, record=["n0.v"])["n0.v"][0, 0] == 0.5
