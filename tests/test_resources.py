"""The Loihi 2 resource mapper: placement, counts, limits and the map it prints."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

import neuromorph as nm
from neuromorph.backends.loihi2.netlist import Connection, InputPort, Netlist, OutputPort, Population, lower
from neuromorph.backends.loihi2.resources import Loihi2Limits, map_netlist
from neuromorph.errors import NeuromorphError
from neuromorph.models import ZOO, get

LIMITS = Loihi2Limits()
MEM = LIMITS.synaptic_memory_bytes_per_core  # 196608 bytes


def pop(name: str, n: int) -> Population:
    z = np.zeros(n)
    return Population(name, "lif", (n,), z + 1, z + 0.1, z, z, z + 1, z, z, z, z, offset=1)


def net_of(inputs: dict[str, int], pops: dict[str, int], conns: list[tuple[str, str, np.ndarray, int]]) -> Netlist:
    """A netlist built directly: conns are (source, target, weight, extra_delay)."""
    last = list(pops)[-1]
    return Netlist(
        1e-3,
        [InputPort(n, (s,)) for n, s in inputs.items()],
        [pop(n, s) for n, s in pops.items()],
        [Connection(a, b, w, 0, d) for a, b, w, d in conns],
        [OutputPort("out", last, "spikes", (pops[last],))],
    )


def one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------ limits


def test_limits_are_the_documented_loihi2_numbers():
    assert (LIMITS.cores_per_chip, LIMITS.neurons_per_core, MEM) == (128, 8192, 192 * 1024)
    assert (LIMITS.weight_bits, LIMITS.delay_bits, LIMITS.max_delay, LIMITS.trace_bits) == (8, 6, 63, 7)


def test_limits_agree_with_lavas_own_constants():
    from lava.magma.compiler.subcompilers.constants import NUM_VIRTUAL_CORES_L2
    from lava.magma.core.learning.constants import W_TRACE, W_WEIGHTS_U

    assert LIMITS.cores_per_chip == NUM_VIRTUAL_CORES_L2
    assert LIMITS.trace_bits == W_TRACE
    assert LIMITS.weight_bits == W_WEIGHTS_U


# ------------------------------------------------------------------ the zoo


EXPECTED = {  # zoo model -> (on-chip neurons, nonzero synapses)
    "digits-mlp": (256 + 10, 64 * 256 + 256 * 10),
    "digits-conv": (8 * 8 * 8 + 10, 8 * (36 * 9 + 24 * 6 + 4 * 4) + 512 * 10),  # 3x3 pad 1 on 8x8
    "randman-mlp": (128 + 10, 20 * 128 + 128 * 10),
    "lsnn-cue": (100 + 2, 40 * 100 + 100 * 99 + 100 * 2),  # recurrent matrix has a zero diagonal
}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_models_map_onto_one_chip_with_the_expected_totals(name):
    net = lower(get(name))
    rmap = map_netlist(net)
    neurons, synapses = EXPECTED[name]
    assert rmap.neurons == neurons == sum(p.size for p in net.populations)
    assert rmap.synapses == synapses == sum(int(np.count_nonzero(c.weight)) for c in net.connections)
    assert rmap.memory_bytes == synapses  # 8-bit weights, no extra delays in the zoo
    assert rmap.cores == len(net.populations) == 2  # each population is small: one core each
    assert rmap.chips == 1
    inp = rmap.layer(net.inputs[0].name)
    assert inp.cores == 0 and inp.fan_out > 0  # off chip, fan-out counted
    assert json.loads(json.dumps(rmap.to_dict()))["totals"]["synapses"] == synapses


def test_utilisation_is_the_share_of_the_cores_capacity():
    rmap = map_netlist(lower(get("digits-mlp")))
    lif = rmap.layer("lif1")
    assert lif.neuron_utilisation == pytest.approx(100 * 256 / 8192)
    assert lif.memory_utilisation == pytest.approx(100 * 64 * 256 / MEM)
    d = rmap.to_dict()["layers"][1]
    assert d["name"] == "lif1" and d["neuron_utilisation_pct"] == pytest.approx(3.125)


# ------------------------------------------------------------------ splitting


def test_population_larger_than_a_core_is_split_by_neurons():
    n = 2 * 8192 + 100
    net = net_of({"x": 1}, {"big": n}, [("x", "big", np.ones((n, 1)), 0)])
    big = map_netlist(net).layer("big")
    assert big.cores == 3 and big.core_range == "0-2"
    assert [s.neurons for s in big.slices] == [8192, 8192, 100]
    assert big.slices[-1].stop == n


def test_population_is_split_by_synaptic_memory():
    fan_in = 4000  # 4000 B per neuron at 8 bits -> 49 neurons per 192 KiB core
    w = np.ones((100, fan_in))
    big = map_netlist(net_of({"x": fan_in}, {"h": 100}, [("x", "h", w, 0)])).layer("h")
    per_core = MEM // fan_in
    assert per_core == 49
    assert [s.neurons for s in big.slices] == [49, 49, 2]
    assert all(s.memory_bytes <= MEM for s in big.slices)
    assert big.memory_bytes == 100 * fan_in


def test_delayed_connection_costs_delay_bits_per_synapse():
    fan_in = 4000
    w = np.ones((100, fan_in))
    h = map_netlist(net_of({"x": fan_in}, {"h": 100}, [("x", "h", w, 5)])).layer("h")
    per_core = MEM * 8 // (fan_in * (8 + 6))  # 28 neurons of 14-bit synapses
    assert h.cores == math.ceil(100 / per_core) == 4
    assert h.memory_bytes == sum(math.ceil(s.neurons * fan_in * 14 / 8) for s in h.slices)


def test_sparse_weights_count_only_nonzeros():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(100, 4000)) * (rng.random((100, 4000)) < 0.1)  # ~10% nonzero
    nnz = int(np.count_nonzero(w))
    h = map_netlist(net_of({"x": 4000}, {"h": 100}, [("x", "h", w, 0)])).layer("h")
    assert h.synapses == nnz and h.memory_bytes == nnz
    assert h.cores == 1  # the dense matrix would need 3 cores (see above)
    assert h.max_fan_in == int(np.count_nonzero(w, axis=1).max())


def test_conv_counts_its_kernel_synapses_not_the_dense_matrix():
    graph = nm.sequential((1, 8, 8), nm.conv2d(1, 4, 3, padding=1), nm.LIF(tau=0.01),
                          nm.Flatten(), nm.dense(256, 10), nm.LI(tau=0.02))
    net = lower(graph)
    conv_layer = map_netlist(net).layer(net.populations[0].name)
    assert conv_layer.synapses == 4 * (36 * 9 + 24 * 6 + 4 * 4) < 256 * 64


# ------------------------------------------------------------------ refusals


def test_more_cores_than_one_chip_is_refused_naming_the_layer():
    n = 128 * 8192 + 1  # one neuron more than a chip holds: 129 cores
    net = net_of({"x": 1}, {"small": 10, "huge": n}, [("x", "small", np.ones((10, 1)), 0),
                                                      ("x", "huge", np.ones((n, 1)), 0)])
    with pytest.raises(NeuromorphError) as e:
        map_netlist(net)
    msg = one_line_error(e)
    assert "'huge'" in msg and "130" in msg and "128" in msg and str(n) in msg
    rmap = map_netlist(net, chips_allowed=2)
    assert rmap.cores == 130 and rmap.chips == 2
    assert rmap.layer("huge").slices[-1].chip == 1


def test_130_populations_are_refused_at_the_first_one_that_does_not_fit():
    pops = {f"p{k}": 4 for k in range(130)}
    conns = [("x", name, np.ones((4, 2)), 0) for name in pops]
    with pytest.raises(NeuromorphError) as e:
        map_netlist(net_of({"x": 2}, pops, conns))
    msg = one_line_error(e)
    assert "'p128'" in msg and "130" in msg and "128" in msg
    assert map_netlist(net_of({"x": 2}, pops, conns), chips_allowed=2).chips == 2


def test_neuron_whose_fan_in_exceeds_a_core_is_refused():
    fan_in = MEM + 1  # one 8-bit synapse more than a core's synaptic memory
    net = net_of({"x": fan_in}, {"wide": 1}, [("x", "wide", np.ones((1, fan_in)), 0)])
    with pytest.raises(NeuromorphError) as e:
        map_netlist(net)
    msg = one_line_error(e)
    assert "'wide'" in msg and str(fan_in) in msg and str(MEM) in msg
    ok = net_of({"x": MEM}, {"wide": 1}, [("x", "wide", np.ones((1, MEM)), 0)])
    assert map_netlist(ok).layer("wide").memory_utilisation == pytest.approx(100.0)


def test_delay_above_63_is_refused():
    w = np.ones((3, 2))
    assert map_netlist(net_of({"x": 2}, {"h": 3}, [("x", "h", w, 63)])).cores == 1
    with pytest.raises(NeuromorphError) as e:
        map_netlist(net_of({"x": 2}, {"h": 3}, [("x", "h", w, 64)]))
    msg = one_line_error(e)
    assert "'h'" in msg and "64" in msg and "63" in msg


def test_long_delay_in_an_ir_graph_is_refused():
    """Two paths into one population, one 100 steps longer: the chip must delay it."""
    graph = nm.Graph(
        {"x": nm.Input((2,)), "a": nm.Linear(np.ones((3, 2))), "b": nm.Linear(np.ones((3, 2))),
         "h": nm.LIF(tau=0.01), "out": nm.Output()},
        [("x", "a"), ("x", "b"), ("a", "h"), ("b", "h", 100), ("h", "out")],
        dt=1e-3,
    )
    net = lower(graph)
    assert max(c.extra_delay for c in net.connections) == 100
    with pytest.raises(NeuromorphError, match=r"layer 'h'.*100.*63"):
        map_netlist(net)


def test_weight_bits_out_of_range_is_refused():
    net = lower(get("randman-mlp"))
    with pytest.raises(NeuromorphError, match="weight_bits"):
        map_netlist(net, weight_bits=9)
    assert map_netlist(net, weight_bits=4).memory_bytes == sum(
        math.ceil(s.synapses * 4 / 8) for L in map_netlist(net).layers for s in L.slices)


# ------------------------------------------------------------------ the map


def test_table_lists_every_layer_and_the_totals():
    net = lower(get("lsnn-cue"))
    rmap = map_netlist(net)
    table = rmap.table()
    lines = table.splitlines()
    for name in [*(i.name for i in net.inputs), *(p.name for p in net.populations)]:
        assert any(line.split()[0] == name for line in lines), name
    total = next(line for line in lines if line.startswith("TOTAL")).split()
    assert total[1:4] == [str(rmap.cores), str(rmap.neurons), str(rmap.synapses)]
    assert "chips: 1 needed, 1 allowed" in table
    widths = {len(line) for line in lines[1:-1] if set(line) == {"-"}}
    assert len(widths) == 1  # fixed width: every rule is as wide as the header


def test_to_dict_is_json_and_carries_limits_layers_and_totals():
    rmap = map_netlist(lower(get("digits-conv")))
    d = json.loads(json.dumps(rmap.to_dict()))
    assert d["target"] == "loihi2" and d["limits"]["max_delay"] == 63
    assert [L["name"] for L in d["layers"]] == ["input", "lif1", "readout"]
    assert d["totals"] == {"cores": 2, "neurons": 522, "synapses": 8992, "memory_bytes": 8992,
                           "chips": 1, "core_utilisation_pct": pytest.approx(100 * 2 / 128, abs=1e-3)}
    assert d["layers"][1]["slices"] == [{"core": 0, "chip": 0, "neurons": [0, 512],
                                         "synapses": 3872, "memory_bytes": 3872}]
