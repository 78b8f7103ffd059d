"""NIR graphs written as other frameworks write them, built with the ``nir`` package only.

None of Sinabs, Rockpool, Spyx or lava-dl is installed here, so each builder mirrors the
framework's own writer, read in its source (docs/nir-conventions.md names the files and
commits): node names, parameter layout and the values each parameter gets.

``write_sinabs_nmnist_cnn(path, seed)`` writes the NIR paper's N-MNIST CNN as Sinabs
exports it (8,970 IF neurons, 39,584 weights): the lead uses it to measure compile memory
and to deploy it.
"""
from __future__ import annotations

import os
from typing import Union

import nir
import numpy as np

PathLike = Union[str, "os.PathLike[str]"]

NMNIST_SHAPE = (2, 34, 34)


# ------------------------------------------------------------------ Sinabs


def _sinabs_if(shape: tuple[int, ...], threshold: float = 1.0) -> nir.IF:
    """sinabs/nir.py _extract_sinabs_module for sl.IAF/IAFSqueeze: r = ones, v_threshold
    broadcast to the layer, v_reset left to nir's default (zeros)."""
    return nir.IF(r=np.ones(shape, dtype=np.float32),
                  v_threshold=np.full(shape, threshold, dtype=np.float32))


def _conv(rng: np.random.Generator, c_out: int, c_in: int, k: int, stride: int, padding: int,
          in_hw: tuple[int, int], mean: float, std: float) -> nir.Conv2d:
    """torch.nn.Conv2d(bias=False) as Sinabs writes it: bias zeros, tuples for stride etc."""
    weight = rng.normal(mean, std, size=(c_out, c_in, k, k)).astype(np.float32)
    return nir.Conv2d(input_shape=in_hw, weight=weight, stride=(stride, stride), padding=(padding, padding),
                      dilation=(1, 1), groups=1, bias=np.zeros(c_out, dtype=np.float32))


def _affine(rng: np.random.Generator, n_out: int, n_in: int, mean: float, std: float) -> nir.Affine:
    """torch.nn.Linear(bias=False) as Sinabs writes it: an Affine with a zero bias."""
    weight = rng.normal(mean, std, size=(n_out, n_in)).astype(np.float32)
    return nir.Affine(weight=weight, bias=np.zeros(n_out, dtype=np.float32))


def _sum_pool() -> nir.SumPool2d:
    """sl.SumPool2d(2) as Sinabs writes it: stride = kernel, padding (0, 0)."""
    return nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))


SINABS_NMNIST_LAYERS = {
    # name: what it is in the NIR paper's model (paper/02_cnn/sinabs.py), shape after it
    "0": "Conv2d(2, 16, 5, stride 2, padding 1)",   # (16, 16, 16)
    "1": "IAF",
    "2": "Conv2d(16, 16, 3, padding 1)",            # (16, 16, 16)
    "3": "IAF",
    "4": "SumPool2d(2)",                            # (16, 8, 8)
    "5": "Conv2d(16, 8, 3, padding 1)",             # (8, 8, 8)
    "6": "IAF",
    "7": "SumPool2d(2)",                            # (8, 4, 4)
    "8": "Flatten",                                 # (128,)
    "9": "Linear(128, 256)",
    "10": "IAF",
    "11": "Linear(256, 10)",
    "12": "IAF",
}
SINABS_NMNIST_NEURONS = ("1", "3", "6", "10", "12")


def sinabs_nmnist_cnn(seed: int = 0) -> nir.NIRGraph:
    """The NIR paper's N-MNIST CNN (NIR repo paper/02_cnn/sinabs.py: an ANN converted with
    sinabs.from_model, exported with sinabs.nir.to_nir) with random weights: nirtorch names
    the nodes by their index in the torch Sequential, plus "input" and "output".

    8,970 IF neurons (4096 + 4096 + 512 + 256 + 10) and 39,584 weights. The weights are
    drawn so that every layer spikes at 5-20 % on nmnist_events (seeds 0 and 1), rarely
    reaching twice the threshold (where Sinabs's default MultiSpike would differ)."""
    rng = np.random.default_rng(seed)
    nodes = {
        "input": nir.Input(input_type={"input": np.array(NMNIST_SHAPE)}),
        "0": _conv(rng, 16, 2, 5, 2, 1, (34, 34), 0.05, 0.25),
        "1": _sinabs_if((16, 16, 16)),
        "2": _conv(rng, 16, 16, 3, 1, 1, (16, 16), 0.0, 0.12),
        "3": _sinabs_if((16, 16, 16)),
        "4": _sum_pool(),
        "5": _conv(rng, 8, 16, 3, 1, 1, (8, 8), -0.005, 0.05),
        "6": _sinabs_if((8, 8, 8)),
        "7": _sum_pool(),
        "8": nir.Flatten(input_type={"input": np.array([8, 4, 4])}, start_dim=0, end_dim=-1),
        "9": _affine(rng, 256, 128, 0.0, 0.07),
        "10": _sinabs_if((256,)),
        "11": _affine(rng, 10, 256, 0.005, 0.06),
        "12": _sinabs_if((10,)),
        "output": nir.Output(output_type={"output": np.array([10])}),
    }
    order = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order, order[1:])))


