"""Recurrent LSNNs (Bellec et al. 2018, 2020) for the e-prop tasks."""
from ..build import recurrent
from ..ir import Graph


def lsnn_cue(seed: int = 0) -> Graph:
    """Evidence accumulation (40 input channels, left/right decision): 50 LIF + 50 ALIF
    neurons (tau_mem 20 ms, tau_adapt 2 s, beta 1.8, as in Bellec et al. 2020) with a
    delayed recurrent loop, 2 LI readouts."""
    return recurrent(
        40, 100, 2, n_adaptive=50, tau_mem=20e-3, tau_adapt=2.0, beta=1.8, seed=seed,
        metadata={"zoo": "lsnn-cue", "task": "cue-accumulation"},
    )
