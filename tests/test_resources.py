"""The Loihi 2 resource mapper: placement, counts, limits and the map it prints."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

import neuromorph as nm
from neuromorph.backends.loihi2.netlist import Connection, InputPort, Netlist, OutputPort, Population, lower
from neuromorph.backends.loihi2.conv import connection_fan_in
from neuromorph.backends.loihi2.resources import Loihi2Limits, map_netlist
from neuromorph.errors import NeuromorphError
from neuromorph.ir import LI, LIF, Graph, Input, Linear, Output
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


def test_the_limits_given_are_the_limits_enforced():
    """A small made-up chip: the mapper splits, fits and refuses by *its* numbers."""
    tiny = Loihi2Limits(cores_per_chip=4, neurons_per_core=10, synaptic_memory_bytes_per_core=100,
                        delay_bits=2)
    assert tiny.max_delay == 3
    # 25 neurons of fan-in 1: split by neurons, 10 per core
    wide = map_netlist(net_of({"x": 1}, {"h": 25}, [("x", "h", np.ones((25, 1)), 0)]), tiny)
    assert [s.neurons for s in wide.layer("h").slices] == [10, 10, 5]
    # fan-in 30 at 8 bits = 30 B per neuron: 3 neurons per 100 B core, 4 cores = one chip
    deep = net_of({"x": 30}, {"h": 10}, [("x", "h", np.ones((10, 30)), 0)])
    assert [s.neurons for s in map_netlist(deep, tiny).layer("h").slices] == [3, 3, 3, 1]
    # 13 such neurons need 5 cores: more than one tiny chip, fine on two
    deeper = net_of({"x": 30}, {"h": 13}, [("x", "h", np.ones((13, 30)), 0)])
    with pytest.raises(NeuromorphError, match=r"'h'.* 5 .* 4"):
        map_netlist(deeper, tiny)
    two = map_netlist(deeper, tiny, chips_allowed=2)
    assert two.chips == 2 and [s.chip for s in two.layer("h").slices] == [0, 0, 0, 0, 1]
    # 2-bit delays: 3 steps is the most, and a delayed synapse costs 8 + 2 bits
    delayed = map_netlist(net_of({"x": 30}, {"h": 3}, [("x", "h", np.ones((3, 30)), 3)]), tiny)
    assert [s.neurons for s in delayed.layer("h").slices] == [2, 1]  # 300 bits per neuron, 800 per core
    with pytest.raises(NeuromorphError, match=r"'h'.*4.*3"):
        map_netlist(net_of({"x": 30}, {"h": 3}, [("x", "h", np.ones((3, 30)), 4)]), tiny)
    assert "4 cores/chip, 10 neurons/core, 100 B synaptic memory/core" in two.table()


def test_limits_agree_with_lavas_own_constants():
    from lava.magma.compiler.subcompilers.constants import NUM_VIRTUAL_CORES_L2
    from lava.magma.core.learning.constants import W_TRACE, W_WEIGHTS_U

    assert LIMITS.cores_per_chip == NUM_VIRTUAL_CORES_L2
    assert LIMITS.trace_bits == W_TRACE
    assert LIMITS.weight_bits == W_WEIGHTS_U


# ------------------------------------------------------------------ the zoo


EXPECTED = {  # zoo model -> (on-chip neurons, nonzero synapses)
    "digits-mlp": (256 + 10, 64 * 256 + 256 * 10),
    "digits-incremental": (512 + 10, 64 * 512 + 512 * 10),
    "digits-conv": (8 * 8 * 8 + 10, 8 * (36 * 9 + 24 * 6 + 4 * 4) + 512 * 10),  # 3x3 pad 1 on 8x8
    "randman-mlp": (128 + 10, 20 * 128 + 128 * 10),
    "lsnn-cue": (100 + 2, 40 * 100 + 100 * 99 + 100 * 2),  # recurrent matrix has a zero diagonal
}


SHARED_MEMORY = {  # zoo model -> synaptic memory bytes where a convolution shares its kernel
    "digits-conv": 8 * 9 + 512 * 10,  # the 8x1x3x3 kernel, then the dense readout
}


def synapses_of(c: Connection) -> int:
    """Connections a netlist connection makes: its matrix's nonzeros, or its kernel's
    nonzeros at every position where they reach the input."""
    return int(connection_fan_in(c.conv, c.weight).sum())


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_models_map_onto_one_chip_with_the_expected_totals(name):
    net = lower(get(name))
    rmap = map_netlist(net)
    neurons, synapses = EXPECTED[name]
    assert rmap.neurons == neurons == sum(p.size for p in net.populations)
    assert rmap.synapses == synapses == sum(synapses_of(c) for c in net.connections)
    # 8-bit weights, no extra delays in the zoo; a convolution stores its kernel once
    assert rmap.memory_bytes == SHARED_MEMORY.get(name, synapses)
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


@pytest.mark.parametrize("extra", [0, 1])
def test_a_core_holds_exactly_neurons_per_core_neurons(extra):
    npc = LIMITS.neurons_per_core
    big = map_netlist(net_of({"x": 1}, {"big": npc + extra}, [("x", "big", np.ones((npc + extra, 1)), 0)]))
    slices = big.layer("big").slices
    assert [(s.start, s.stop) for s in slices] == [(0, npc), (npc, npc + 1)][:1 + extra]
    assert [s.core for s in slices] == list(range(1 + extra))


@pytest.mark.parametrize("extra", [0, 1])
def test_a_slice_that_fills_synaptic_memory_exactly_stays_on_one_core(extra):
    fan_in = 4096  # 4 KiB per neuron at 8 bits: exactly 48 neurons fill a 192 KiB core
    n = MEM // fan_in + extra
    assert (MEM // fan_in) * fan_in == MEM
    h = map_netlist(net_of({"x": fan_in}, {"h": n}, [("x", "h", np.ones((n, fan_in)), 0)])).layer("h")
    assert [s.memory_bytes for s in h.slices] == [MEM, fan_in][:1 + extra]
    assert [s.neurons for s in h.slices] == [MEM // fan_in, 1][:1 + extra]


def test_a_whole_chip_of_neurons_fits_one_chip():  # one more: see the refusals below
    n = LIMITS.cores_per_chip * LIMITS.neurons_per_core
    full = map_netlist(net_of({"x": 1}, {"all": n}, [("x", "all", np.ones((n, 1)), 0)]))
    assert full.cores == LIMITS.cores_per_chip and full.chips == 1
    assert full.to_dict()["totals"]["core_utilisation_pct"] == pytest.approx(100.0)


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


def test_a_conv_layer_stores_its_kernel_once_per_core_for_the_channels_it_holds():
    """4 channels of 8x8 neurons, 3x3 kernel rows of 9 bytes: a core pays 9 bytes per
    channel it touches, however many of the channel's 64 positions it holds."""
    graph = nm.sequential((1, 8, 8), nm.conv2d(1, 4, 3, padding=1), nm.LIF(tau=0.01))
    net = lower(graph)
    conv = net.connections[0]
    assert conv.kind == "conv" and np.count_nonzero(conv.weight) == 36
    name = net.populations[0].name
    by_neurons = map_netlist(net, Loihi2Limits(neurons_per_core=48)).layer(name)
    assert [(s.start, s.stop, s.memory_bytes) for s in by_neurons.slices] == [
        (0, 48, 9), (48, 96, 18), (96, 144, 18), (144, 192, 9), (192, 240, 9), (240, 256, 9)]
    assert by_neurons.memory_bytes == 72 and by_neurons.synapses == 4 * (36 * 9 + 24 * 6 + 4 * 4)
    # 10 bytes per core hold one channel's kernel: the slices end at channel boundaries
    by_memory = map_netlist(net, Loihi2Limits(synaptic_memory_bytes_per_core=10)).layer(name)
    assert [(s.start, s.stop, s.memory_bytes) for s in by_memory.slices] == [
        (0, 64, 9), (64, 128, 9), (128, 192, 9), (192, 256, 9)]
    with pytest.raises(NeuromorphError) as info:  # one kernel row is more than a core
        map_netlist(net, Loihi2Limits(synaptic_memory_bytes_per_core=8))
    assert f"layer '{name}': neuron 0 has a fan-in of 4 synapses (9 bytes)" in one_line_error(info)


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
    assert d["totals"] == {"cores": 2, "neurons": 522, "synapses": 8992, "memory_bytes": 72 + 5120,
                           "chips": 1, "core_utilisation_pct": pytest.approx(100 * 2 / 128, abs=1e-3)}
    assert d["layers"][1]["slices"] == [{"core": 0, "chip": 0, "neurons": [0, 512],
                                         "synapses": 3872, "memory_bytes": 72}]  # the shared kernel