def write_sinabs_nmnist_cnn(path: PathLike, seed: int = 0) -> str:
    """Write sinabs_nmnist_cnn(seed) as a NIR file (nir.write) and return its path."""
    path = os.fspath(path)
    nir.write(path, sinabs_nmnist_cnn(seed))
    return path


def nmnist_events(steps: int, seed: int = 0, rate: float = 0.05) -> np.ndarray:
    """Random N-MNIST-like event frames [steps, 2, 34, 34]: counts of 0, 1 or 2 per bin
    (tonic's ToFrame sums events per time bin)."""
    rng = np.random.default_rng(seed)
    return (rng.random((steps, *NMNIST_SHAPE)) < rate).astype(np.float64) * rng.integers(
        1, 3, size=(steps, *NMNIST_SHAPE))


def sinabs_dense(seed: int = 0, n_in: int = 6, n_hidden: int = 8, n_out: int = 4,
                 tau_steps: float = 5.0) -> nir.NIRGraph:
    """Linear -> IAF -> Linear -> LIF -> Linear -> ExpLeak as sinabs.nir.to_nir writes
    them: IF r = 1; LIF tau = tau_mem (in steps), r = 1, v_leak = 0; LI the same."""
    rng = np.random.default_rng(seed)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([n_in])}),
        "0": _affine(rng, n_hidden, n_in, 0.3, 0.5),
        "1": _sinabs_if((n_hidden,)),
        "2": _affine(rng, n_hidden, n_hidden, 0.3, 0.5),
        "3": nir.LIF(tau=np.full(n_hidden, tau_steps, dtype=np.float32),
                     v_threshold=np.ones(n_hidden, dtype=np.float32),
                     v_leak=np.zeros(n_hidden, dtype=np.float32), r=np.ones(n_hidden, dtype=np.float32)),
        "4": _affine(rng, n_out, n_hidden, 0.2, 0.5),
        "5": nir.LI(tau=np.full(n_out, tau_steps, dtype=np.float32), v_leak=np.zeros(n_out, dtype=np.float32),
                    r=np.ones(n_out, dtype=np.float32)),
        "output": nir.Output(output_type={"output": np.array([n_out])}),
    }
    order = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order, order[1:])))


# ------------------------------------------------------------------ Rockpool


def rockpool_dense(seed: int = 0, dt: float = 1e-3, n_in: int = 5, n_hidden: int = 7, n_out: int = 3,
                   tau_mem: float = 0.02, tau_syn: float = 0.01) -> nir.NIRGraph:
    """LinearTorch -> LIFTorch -> LinearTorch -> LIFNeuronTorch -> LinearTorch -> ExpSynTorch
    as rockpool/nn/modules/torch/nir.py writes them (float32, as torch holds them):
    CubaLIF(tau_syn, tau_mem, r = tau_mem exp(-dt/tau_mem)/dt, v_leak = 0, threshold),
    w_in and v_reset left to nir's defaults; LIF(tau, r likewise); LI(tau, r likewise);
    Linear without bias. Names as Rockpool's Sequential gives them: "<i>_<Class>"."""
    rng = np.random.default_rng(seed)

    def r_of(tau: np.ndarray) -> np.ndarray:
        return (tau * np.exp(-dt / tau) / dt).astype(np.float32)

    def linear(n_o: int, n_i: int) -> nir.Linear:
        return nir.Linear(weight=rng.normal(0.4, 0.6, size=(n_o, n_i)).astype(np.float32))

    tm = np.full(n_hidden, tau_mem, dtype=np.float32)
    ts = np.full(n_hidden, tau_syn, dtype=np.float32)
    to = np.full(n_out, tau_syn, dtype=np.float32)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([n_in])}),
        "0_LinearTorch": linear(n_hidden, n_in),
        "1_LIFTorch": nir.CubaLIF(tau_syn=ts, tau_mem=tm, r=r_of(tm), v_leak=np.zeros(n_hidden, np.float32),
                                  v_threshold=np.ones(n_hidden, np.float32)),
        "2_LinearTorch": linear(n_hidden, n_hidden),
        "3_LIFNeuronTorch": nir.LIF(tau=tm, r=r_of(tm), v_leak=np.zeros(n_hidden, np.float32),
                                    v_threshold=np.ones(n_hidden, np.float32)),
        "4_LinearTorch": linear(n_out, n_hidden),
        "5_ExpSynTorch": nir.LI(tau=to, v_leak=np.zeros(n_out, np.float32), r=r_of(to)),
        "output": nir.Output(output_type={"output": np.array([n_out])}),
    }
    order = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order, order[1:])))


