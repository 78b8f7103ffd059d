"""Lowering to a netlist: the chip-time netlist model reproduces the IR semantics exactly."""
import numpy as np
import pytest

import neuromorph as nm
from neuromorph.backends.loihi2.netlist import lower
from neuromorph.backends.loihi2.chip_model import Schedule, simulate_netlist
from neuromorph.errors import IRError
from neuromorph.ir import (
    ALIF, IF, LI, LIF, Affine, Conv2d, CubaLIF, Delay, Flatten, Graph, Input, Linear, Output,
    Plasticity, Scale, SumPool2d,
)
from neuromorph.models import ZOO
from neuromorph.simulate import simulate

DT = 1e-3


def assert_lowering_exact(graph, x, atol=1e-9):
    net = lower(graph)
    got, spikes = simulate_netlist(net, x)
    want = simulate(graph, x)
    for name in graph.outputs:
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=atol, err_msg=name)
    return net, spikes


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_models_lower_exactly_over_several_samples(name):
    graph = ZOO[name].build(2)
    rng = np.random.default_rng(0)
    x = (rng.random((3, 25, *graph.shape("input"))) < 0.3) * 1.5
    _, spikes = assert_lowering_exact(graph, x)
    assert sum(spikes.values()) > 0


def test_neuron_kinds_with_biases_and_shifted_potentials_lower_exactly():
    rng = np.random.default_rng(1)
    n = 6
    kinds = {
        "lif": LIF(tau=8e-3, r=6.0, v_leak=0.2, v_threshold=1.0, v_reset=-0.3),
        "cuba": CubaLIF(tau_syn=4e-3, tau_mem=9e-3, r=5.0, v_leak=-0.1, v_threshold=0.8, v_reset=0.1, w_in=3.0),
        "alif": ALIF(tau_mem=10e-3, tau_adapt=30e-3, beta=rng.uniform(0, 1, n), r=8.0, v_leak=0.05,
                     v_threshold=1.0, v_reset=-0.2),
        "if": IF(r=300.0, v_threshold=1.0, v_reset=0.25),
    }
    for kind, neuron in kinds.items():
        g = Graph({"x": Input((4,)), "w": Affine(rng.normal(0.3, 0.5, (n, 4)), rng.normal(0.1, 0.1, n)),
                   "pop": neuron, "w2": Linear(rng.normal(0, 1, (3, n))),
                   "ro": LI(tau=15e-3, r=10.0, v_leak=0.3), "y": Output()},
                  [("x", "w"), ("w", "pop"), ("pop", "w2"), ("w2", "ro"), ("ro", "y")], dt=DT)
        x = rng.random((2, 40, 4))
        assert_lowering_exact(g, x)


def test_skip_connection_gets_an_extra_synaptic_delay():
    rng = np.random.default_rng(2)
    g = Graph({"x": Input((5,)), "w1": Linear(rng.normal(0.5, 0.5, (8, 5))), "h1": LIF(tau=5e-3, r=5.0),
               "w2": Linear(rng.normal(0.5, 0.5, (8, 8))), "h2": LIF(tau=5e-3, r=5.0),
               "skip": Linear(rng.normal(0.3, 0.5, (4, 5))), "w3": Linear(rng.normal(0.5, 0.5, (4, 8))),
               "ro": LI(tau=10e-3, r=10.0), "y": Output()},
              [("x", "w1"), ("w1", "h1"), ("h1", "w2"), ("w2", "h2"), ("h2", "w3"), ("w3", "ro"),
               ("x", "skip"), ("skip", "ro"), ("ro", "y")], dt=DT)
    net, _ = assert_lowering_exact(g, rng.random((2, 30, 5)))
    skip = next(c for c in net.connections if c.source == "x" and c.target == "ro")
    assert skip.extra_delay == 2 and net.population("ro").offset == 3


def test_conv_pool_flatten_and_scale_compose_into_one_matrix():
    rng = np.random.default_rng(3)
    g = Graph({"x": Input((2, 6, 6)), "c": Conv2d(rng.normal(0, 1, (3, 2, 3, 3)), rng.normal(0, .1, 3), padding=1),
               "l": LIF(tau=5e-3, r=5.0), "p": SumPool2d(2), "f": Flatten(), "s": Scale(0.5),
               "w": Affine(rng.normal(0, 1, (4, 27)), np.zeros(4)), "ro": LI(tau=10e-3, r=10.0), "y": Output()},
              [("x", "c"), ("c", "l"), ("l", "p"), ("p", "f"), ("f", "s"), ("s", "w"), ("w", "ro"), ("ro", "y")], dt=DT)
    net, _ = assert_lowering_exact(g, rng.random((2, 20, 2, 6, 6)))
    assert [(c.source, c.target) for c in net.connections] == [("x", "l"), ("l", "ro")]


