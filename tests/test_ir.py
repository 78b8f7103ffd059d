"""The IR: node validation, graph validation, shape inference, cycles, equality."""
import numpy as np
import pytest

import neuromorph as nm
from neuromorph.errors import IRError
from neuromorph.ir import (
    ALIF, IF, LI, LIF, Affine, Conv1d, Conv2d, CubaLIF, Delay, Flatten, Graph, Input,
    Linear, Output, Plasticity, Scale, SumPool2d,
)


def chain(*nodes, input_shape=(3,)):
    names = ["in"] + [f"n{i}" for i in range(len(nodes))] + ["out"]
    all_nodes = dict(zip(names, [Input(input_shape), *nodes, Output()]))
    return Graph(all_nodes, list(zip(names, names[1:])))


def test_parameters_become_read_only_float64_arrays():
    lif = LIF(tau=0.01, v_threshold=[1, 2, 3])
    assert lif.tau.dtype == np.float64 and lif.v_threshold.shape == (3,)
    with pytest.raises(ValueError):
        lif.v_threshold[0] = 5.0


@pytest.mark.parametrize("value, word", [(float("nan"), "NaN"), (float("inf"), "inf")])
def test_nan_and_inf_parameters_are_refused(value, word):
    with pytest.raises(IRError, match=f"'weight' contains {word}"):
        Linear(np.array([[1.0, value]]))


def test_non_positive_time_constant_is_refused():
    with pytest.raises(IRError, match="'tau_mem' must be > 0"):
        CubaLIF(tau_syn=0.005, tau_mem=0.0)


def test_negative_adaptation_strength_is_refused():
    with pytest.raises(IRError, match="'beta' must be >= 0"):
        ALIF(tau_mem=0.02, tau_adapt=1.0, beta=-1.0)


def test_affine_bias_shape_is_checked():
    with pytest.raises(IRError, match="bias must have shape"):
        Affine(np.zeros((4, 3)), np.zeros(3))


def test_unknown_plasticity_rule_is_refused():
    with pytest.raises(IRError, match="unknown plasticity rule 'hebb'"):
        Plasticity("hebb")


def test_shapes_are_inferred_through_a_conv_net():
    g = chain(
        Conv2d(np.zeros((4, 2, 3, 3)), np.zeros(4), stride=2, padding=1),
        LIF(tau=0.01),
        SumPool2d(2),
        Flatten(),
        Affine(np.zeros((5, 16)), np.zeros(5)),
        input_shape=(2, 8, 8),
    )
    assert g.shape("n0") == (4, 4, 4)
    assert g.shape("n2") == (4, 2, 2)
    assert g.shape("n3") == (16,)
    assert g.shape("out") == (5,)


def test_conv1d_groups_and_dilation_shape():
    conv = Conv1d(np.zeros((6, 2, 3)), np.zeros(6), dilation=2, groups=2)
    assert conv.output_shape((4, 10)) == (6, 6)
    with pytest.raises(IRError, match="expects 4 input channels"):
        conv.output_shape((3, 10))


def test_flatten_partial_dims():
    assert Flatten(start_dim=1).output_shape((2, 3, 4)) == (2, 12)
    assert Flatten(start_dim=0, end_dim=1).output_shape((2, 3, 4)) == (6, 4)


def test_shape_mismatch_names_the_node():
    with pytest.raises(IRError, match="node 'n0': Linear weight has 2 inputs but receives shape \\(3,\\)"):
        chain(Linear(np.zeros((4, 2))))


def test_per_neuron_parameters_must_fit_the_population():
    with pytest.raises(IRError, match="node 'n1'.*'v_threshold' of shape \\(5,\\)"):
        chain(Linear(np.zeros((4, 3))), LIF(tau=0.01, v_threshold=np.ones(5)))


def test_summed_inputs_must_agree_in_shape():
    nodes = {"in": Input((3,)), "a": Linear(np.zeros((4, 3))), "b": Linear(np.zeros((5, 3))),
             "lif": LIF(tau=0.01), "out": Output()}
    with pytest.raises(IRError, match="node 'lif': inputs have different shapes"):
        Graph(nodes, [("in", "a"), ("in", "b"), ("a", "lif"), ("b", "lif"), ("lif", "out")])


