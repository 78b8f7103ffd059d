"""Lanes: many samples side by side in one Lava network (backends/loihi2/lava/lanes.py),
asynchronous or not, compute bit for bit what one sample at a time computes (float and
fixed, dense and convolutional, feed-forward and recurrent, delays); `neuromorph run`
picks the plan and says which; verify stays exact; a lane count that does not fit the
chip is refused; a lanes run is stopped on errors (Ctrl-C: test_lava_backend, both plans) like any Lava run."""
from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from neuromorph.backends.loihi2.lava.compat import import_lava

import_lava()

from neuromorph.backends.loihi2.lava import lanes as lava_lanes  # noqa: E402
from neuromorph.backends.loihi2.lava import process as lava_process  # noqa: E402
from neuromorph.backends.loihi2.lava.runner import Plan, run_lava  # noqa: E402
from neuromorph.backends.loihi2.netlist import lower  # noqa: E402
from neuromorph.backends.loihi2.quantize import quantize, simulate_fixed  # noqa: E402
from neuromorph.backends.loihi2.target import run_plan  # noqa: E402
from neuromorph.compile import compile_graph  # noqa: E402
from neuromorph.errors import NeuromorphError  # noqa: E402
from neuromorph.ir import (  # noqa: E402
    ALIF, LI, LIF, Affine, Conv2d, CubaLIF, Delay, Flatten, Graph, Input, Linear, Output, SumPool2d,
)
from neuromorph.models import get  # noqa: E402
from neuromorph.run import record, verify  # noqa: E402

DT = 1e-3
BIN = Path(sys.executable).parent


def graphs() -> dict[str, Graph]:
    rng = np.random.default_rng(21)
    ff = Graph({"x": Input((7,)), "w": Affine(rng.normal(0.4, 0.6, (12, 7)), rng.normal(0, 0.05, 12)),
                "h": CubaLIF(tau_mem=6e-3, tau_syn=4e-3, r=6.0), "w2": Linear(rng.normal(0.3, 0.8, (3, 12))),
                "ro": LI(tau=10e-3, r=10.0, v_leak=0.2), "y": Output()},
               [("x", "w"), ("w", "h"), ("h", "w2"), ("w2", "ro"), ("ro", "y")], dt=DT)
    rec = Graph({"x": Input((4,)), "w": Linear(rng.normal(0.8, 0.3, (9, 4))),
                 "h": ALIF(tau_mem=5e-3, tau_adapt=20e-3, beta=rng.uniform(0.2, 1, 9), r=5.0, reset="subtract"),
                 "rec": Linear(rng.normal(0, 0.8, (9, 9))), "d": Delay(3 * DT),
                 "w2": Linear(rng.normal(0.5, 0.5, (2, 9))), "ro": LI(tau=10e-3, r=10.0), "y": Output()},
                [("x", "w"), ("w", "h"), ("h", "rec"), ("rec", "h", 2), ("h", "d"), ("d", "w2"),
                 ("w2", "ro"), ("ro", "y")], dt=DT)
    conv = Graph({"x": Input((2, 6, 6)), "c": Conv2d(rng.normal(0.3, 0.8, (4, 2, 3, 3)), np.zeros(4), padding=1),
                  "l": LIF(tau=5e-3, r=5.0), "p": SumPool2d(2), "c2": Conv2d(rng.normal(0.3, 0.8, (3, 4, 2, 2)),
                                                                             np.zeros(3)),
                  "l2": LIF(tau=5e-3, r=5.0), "f": Flatten(), "w": Linear(rng.normal(0, 1, (5, 12))),
                  "skip": Linear(rng.normal(0, 0.2, (5, 72))), "fx": Flatten(),
                  "ro": LI(tau=10e-3, r=10.0), "y": Output()},
                 [("x", "c"), ("c", "l"), ("l", "p"), ("p", "c2"), ("c2", "l2"), ("l2", "f"), ("f", "w"),
                  ("w", "ro"), ("x", "fx"), ("fx", "skip"), ("skip", "ro"), ("ro", "y")], dt=DT)
    # three connections into the readout (from an input, from "h1", and from "h2" with a
    # delay) and one of "h1" to itself (it stays inside its core in the lane plan)
    fanin = Graph({"x": Input((5,)), "u": Input((3,)), "w1": Linear(rng.normal(0.6, 0.5, (8, 5))),
                   "h1": LIF(tau=5e-3, r=5.0), "rec": Linear(rng.normal(0, 0.9, (8, 8))),
                   "w5": Linear(rng.normal(0.6, 0.5, (7, 5))), "h2": LIF(tau=5e-3, r=5.0), "d": Delay(2 * DT),
                   "w2": Linear(rng.normal(0.4, 0.7, (4, 3))), "w3": Linear(rng.normal(0.3, 0.9, (4, 8))),
                   "w4": Linear(rng.normal(0.3, 0.9, (4, 7))), "ro": LI(tau=10e-3, r=10.0), "y": Output()},
                  [("x", "w1"), ("w1", "h1"), ("h1", "rec"), ("rec", "h1", 2), ("x", "w5"), ("w5", "h2"),
                   ("u", "w2"), ("w2", "ro"), ("h1", "w3"), ("w3", "ro"), ("h2", "d"), ("d", "w4"), ("w4", "ro"),
                   ("ro", "y")], dt=DT)
    return {"feedforward": ff, "recurrent": rec, "conv": conv, "fanin": fanin}


