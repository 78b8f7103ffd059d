"""Training IR models in Norse/PyTorch. ``train_bptt`` is surrogate-gradient BPTT.

    import neuromorph as nm
    from neuromorph import tasks
    from neuromorph.training import TrainConfig, train_bptt

    data = tasks.load("digits")
    result = train_bptt(nm.models.get("digits-mlp"), data, TrainConfig(epochs=10))
    nm.save(result.graph, "digits.json")    # exactly the trained parameters
"""
from .bptt import TrainConfig, TrainResult, evaluate, resolve_device, train_bptt
from .distributed import Cluster

METHODS = ("bptt",)

__all__ = ["METHODS", "Cluster", "TrainConfig", "TrainResult", "evaluate", "resolve_device", "train_bptt"]