def test_delays_and_recurrence_across_sample_boundaries():
    rng = np.random.default_rng(4)
    g = Graph({"x": Input((3,)), "w": Linear(rng.normal(0.8, 0.3, (5, 3))), "h": LIF(tau=5e-3, r=5.0),
               "rec": Linear(rng.normal(0, 0.8, (5, 5))), "d": Delay(3 * DT), "w2": Linear(rng.normal(0.5, 0.5, (2, 5))),
               "ro": LI(tau=10e-3, r=10.0), "y": Output()},
              [("x", "w"), ("w", "h"), ("h", "rec"), ("rec", "h", 2), ("h", "d"), ("d", "w2"), ("w2", "ro"), ("ro", "y")], dt=DT)
    net, _ = assert_lowering_exact(g, rng.random((4, 15, 3)))
    sched = Schedule.of(net, 4, 15)
    assert sched.period == 15 + 3  # the gap covers the longest connection delay


def test_output_must_be_fed_by_a_population():
    g = Graph({"x": Input((3,)), "h": LIF(tau=5e-3), "w": Linear(np.ones((2, 3))), "y": Output()},
              [("x", "h"), ("h", "w"), ("w", "y")])
    with pytest.raises(IRError, match="node 'y': the Lava compiler needs each Output fed directly"):
        lower(g)


def test_plasticity_the_chip_runs_otherwise_is_refused_naming_the_connection():
    g = Graph({"x": Input((3,)), "w": Linear(np.ones((2, 3)), plasticity=Plasticity("stdp")),
               "h": LIF(tau=5e-3), "y": Output()}, [("x", "w"), ("w", "h"), ("h", "y")])
    with pytest.raises(IRError, match=r"node 'w': plasticity 'stdp' with delay = 0: .* set delay=1"):
        lower(g)
    lower(g.replace_nodes(w=Linear(np.ones((2, 3)), plasticity=Plasticity("stdp", {"delay": 1}))))


def test_every_target_refuses_plasticity_it_does_not_run():
    from neuromorph.compile import compile_graph

    g = Graph({"x": Input((3,)), "w": Linear(np.ones((2, 3)), plasticity=Plasticity("stdp", {"delay": 1})),
               "h": LIF(tau=5e-3), "y": Output()}, [("x", "w"), ("w", "h"), ("h", "y")])
    with pytest.raises(IRError, match=r"node 'w': target 'torch' cannot run plasticity rule 'stdp' "
                                      r"\(it runs: none\); the weights would silently stay fixed"):
        compile_graph(g, backend="torch")
    compile_graph(g, backend="lava")  # the Loihi 2 target runs every rule (docs/onchip-learning.md)


def test_loop_with_less_delay_than_synapse_hops_is_refused():
    g = Graph({"x": Input((2,)), "w": Linear(np.eye(2)), "a": LIF(tau=5e-3), "ab": Linear(np.eye(2)),
               "b": LIF(tau=5e-3), "ba": Linear(np.eye(2)), "y": Output()},
              [("x", "w"), ("w", "a"), ("a", "ab"), ("ab", "b"), ("b", "ba"), ("ba", "a", 1), ("b", "y")])
    with pytest.raises(IRError, match="recurrent loop through populations a, b has less delay"):
        lower(g)
    ok = Graph(g.nodes, [("x", "w"), ("w", "a"), ("a", "ab"), ("ab", "b"), ("b", "ba"), ("ba", "a", 2), ("b", "y")], dt=DT)
    assert_lowering_exact(ok, np.random.default_rng(0).random((2, 20, 2)) * 3)


def test_bias_through_a_delay_is_refused():
    g = Graph({"x": Input((2,)), "w": Affine(np.eye(2), np.ones(2)), "d": Delay(DT), "h": LIF(tau=5e-3), "y": Output()},
              [("x", "w"), ("w", "d"), ("d", "h"), ("h", "y")], dt=DT)
    with pytest.raises(IRError, match="node 'd': a bias passes through this Delay"):
        lower(g)
