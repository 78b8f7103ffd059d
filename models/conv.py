"""Convolutional SNNs."""
from ..build import conv2d, dense, sequential
from ..ir import LI, LIF, Flatten, Graph, SumPool2d


def digits_conv(seed: int = 0) -> Graph:
    """(1, 8, 8) digits -> conv 3x3, 8 channels -> LIF -> 2x2 sum pool -> flatten (128)
    -> dense -> 10 LI readouts."""
    return sequential(
        (1, 8, 8),
        ("conv1", conv2d(1, 8, 3, padding=1, scale=2.0, seed=seed)),
        ("lif1", LIF(tau=10e-3)),
        ("pool1", SumPool2d(2)),
        ("flatten", Flatten()),
        ("fc_out", dense(128, 10, scale=2.0, seed=seed + 1)),
        ("readout", LI(tau=20e-3)),
        metadata={"zoo": "digits-conv", "task": "digits"},
    )
