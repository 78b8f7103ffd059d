"""Feed-forward classifiers."""
from ..build import feedforward
from ..ir import Graph


def digits_mlp(seed: int = 0) -> Graph:
    """8x8 digits (64 pixels as input currents or spikes) -> 256 LIF -> 10 LI readouts."""
    return feedforward(64, [256], 10, seed=seed, metadata={"zoo": "digits-mlp", "task": "digits"})


def randman_mlp(seed: int = 0) -> Graph:
    """Randman (20 spiking input channels, 10 classes) -> 128 LIF -> 10 LI readouts."""
    return feedforward(20, [128], 10, seed=seed, metadata={"zoo": "randman-mlp", "task": "randman"})


def digits_incremental(seed: int = 0) -> Graph:
    """8x8 digits -> 512 LIF -> 10 LI readouts, for learning new classes on chip: trained
    off chip on digits 0-4, its readout learns 5-9 after deployment (the hidden layer is
    wider than digits-mlp's so that features learned from five classes serve ten)."""
    return feedforward(64, [512], 10, seed=seed, metadata={"zoo": "digits-incremental", "task": "digits-incremental"})