def inputs(net, name: str, samples: int = 5, steps: int = 12, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    if name == "feedforward":  # graded: real values on a 1/8 grid (exact fixed-point payloads)
        return {p.name: rng.integers(0, 9, (samples, steps, *p.shape)) / 8.0 for p in net.inputs}
    return {p.name: (rng.random((samples, steps, *p.shape)) < 0.4) * 1.0 for p in net.inputs}


def no_lava_workers() -> bool:
    return multiprocessing.active_children() == []


# ---------------------------------------------------------------- lanes = one at a time, bit for bit


@pytest.mark.parametrize("precision", ["float", "fixed"])
@pytest.mark.parametrize("name", ["feedforward", "recurrent", "conv", "fanin"])
def test_lanes_give_the_spikes_and_outputs_of_one_sample_at_a_time(name, precision):
    net = lower(graphs()[name])
    x = inputs(net, name)
    q = quantize(net, x) if precision == "fixed" else None
    probes = [(p.name, "spikes") for p in net.populations if p.spiking] + [(net.populations[0].name, "v")]
    if name == "fanin":
        assert sorted(c.extra_delay for c in net.connections if c.target == "ro")[-1] > 0
        assert sum(c.target == "ro" for c in net.connections) == 3
        assert any(c.source == c.target == "h1" for c in net.connections)
    # Lava's one-at-a-time plan sums three or more float messages into one port in no fixed
    # order (its compiler's process graph, which changes from run to run): there the float
    # outputs can differ in the last bits (the lane plan uses the chip model's order)
    rounding = name == "fanin" and precision == "float"
    kinds = {c.kind for c in net.connections}
    assert name != "conv" or kinds == {"conv", "dense"}
    assert name == "feedforward" or max(c.extra_delay for c in net.connections) > 0  # delayed synapses too
    ports = sum(any(c.source == p.name for c in net.connections) for p in net.inputs)
    one, one_counts, one_info = run_lava(net, x, precision=precision, quantized=q, probes=probes)
    assert one_info.plan.one_at_a_time and sum(one_counts.values()) > 0
    # 5 samples in 2 lanes: 3 rounds, the last with an idle lane; in 5 lanes: one round
    plans = [Plan(2, asynchronous=True), Plan(5, asynchronous=True)]
    if name == "recurrent":
        plans.append(Plan(2, asynchronous=False))
    for plan in plans:
        got, counts, info = run_lava(net, x, precision=precision, quantized=q, probes=probes, plan=plan)
        assert info.plan == plan
        # one process per input port and per population: the synapses are in their target's core
        assert info.processes == ports + len(net.populations)
        assert counts == one_counts, plan
        for key in one:
            if rounding:
                np.testing.assert_allclose(got[key], one[key], rtol=0, atol=1e-12)
            else:
                assert got[key].tobytes() == one[key].tobytes(), (key, plan)
        for key in one_info.probes:  # spikes, and the membrane in IR units
            assert info.probes[key].tobytes() == one_info.probes[key].tobytes(), (key, plan)
    if q is not None:  # and the bit-exact model agrees
        want, want_counts = simulate_fixed(q, x)
        assert want_counts == one_counts and all(np.array_equal(want[k], one[k]) for k in one)
    assert no_lava_workers()


def test_one_lane_asynchronous_equals_lavas_own_dense_and_progress_comes_in_chunks():
    net = lower(graphs()["recurrent"])
    x = inputs(net, "recurrent", samples=3, steps=15, seed=4)
    one, counts, _ = run_lava(net, x)
    calls = []
    got, got_counts, info = run_lava(net, x, plan=Plan(1, asynchronous=True), chunk=7,
                                     progress=lambda done, total: calls.append((done, total)))
    assert got_counts == counts and all(got[k].tobytes() == one[k].tobytes() for k in one)
    assert calls[-1] == (info.chip_steps, info.chip_steps) and len(calls) == -(-info.chip_steps // 7)
    assert no_lava_workers()


# ---------------------------------------------------------------- the plan: chosen, said, checked


def test_the_default_plan_fills_the_chip_with_lanes_evenly_and_refuses_what_does_not_fit():
    art = compile_graph(get("digits-mlp"), backend="lava", precision="fixed")  # 2 cores per copy
    plan, cores = run_plan(art, 360, None)
    assert (plan.lanes, plan.asynchronous, cores) == (60, True, {"per_lane": 2, "available": 128})  # 6 rounds
    assert run_plan(art, 1, None)[0] == Plan(1, asynchronous=True)
    assert run_plan(art, 360, 1)[0] == Plan(1, asynchronous=False)  # one at a time: Lava's Dense
    assert run_plan(art, 10, 64)[0] == Plan(10, asynchronous=True)  # no more lanes than samples
    two = compile_graph(get("digits-mlp"), backend="lava", precision="fixed", chips=2)
    assert run_plan(two, 360, None)[0].lanes == 120  # 3 rounds of 120 on 2 chips
    with pytest.raises(NeuromorphError, match=r"^65 lanes do not fit: 65 copies of the network need 130 Loihi 2 "
                                              r"neuron cores \(2 each\) but 1 chip\(s\) have 128; at most 64 lanes"):
        run_plan(art, 360, 65)
    with pytest.raises(NeuromorphError, match="lanes must be at least 1"):
        run_plan(art, 360, 0)


def test_verify_runs_the_default_plan_and_stays_exact_in_fixed_and_float():
    for precision in ("fixed", "float"):
        graph = graphs()["recurrent"]
        x = inputs(lower(graph), "recurrent", samples=6, steps=20, seed=2)
        art = compile_graph(graph, precision=precision, calibration=x if precision == "fixed" else None)
        report = verify(art, x)
        assert report["plan"] == "lanes: 6 samples side by side, async"
        assert report["spike_agreement"] == 1.0 and report["passed"] and report["spikes_compared"] > 0
    rec = record(art, x, options={"lanes": 1})  # the float artifact, one sample at a time
    assert rec.info["plan"].startswith("one sample at a time")
    assert all(np.array_equal(rec.outputs[k], record(art, x).outputs[k]) for k in rec.outputs)


def test_a_target_without_lanes_refuses_the_option():
    art = compile_graph(get("randman-mlp"), backend="torch")
    with pytest.raises(NeuromorphError, match="^--lanes is a run option of other targets; 'torch' takes none$"):
        record(art, np.zeros((1, 5, 20)), options={"lanes": 2})


def test_neuromorph_run_says_its_plan_and_lanes_1_gives_the_same_scores(tmp_path):
    art = tmp_path / "d.loihi"
    subprocess.run([BIN / "neuromorph", "compile", "digits-mlp", "--precision", "fixed", "--task", "digits",
                    "-o", art], check=True, capture_output=True, timeout=300)

    def run(*extra, rc=0):
        proc = subprocess.run([BIN / "neuromorph", "run", art, "--task", "digits", "--limit", "40", "--quiet",
                               *extra], capture_output=True, text=True, timeout=300)
        assert proc.returncode == rc, proc.stderr
        return proc

    text = run().stdout
    assert text.splitlines()[-1] == "lanes: 40 samples side by side, async, 80 of 128 cores"
    lanes = json.loads(run("--json").stdout)
    one = json.loads(run("--json", "--lanes", "1").stdout)
    assert one["plan"] == "one sample at a time (Lava Dense, LoihiProtocol)" and one["cores"] == 2
    assert (lanes["lanes"], lanes["asynchronous"], lanes["cores"]) == (40, True, 80)
    for key in ("accuracy", "spikes", "spikes_per_population", "samples", "steps"):
        assert lanes[key] == one[key], key
    assert lanes["chip_steps"] < one["chip_steps"] / 30  # one round instead of 40 windows
    err = run("--lanes", "65", rc=2).stderr
    assert err.count("\n") == 1 and err.startswith("neuromorph: error: 65 lanes do not fit:") and \
        "at most 64 lanes" in err


# ---------------------------------------------------------------- stopped on errors


def test_an_error_in_an_asynchronous_neuron_model_stops_lava_and_names_the_population(monkeypatch):
    step = lava_process._FloatState.step  # the float arithmetic of every group, lane cores included
    net = lower(get("randman-mlp"))
    size = net.population("lif1").size

    def broken(neurons, state, a_in):  # in lif1 only: the others run on, as asynchronous processes do
        if neurons.size == size:
            raise FloatingPointError("overflow")
        return step(neurons, state, a_in)

    monkeypatch.setattr(lava_process._FloatState, "step", staticmethod(broken))
    with pytest.raises(NeuromorphError, match=r"^Lava run failed: RuntimeError: population 'lif1', "
                                              r"chip step 1: FloatingPointError: overflow$"):
        run_lava(net, np.ones((4, 5, 20)), plan=Plan(4, asynchronous=True))
    assert no_lava_workers()


def test_a_lane_core_that_dies_without_sending_does_not_hang(monkeypatch):
    def broken(self, time_step):
        raise ValueError("core failure")

    monkeypatch.setattr(lava_lanes._CoreLogic, "_chip_step", broken)
    start = time.monotonic()
    with pytest.raises(NeuromorphError, match="^Lava run failed: ValueError: core failure$"):
        run_lava(lower(get("randman-mlp")), np.ones((4, 5, 20)), plan=Plan(4, asynchronous=True))
    assert time.monotonic() - start < 30
    assert no_lava_workers()


def test_an_error_in_a_lane_cores_synapse_names_the_connection(monkeypatch):
    make = lava_lanes._CoreLogic._make

    def broken(self, i):  # the synapse of lif1 -> readout fails; the others compute
        arith = make(self, i)
        if self._incoming[i]["connection"] != "lif1->readout":
            return arith
        return lambda s_in: (_ for _ in ()).throw(OverflowError("too many spikes"))

    monkeypatch.setattr(lava_lanes._CoreLogic, "_make", broken)
    with pytest.raises(NeuromorphError, match=r"^Lava run failed: RuntimeError: connection 'lif1->readout', "
                                              r"chip step \d+: OverflowError: too many spikes$"):
        run_lava(lower(get("randman-mlp")), np.ones((4, 5, 20)), plan=Plan(4, asynchronous=True))
    assert no_lava_workers()


def test_a_lane_core_refuses_what_it_cannot_hold():
    from neuromorph.backends.loihi2.conv import ConvGeometry

    w = np.ones((3, 4))
    with pytest.raises(ValueError, match="negative delay"):
        lava_lanes.incoming("a->b", w, precision="float", delay=-1)
    with pytest.raises(ValueError, match="unknown precision"):
        lava_lanes.incoming("a->b", w, precision="half")
    geom = ConvGeometry((2, 5, 5), (3, 5, 5), (3, 3), (1, 1), (1, 1), (1, 1), 1)
    with pytest.raises(ValueError, match=r"kernel shape \(3, 4\) is not \(3, 2, 3, 3\)"):
        lava_lanes.incoming("a->b", w, precision="float", geometry=geom)
    params = {k: np.zeros(4) for k in lava_process.PARAMS["float"]}
    with pytest.raises(ValueError, match="lanes is required"):
        lava_lanes.LaneCore(synapses=[], size=4, params=params, spiking=True, offset=0, steps=1, period=1,
                            samples=1, name="p")
    with pytest.raises(ValueError, match="connection 'a->b' is not float"):
        lava_lanes.LaneCore(synapses=[lava_lanes.incoming("a->b", np.ones((4, 3)), precision="fixed")], size=4,
                            params=params, spiking=True, offset=0, steps=1, period=1, samples=1, lanes=2, name="p")


def test_a_stuck_asynchronous_worker_ends_the_run_after_the_stall_timeout(monkeypatch):
    chip_step = lava_lanes._CoreLogic._chip_step  # a population's step in the lane plan

    def stuck(self, time_step):  # Lava forks its workers, which inherit the patched model
        if self.population == "lif1" and time_step == 5:
            time.sleep(3600)
        chip_step(self, time_step)

    monkeypatch.setattr(lava_lanes._CoreLogic, "_chip_step", stuck)
    start = time.monotonic()
    with pytest.raises(NeuromorphError, match=r"^Lava run stalled: no chip step finished in 1.5 s"):
        run_lava(lower(get("randman-mlp")), np.ones((3, 20, 20)), plan=Plan(3, asynchronous=True),
                 stall_timeout=1.5)
    assert time.monotonic() - start < 20
    assert no_lava_workers()