# ------------------------------------------------------------------ Spyx


def spyx_dense(seed: int = 0, dt: float = 1.0, n_in: int = 5, n_hidden: int = 7, n_out: int = 3,
               beta: float = 0.8, alpha: float = 0.7) -> nir.NIRGraph:
    """nnx.Linear -> IF -> nnx.Linear -> LIF -> nnx.Linear -> CuBaLIF as spyx/nir.py to_nir
    writes them: IF(r = 1, threshold); LIF(tau = dt/(1-beta), r = beta, v_leak = 0);
    CubaLIF(tau_mem = dt/(1-beta), tau_syn = dt/(1-alpha), r = beta, v_leak = 0, w_in
    left at 1); nodes "input", "layer_0", ..., "output"."""
    rng = np.random.default_rng(seed)

    def affine(n_o: int, n_i: int) -> nir.Affine:
        return nir.Affine(weight=rng.normal(0.4, 0.6, size=(n_o, n_i)).astype(np.float32),
                          bias=rng.normal(0.0, 0.1, size=n_o).astype(np.float32))

    b_h = np.full(n_hidden, beta, dtype=np.float32)
    b_o = np.full(n_out, beta, dtype=np.float32)
    a_o = np.full(n_out, alpha, dtype=np.float32)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([n_in])}),
        "layer_0": affine(n_hidden, n_in),
        "layer_1": nir.IF(r=np.ones(n_hidden, np.float32), v_threshold=np.ones(n_hidden, np.float32)),
        "layer_2": affine(n_hidden, n_hidden),
        "layer_3": nir.LIF(tau=dt / (1 - b_h), v_threshold=np.ones(n_hidden, np.float32),
                           v_leak=np.zeros(n_hidden, np.float32), r=b_h),
        "layer_4": affine(n_out, n_hidden),
        "layer_5": nir.CubaLIF(tau_mem=dt / (1 - b_o), tau_syn=dt / (1 - a_o),
                               v_threshold=np.ones(n_out, np.float32), v_leak=np.zeros(n_out, np.float32),
                               r=b_o),
        "output": nir.Output(output_type={"output": np.array([n_out])}),
    }
    order = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order, order[1:])))


# ------------------------------------------------------------------ lava-dl


LAVA_DL_DT = 1e-4  # docs/source/examples/lava/lava_to_nir.py in the NIR repository


def lava_dl_dense(seed: int = 0, n_in: int = 5, n_hidden: int = 7, i_decay: int = 1024,
                  v_decay: int = 512, v_th_mant: int = 80) -> nir.NIRGraph:
    """Two lava-dl netx dense CUBA layers as NIR's lava_to_nir.py converts them: weights
    / 64, decays / 4096, threshold vThMant / 64, tau = dt/decay at dt = 1e-4, r = tau_mem/dt,
    w_in = tau_syn/dt, v_leak = 0, v_reset = 0; nodes named by position."""
    rng = np.random.default_rng(seed)
    tau_syn, tau_mem = LAVA_DL_DT / (i_decay / 4096), LAVA_DL_DT / (v_decay / 4096)

    def cuba(n: int) -> nir.CubaLIF:
        return nir.CubaLIF(tau_syn=np.full(n, tau_syn), tau_mem=np.full(n, tau_mem),
                           r=np.full(n, tau_mem / LAVA_DL_DT), v_leak=np.zeros(n),
                           v_threshold=np.full(n, v_th_mant / 64), w_in=np.full(n, tau_syn / LAVA_DL_DT),
                           v_reset=np.zeros(n))

    nodes = {
        "input": nir.Input(input_type={"input": np.array([n_in])}),
        "0": nir.Linear(weight=rng.integers(-40, 120, size=(n_hidden, n_in)) / 64),
        "1": cuba(n_hidden),
        "2": nir.Linear(weight=rng.integers(-40, 120, size=(n_hidden, n_hidden)) / 64),
        "3": cuba(n_hidden),
        "output": nir.Output(output_type={"output": np.array([n_hidden])}),
    }
    order = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order, order[1:])))
