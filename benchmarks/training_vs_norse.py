"""Training speed of the zoo's LSNN with the torch backend against Norse's and snnTorch's own modules.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/training_vs_norse.py [--json] [--quick]
        [--batch 64] [--repeats 3] [--device cpu]

The network: the zoo's ``lsnn-cue`` (40 inputs, 100 recurrent neurons of which 50 adapt
(tau_mem 20 ms, tau_adapt 2 s, beta 1.8), a one-step recurrent delay, 2 leaky readouts,
tau 20 ms, dt 1 ms) on cue-accumulation trials (775 steps). Every row runs one optimiser
step on the same batch of trials (``--batch``, default 64 as ``neuromorph train``):
forward over all 775 steps, the loss the bptt method uses (cross-entropy of the readout
averaged over the recall steps), backward, Adam. Rows:

- ``neuromorph bptt``: ``backends/torch`` (GraphNetwork, fast_sigmoid surrogate), what
  ``neuromorph train --method bptt`` runs per batch;
- ``neuromorph eprop``: the e-prop gradients of ``backends/torch/eprop.py`` (symmetric
  feedback) and Adam, what ``--method eprop`` runs per batch;
- ``Norse LSNNRecurrent``: the closest network Norse 1.1.0's own modules build:
  ``SequentialState(LSNNRecurrent(40, 100), Linear(100, 2), LI())``, time-major, per-neuron
  ``beta`` (0 for the first 50 neurons, 1.8 for the last 50: Norse's LSNN has no separate
  LIF and ALIF groups), the same time constants. Norse's LSNN is current-based (a
  synaptic current with tau_syn 5 ms) and its threshold relaxes to v_th (docs: not
  Bellec's ALIF), so the arithmetic is not ours; the sizes, steps, batch, loss and
  optimiser are;
- ``Norse LIFRecurrent``: the same with ``LIFRecurrent`` (no adaptation), for scale;
- ``snnTorch RLeaky``: ``Linear(40, 100)`` into ``RLeaky(all_to_all, linear_features=100)``,
  ``Linear(100, 2)`` into a ``Leaky`` readout without reset, looped over time as
  snnTorch's tutorials do. snnTorch 1.0.0 has no adaptive neuron: 100 plain LIF neurons.

A row's time is the minimum over ``--repeats`` optimiser steps after one warm-up step
(one torch thread); the rows take turns, one step each per round, so that the load of a
shared machine changing during the run affects every row alike. On the CPU it is the process's CPU time (which the other jobs on a
shared machine disturb far less than the wall clock); the wall-clock times are given as
well. ``epoch_s`` is the time of the 8 updates of one epoch of the task's 512 training
trials (per step x updates, training only; an epoch of ``neuromorph train`` also
evaluates). ``x ours`` is a row's time over the ``neuromorph bptt`` row's; the criterion
of issue 12 is that ``neuromorph bptt`` is at least as fast as the Norse LSNN row
(``bptt_vs_norse`` <= 1 in ``--json``). ``--quick``: 3 repeats instead of 5.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any, Callable

import numpy as np
import torch

TAU_MEM, TAU_ADAPT, TAU_READOUT, BETA, DT = 20e-3, 2.0, 20e-3, 1.8, 1e-3
N_IN, N_HIDDEN, N_ADAPTIVE, N_OUT = 40, 100, 50, 2


def _clock(device: torch.device) -> Callable[[], tuple[float, float]]:
    """(cpu or synchronised wall time, wall time) now."""
    if device.type == "cuda":
        def now() -> tuple[float, float]:
            torch.cuda.synchronize(device)
            t = time.perf_counter()
            return t, t
        return now
    return lambda: (time.process_time(), time.perf_counter())


def time_steps(steps: list[Callable[[], float]], repeats: int,
               device: torch.device) -> list[tuple[float, float, float]]:
    """(best time, best wall time, last loss) of each step function: one warm-up call
    each, then ``repeats`` rounds that call every one in turn (interleaved, so that a
    change of the machine's load during the run affects every row alike)."""
    now = _clock(device)
    results = [[math.inf, math.inf, step()] for step in steps]
    for _ in range(repeats):
        for result, step in zip(results, steps):
            t0, w0 = now()
            loss = step()
            t1, w1 = now()
            result[:] = [min(result[0], t1 - t0), min(result[1], w1 - w0), loss]
    return [(a, b, c) for a, b, c in results]


def ours(method: str, x: torch.Tensor, y: torch.Tensor, decision: slice, device: torch.device) -> Callable[[], float]:
    """One optimiser step of ``neuromorph train --method METHOD`` on this batch."""
    from neuromorph.backends.torch import eprop as ep
    from neuromorph.backends.torch.bptt import scores
    from neuromorph.backends.torch.distributed import Cluster
    from neuromorph.backends.torch.network import GraphNetwork
    from neuromorph.backends.torch.surrogate import Surrogate
    from neuromorph.models import get

    graph = get("lsnn-cue", seed=0)
    torch.manual_seed(0)
    surrogate = Surrogate.named("fast_sigmoid" if method == "bptt" else ep.DEFAULT_SURROGATE, None)
    net = GraphNetwork(graph, dt=DT, surrogate=surrogate).to(device)
    optimiser = torch.optim.Adam(net.parameters(), lr=5e-3)
    if method == "bptt":
        def step() -> float:
            optimiser.zero_grad()
            loss = torch.nn.functional.cross_entropy(scores(net, x, decision), y, reduction="sum")
            (loss / len(x)).backward()
            optimiser.step()
            return float(loss.detach()) / len(x)
        return step
    cluster = Cluster(0, 1, device)
    options = ep.EpropOptions.of({})
    eprop = ep.Eprop(net, ep.make_plan(graph, options.learning_signal), options, 0, cluster)

    def eprop_step() -> float:
        optimiser.zero_grad()
        loss, grads = eprop.gradients(x, y, decision, len(x))
        eprop.apply(grads)
        optimiser.step()
        eprop.feedback.after_update(options.kp_decay)
        return float(loss) / len(x)
    return eprop_step


def norse(cell: str, x: torch.Tensor, y: torch.Tensor, decision: slice, device: torch.device) -> Callable[[], float]:
    """One optimiser step of the closest network Norse's own modules build."""
    import norse.torch as nt

    torch.manual_seed(0)
    beta = torch.zeros(N_HIDDEN)
    beta[N_HIDDEN - N_ADAPTIVE:] = BETA
    if cell == "lsnn":
        p = nt.LSNNParameters(tau_mem_inv=torch.tensor(1 / TAU_MEM), tau_adapt_inv=torch.tensor(1 / TAU_ADAPT),
                              beta=beta.to(device))
        hidden = nt.LSNNRecurrent(N_IN, N_HIDDEN, p=p, dt=DT)
    else:
        hidden = nt.LIFRecurrent(N_IN, N_HIDDEN, p=nt.LIFParameters(tau_mem_inv=torch.tensor(1 / TAU_MEM)), dt=DT)
    readout = nt.LI(p=nt.LIParameters(tau_mem_inv=torch.tensor(1 / TAU_READOUT)), dt=DT)
    net = nt.SequentialState(hidden, torch.nn.Linear(N_HIDDEN, N_OUT, bias=False), readout).to(device)
    optimiser = torch.optim.Adam(net.parameters(), lr=5e-3)
    xt = x.transpose(0, 1).contiguous()  # Norse's modules are time-major: [T, batch, channels]

    def step() -> float:
        optimiser.zero_grad()
        out, _ = net(xt)
        loss = torch.nn.functional.cross_entropy(out[decision].mean(0), y, reduction="sum")
        (loss / len(x)).backward()
        optimiser.step()
        return float(loss.detach()) / len(x)
    return step


def snntorch(x: torch.Tensor, y: torch.Tensor, decision: slice, device: torch.device) -> Callable[[], float]:
    """One optimiser step of an snnTorch recurrent LIF network of the same sizes."""
    import snntorch as snn

    torch.manual_seed(0)
    decay = math.exp(-DT / TAU_MEM)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc_in = torch.nn.Linear(N_IN, N_HIDDEN, bias=False)
            self.rlif = snn.RLeaky(beta=decay, linear_features=N_HIDDEN, reset_mechanism="zero")
            self.fc_out = torch.nn.Linear(N_HIDDEN, N_OUT, bias=False)
            self.readout = snn.Leaky(beta=math.exp(-DT / TAU_READOUT), reset_mechanism="none")

        def forward(self, xs: torch.Tensor) -> torch.Tensor:
            spk, mem = self.rlif.init_rleaky()
            mem_out = self.readout.init_leaky()
            outs = []
            for t in range(xs.shape[1]):
                spk, mem = self.rlif(self.fc_in(xs[:, t]), spk, mem)
                _, mem_out = self.readout(self.fc_out(spk), mem_out)
                outs.append(mem_out)
            return torch.stack(outs, dim=1)

    net = Net().to(device)
    optimiser = torch.optim.Adam(net.parameters(), lr=5e-3)

    def step() -> float:
        optimiser.zero_grad()
        out = net(x)
        loss = torch.nn.functional.cross_entropy(out[:, decision].mean(1), y, reduction="sum")
        (loss / len(x)).backward()
        optimiser.step()
        return float(loss.detach()) / len(x)
    return step


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help='print {"rows": [...], ...} instead of a table')
    parser.add_argument("--quick", action="store_true", help="3 repeats per row instead of 5")
    parser.add_argument("--batch", type=int, default=64, help="trials per optimiser step (default 64)")
    parser.add_argument("--repeats", type=int, help="timed optimiser steps per row, the shortest counts (default 5, --quick 3)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    torch.set_num_threads(1)
    device = torch.device(args.device)

    from neuromorph import tasks

    data = tasks.load("cue-accumulation")
    x = torch.as_tensor(np.asarray(data.x_train[:args.batch], dtype=np.float32), device=device)
    y = torch.as_tensor(np.asarray(data.y_train[:args.batch]), device=device)
    decision = data.decision_steps
    updates = -(-len(data.x_train) // args.batch)
    cases: list[tuple[str, str, Callable[[], Callable[[], float]]]] = [
        ("neuromorph bptt", "50 LIF + 50 ALIF, delayed recurrence, 2 LI", lambda: ours("bptt", x, y, decision, device)),
        ("neuromorph eprop", "the same, e-prop gradients", lambda: ours("eprop", x, y, decision, device)),
        ("Norse LSNNRecurrent", "100 LSNN (beta 0 on 50), Linear, LI", lambda: norse("lsnn", x, y, decision, device)),
        ("Norse LIFRecurrent", "100 LIF, Linear, LI", lambda: norse("lif", x, y, decision, device)),
        ("snnTorch RLeaky", "Linear, 100 RLeaky LIF, Linear, Leaky", lambda: snntorch(x, y, decision, device)),
    ]
    rows: list[dict[str, Any]] = []
    timed = time_steps([make() for _, _, make in cases], repeats, device)
    for (name, network, _), (seconds, wall, loss) in zip(cases, timed):
        rows.append({"what": name, "network": network, "step_s": round(seconds, 4), "step_wall_s": round(wall, 4),
                     "epoch_s": round(seconds * updates, 3), "loss": round(loss, 4)})
        print(f"  {name}: {seconds:.3f} s per step", file=sys.stderr, flush=True)
    base = rows[0]["step_s"]
    for r in rows:
        r["ratio_to_ours"] = round(r["step_s"] / base, 2)
    norse_lsnn = next(r for r in rows if r["what"] == "Norse LSNNRecurrent")
    summary = {"bptt_vs_norse": round(base / norse_lsnn["step_s"], 2),
               "batch": args.batch, "steps": int(x.shape[1]), "updates_per_epoch": updates, "repeats": repeats,
               "device": str(device), "clock": "process CPU time" if device.type == "cpu" else "wall, synchronised"}
    if args.json:
        print(json.dumps({**summary, "rows": rows}))
        return 0
    print(f"LSNN on cue-accumulation: {summary['steps']} steps, batch {args.batch}, one optimiser step "
          f"(forward, backward, Adam); {summary['clock']}, best of {repeats}")
    print(f"{'what':<21} {'network':<44} {'s/step':>7} {'wall':>7} {'s/epoch':>8} {'x ours':>7}")
    for r in rows:
        print(f"{r['what']:<21} {r['network']:<44} {r['step_s']:>7.3f} {r['step_wall_s']:>7.3f} "
              f"{r['epoch_s']:>8.2f} {r['ratio_to_ours']:>7.2f}")
    verdict = "at least as fast as" if summary["bptt_vs_norse"] <= 1 else "slower than"
    print(f"neuromorph bptt is {verdict} Norse's LSNN: {summary['bptt_vs_norse']:.2f}x its time per step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
