"""Training, as core sees it: a configuration, a result, and the registered methods.

A training method is a function registered under the ``neuromorph.methods`` entry-point
group (neuromorph/registry.py): ``train(graph, data, config, progress) -> TrainResult``.
neuromorph ships ``bptt`` (surrogate-gradient BPTT, backends/torch/bptt.py) and ``eprop``
(online e-prop, backends/torch/eprop.py). A method's own options travel in
``TrainConfig.options``; it lists them in its ``options`` attribute ({name: help}) and any
other is refused here. The trained parameters go back into the IR graph, so what is
saved is exactly what was trained.

    import neuromorph as nm
    from neuromorph import tasks
    from neuromorph.training import TrainConfig, train

    data = tasks.load("digits")
    result = train(nm.models.get("digits-mlp"), data, TrainConfig(epochs=10))
    nm.save(result.graph, "digits.json")
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .errors import NeuromorphError
from .ir import Graph
from .registry import DEFAULT_METHOD, method
from .tasks import Dataset

Progress = Callable[[dict[str, Any]], None]
"""Called after every epoch with that epoch's record (epoch, loss, accuracies, seconds)."""


LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 5e-3  # Adam
    lr_schedule: str = "constant"  # or "cosine": annealed to 0 over the run (per update)
    seed: int = 0
    device: str = "auto"  # auto (CUDA when present), cpu, cuda, cuda:N
    surrogate: str | None = None  # fast_sigmoid or triangle; None: the method's default
    surrogate_alpha: float | None = None  # None: the method's default
    dtype: str = "float32"  # float64 for reference runs and exact comparisons
    # the method's own options (left out of the hash, so that a config stays hashable)
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise NeuromorphError("epochs and batch size must be >= 1 and the learning rate > 0")
        if self.lr_schedule not in LR_SCHEDULES:
            raise NeuromorphError(f"lr schedule must be one of {', '.join(LR_SCHEDULES)}, got '{self.lr_schedule}'")
        if self.dtype not in ("float32", "float64"):
            raise NeuromorphError(f"dtype must be float32 or float64, got '{self.dtype}'")


@dataclass
class TrainResult:
    graph: Graph  # the trained model
    accuracy: float  # test accuracy after the last epoch
    history: list[dict[str, Any]]
    seconds: float
    device: str
    method: str
    rank: int = 0  # this process's rank in a data-parallel run (0 writes the results)
    workers: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


def train(graph: Graph, data: Dataset, config: TrainConfig = TrainConfig(), *,
          method_name: str = DEFAULT_METHOD, progress: Progress | None = None) -> TrainResult:
    """Train ``graph`` on ``data`` with a registered method (default: BPTT)."""
    data.check_model(graph)
    check_options(method_name, config.options)
    return method(method_name)(graph, data, config, progress)


def check_options(method_name: str, options: Mapping[str, Any]) -> None:
    """Refuse, in one line, an option the method does not take (before any work)."""
    known: Mapping[str, str] = getattr(method(method_name), "options", {})
    for key in options:
        if key not in known:
            takes = f"its options: {', '.join(known)}" if known else "it takes none"
            raise NeuromorphError(f"the {method_name} method has no option {key} "
                                  f"(--{key.replace('_', '-')}; {takes})")