def mixed_netlist() -> Netlist:
    """Two inputs, a population split three ways, a sparse one, a delayed recurrent one."""
    rng = np.random.default_rng(1)
    sparse = rng.normal(size=(30, 4000)) * (rng.random((30, 4000)) < 0.3)
    return net_of(
        {"a": 4000, "b": 7},
        {"split": 120, "sparse": 30, "rec": 9},
        [("a", "split", np.ones((120, 4000)), 0), ("b", "split", np.ones((120, 7)), 2),
         ("a", "sparse", sparse, 0), ("split", "rec", np.ones((9, 120)), 0),
         ("rec", "rec", np.ones((9, 9)) - np.eye(9), 1)],
    )


@pytest.mark.parametrize("name", [*sorted(ZOO), "mixed"])
def test_layers_slices_totals_dict_and_table_agree(name):
    net = mixed_netlist() if name == "mixed" else lower(get(name))
    rmap = map_netlist(net)
    populations = [L for L in rmap.layers if not L.is_input]
    assert [L.name for L in rmap.layers] == [*(i.name for i in net.inputs), *(p.name for p in net.populations)]
    # every synapse is stored once, on its target's cores, and leaves one source
    assert rmap.synapses == sum(L.synapses for L in populations) == sum(L.fan_out for L in rmap.layers)
    assert rmap.synapses == sum(synapses_of(c) for c in net.connections)
    cores = []
    for L in populations:
        # the slices tile the population in order and each one fits its core
        assert [s.start for s in L.slices] == [0, *(s.stop for s in L.slices[:-1])]
        assert L.slices[-1].stop == L.neurons
        assert all(0 < s.neurons <= LIMITS.neurons_per_core and s.memory_bytes <= MEM for s in L.slices)
        assert sum(s.synapses for s in L.slices) == L.synapses
        assert sum(s.memory_bytes for s in L.slices) == L.memory_bytes
        assert all(s.chip == s.core // LIMITS.cores_per_chip for s in L.slices)
        cores += [s.core for s in L.slices]
    assert cores == list(range(rmap.cores))  # consecutive, none shared
    d = json.loads(json.dumps(rmap.to_dict()))
    assert d["totals"]["cores"] == sum(L["cores"] for L in d["layers"]) == rmap.cores
    assert d["totals"]["neurons"] == sum(L["neurons"] for L in d["layers"] if L["kind"] != "input")
    assert d["totals"]["synapses"] == sum(L["synapses"] for L in d["layers"])
    assert d["totals"]["memory_bytes"] == sum(s["memory_bytes"] for L in d["layers"] for s in L["slices"])
    total = next(line for line in rmap.table().splitlines() if line.startswith("TOTAL")).split()
    assert total[1:4] == [str(d["totals"]["cores"]), str(d["totals"]["neurons"]), str(d["totals"]["synapses"])]


def test_the_mixed_netlist_is_placed_as_computed_by_hand():
    rmap = map_netlist(mixed_netlist())
    split = rmap.layer("split")
    # 4000 plain 8-bit synapses + 7 delayed 14-bit ones = 32098 bits per neuron: 49 per core
    assert [s.neurons for s in split.slices] == [49, 49, 22]
    assert split.memory_bytes == sum(math.ceil(s.neurons * 32098 / 8) for s in split.slices)
    assert split.synapses == 120 * 4007 and split.max_fan_in == 4007
    assert rmap.layer("rec").synapses == 9 * 120 + 9 * 8
    assert rmap.layer("a").fan_out == 120 * 4000 + rmap.layer("sparse").synapses
    assert rmap.layer("b").fan_out == 120 * 7 and rmap.layer("b").max_fan_out == 120


def test_zero_weights_cost_no_synapses_but_the_neurons_still_take_a_core():
    net = net_of({"x": 5}, {"h": 4}, [("x", "h", np.zeros((4, 5)), 0)])
    h = map_netlist(net).layer("h")
    assert (h.synapses, h.memory_bytes, h.max_fan_in, h.cores) == (0, 0, 0, 1)
    assert map_netlist(net).layer("x").fan_out == 0


def test_the_table_counts_cores_in_every_row_and_lists_the_core_ids_apart():
    rmap = map_netlist(mixed_netlist())
    lines = rmap.table().splitlines()
    head = lines[2].split()
    assert head[:3] == ["layer", "kind", "cores"] and head[-2:] == ["core", "ids"]
    body = [line.split() for line in lines[4:lines.index(lines[3], 4)]]
    per_layer = {row[0]: row for row in body}
    for L in rmap.layers:
        row = per_layer[L.name]
        assert row[2] == str(L.cores)
        assert row[-1] == ("chip)" if L.is_input else L.core_range)
    total = next(line for line in lines if line.startswith("TOTAL")).split()
    assert total[1] == str(sum(L.cores for L in rmap.layers)) and total[-1] == f"0-{rmap.cores - 1}"


def test_layers_are_listed_in_evaluation_order_not_name_order():
    # snnTorch names layers by index: '1', '10', '3' sort wrongly as text
    rng = np.random.default_rng(0)
    nodes = {"input": Input((4,)), "0": Linear(rng.random((5, 4))), "1": LIF(tau=5e-3),
             "2": Linear(rng.random((5, 5))), "3": LIF(tau=5e-3), "9": Linear(rng.random((3, 5))),
             "10": LI(tau=5e-3), "output": Output()}
    order = ["input", "0", "1", "2", "3", "9", "10", "output"]
    g = Graph(dict(sorted(nodes.items())), list(zip(order, order[1:])), dt=1e-3)
    rmap = map_netlist(lower(g))
    assert [L.name for L in rmap.layers] == ["input", "1", "3", "10"]


def test_a_plastic_synapse_holds_the_engines_weight_and_its_rules_tags():
    from neuromorph.tasks import prepare

    from neuromorph.backends.loihi2.resources import plastic_bits

    graph = prepare("digits-incremental", get("digits-incremental"), {})
    rmap = map_netlist(lower(graph))
    readout = rmap.layer("readout")
    assert plastic_bits("three_factor", LIMITS) == 9 and plastic_bits("eprop", LIMITS) == 18
    assert readout.memory_bytes == 512 * 10 * 9 // 8  # the delta rule keeps no tag
    assert rmap.layer("lif1").memory_bytes == 64 * 512  # frozen synapses: 8 bits