def test_unknown_node_type_is_refused():
    with pytest.raises(IRError, match="node 'x': unknown node type dict"):
        Graph({"in": Input((1,)), "x": {"type": "LIF"}, "out": Output()}, [("in", "x"), ("x", "out")])


def test_edge_to_missing_node_is_refused():
    with pytest.raises(IRError, match="node 'ghost': edge in -> ghost refers to a node that does not exist"):
        Graph({"in": Input((1,)), "out": Output()}, [("in", "ghost"), ("in", "out")])


def test_dangling_nodes_are_refused():
    nodes = {"in": Input((3,)), "lif": LIF(tau=0.01), "lone": LIF(tau=0.01), "out": Output()}
    with pytest.raises(IRError, match="node 'lone': dangling node: no incoming edge"):
        Graph(nodes, [("in", "lif"), ("lif", "out"), ("lone", "out")])
    with pytest.raises(IRError, match="node 'lone': dangling node: its output goes nowhere"):
        Graph(nodes, [("in", "lif"), ("lif", "out"), ("in", "lone")])


def test_cycle_without_delay_is_refused_and_named():
    nodes = {"in": Input((2,)), "w": Linear(np.eye(2)), "lif": LIF(tau=0.01),
             "w_rec": Linear(np.eye(2)), "out": Output()}
    edges = [("in", "w"), ("w", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "out")]
    with pytest.raises(IRError, match="cycle with no delay: lif -> w_rec -> lif"):
        Graph(nodes, edges)
    edges[3] = ("w_rec", "lif", 1)
    g = Graph(nodes, edges)
    assert g.cycles() == [["lif", "w_rec"]]
    assert g.order().index("lif") < g.order().index("w_rec")


def test_negative_or_fractional_edge_delay_is_refused():
    with pytest.raises(IRError, match="delay must be an int >= 0"):
        Graph({"in": Input((1,)), "out": Output()}, [("in", "out", -1)])
    with pytest.raises(IRError, match="delay must be an int >= 0"):
        Graph({"in": Input((1,)), "out": Output()}, [("in", "out", 0.5)])


def test_graph_needs_input_and_output():
    with pytest.raises(IRError, match="no Output node"):
        Graph({"in": Input((1,)), "s": Scale(2.0)}, [("in", "s")])


def test_input_cannot_receive_and_output_cannot_send():
    with pytest.raises(IRError, match="node 'in': an Input node cannot have incoming edges"):
        Graph({"in": Input((1,)), "in2": Input((1,)), "out": Output()},
              [("in2", "in"), ("in", "out")])


def test_bad_node_names_are_refused():
    with pytest.raises(IRError, match="invalid node name"):
        Graph({"in put": Input((1,)), "out": Output()}, [("in put", "out")])


def test_bad_dt_is_refused():
    with pytest.raises(IRError, match="dt must be a positive number"):
        Graph({"in": Input((1,)), "out": Output()}, [("in", "out")], dt=-1e-3)


def test_equality_compares_values_not_identity():
    a = nm.feedforward(4, [3], 2, seed=1)
    b = nm.feedforward(4, [3], 2, seed=1)
    c = nm.feedforward(4, [3], 2, seed=2)
    assert a == b and a is not b
    assert a != c


def test_replace_nodes_revalidates():
    g = nm.feedforward(4, [3], 2)
    bigger = Affine(np.zeros((3, 5)), np.zeros(3))
    with pytest.raises(IRError, match="node 'fc1'"):
        g.replace_nodes(fc1=bigger)
    trained = g.replace_nodes(fc1=Affine(np.ones((3, 4)), np.zeros(3)))
    assert np.all(trained.nodes["fc1"].weight == 1) and np.any(g.nodes["fc1"].weight != 1)


def test_every_node_type_has_a_readable_repr():
    g = chain(Delay(0.002), IF(), LI(tau=0.02), input_shape=(2,))
    text = repr(g)
    assert "Delay(delay=0.002)" in text and "IF(" in text and "LI(tau=0.02" in text
