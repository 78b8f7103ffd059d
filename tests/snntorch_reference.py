"""snnTorch's own simulation of a Sequential net, the reference NIR imports are checked
against (used by test_nir.py and test_reset_modes.py; not a test module)."""
import numpy as np


def snntorch_run(net, x):
    """One step at a time, hidden state reset first: x [T, *shape] -> output spikes [T, ...]."""
    import torch

    for layer in net:
        if hasattr(layer, "reset_mem"):
            layer.reset_mem()
    out = []
    with torch.no_grad():
        for t in range(x.shape[0]):
            h = x[t : t + 1]
            for layer in net:
                h = layer(h)
                h = h[0] if isinstance(h, tuple) else h
            out.append(h[0].numpy())
    return np.array(out)
