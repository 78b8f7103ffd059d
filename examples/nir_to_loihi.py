"""Import a NIR file written by another framework (snnTorch) and deploy it to Lava.

snnTorch builds and exports a small network; neuromorph imports the NIR file with
snnTorch's conventions (dt = 1e-4 s), compiles it for Loihi 2 and runs it in Lava; the
deployed output spikes are compared with snnTorch's own.

    .venv/bin/python examples/nir_to_loihi.py [--precision float|fixed] [--out DIR]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import nir
import numpy as np
import snntorch as snn
import torch
from snntorch.export_nir import export_to_nir

import neuromorph as nm
from neuromorph.backends.nir import read_nir
from neuromorph.compile import compile_graph
from neuromorph.run import record


def snntorch_network(seed: int = 0) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    n_hidden, n_out = 16, 4
    return torch.nn.Sequential(
        torch.nn.Linear(8, n_hidden),
        snn.Leaky(beta=torch.full((n_hidden,), 0.9), threshold=torch.ones(n_hidden),
                  reset_mechanism="zero", init_hidden=True),
        torch.nn.Linear(n_hidden, n_out),
        snn.Leaky(beta=torch.full((n_out,), 0.8), threshold=torch.ones(n_out),
                  reset_mechanism="zero", init_hidden=True, output=True),
    )


def snntorch_forward(net: torch.nn.Sequential, x: np.ndarray) -> np.ndarray:
    """snnTorch's own output spikes for x [T, 8]."""
    for m in net.modules():
        if isinstance(m, snn.SpikingNeuron):
            m.reset_hidden()
    out = []
    with torch.no_grad():
        for t in range(len(x)):
            spk, _ = net(torch.as_tensor(x[t], dtype=torch.float32)[None])
            out.append(spk[0].numpy())
    return np.array(out)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", choices=("float", "fixed"), default="float")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="neuromorph-nir-"))
    out.mkdir(parents=True, exist_ok=True)

    # Somebody else's model, as a NIR file.
    net = snntorch_network()
    nir.write(out / "snntorch.nir", export_to_nir(net, torch.zeros(8)))

    # Import with snnTorch's conventions, then compile and run on the Loihi 2 simulator.
    graph = read_nir(out / "snntorch.nir", convention="snntorch")
    nm.save(graph, out / "imported.json")
    calib = np.random.default_rng(1).random((8, args.steps, 8)) * 2.0
    artifact = compile_graph(graph, precision=args.precision, calibration={graph.inputs[0]: calib})
    x = np.random.default_rng(0).random((args.steps, 8)) * 2.0
    lava_spikes = record(artifact, x[None]).outputs[graph.outputs[0]][0]
    theirs = snntorch_forward(net, x)
    agreement = float(np.mean(lava_spikes == theirs))
    print(f"imported {out / 'snntorch.nir'}: {len(graph.nodes)} nodes, dt {graph.dt:g} s")
    print(f"Lava ({args.precision}) vs snnTorch: {int(theirs.sum())} snnTorch output spikes, "
          f"spike agreement {agreement:.4f} over {theirs.size} neuron-steps")
    return {"agreement": agreement, "spikes": int(theirs.sum())}


if __name__ == "__main__":
    main()
