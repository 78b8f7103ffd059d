"""The torch simulator as a target, registered as ``torch``: runs model files.

``neuromorph run MODEL`` (a model file, not an artifact) compiles the model in memory
for this target and runs it in float64 on :class:`GraphNetwork`, the same module that
training uses; ``compile --backend torch`` writes that as an artifact. There is nothing
to lower: the payload is empty, the envelope's model and dt are the deployment.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from neuromorph.discretize import discretize_graph, resolve_dt
from neuromorph.errors import ModelFileError, NeuromorphError
from neuromorph.ir import Graph
from neuromorph.rules import RuleTable
from neuromorph.streams import Probe, Recording, spiking_nodes
from neuromorph.target import Compiled, Progress, Target

BATCH = 128


class TorchTarget(Target):
    name = "torch"
    description = "neuromorph's PyTorch simulator (float64, CPU or CUDA): the training engine's forward pass"
    precisions = ("float",)

    @property
    def rules(self) -> RuleTable:
        try:
            from .network import NODE_RULES  # imports torch: only when a graph is checked
        except ModuleNotFoundError as exc:
            raise NeuromorphError(f"target 'torch' needs the module '{exc.name}', which is not "
                                  "installed (run `make setup`)") from None
        return NODE_RULES

    def compile(self, graph: Graph, *, precision: str, dt: float | None,
                calibration: Mapping[str, np.ndarray] | None) -> Compiled:
        step = resolve_dt(graph, dt)
        discretize_graph(graph, step)  # refuses what cannot be discretised, naming the node
        return Compiled(None, {}, step)

    def encode_payload(self, payload: Any) -> dict[str, Any]:
        return {}

    def decode_payload(self, data: Any, *, graph: Graph, dt: float, precision: str,
                       source: str) -> None:
        if data != {}:
            raise ModelFileError(f"{source}: a torch artifact carries no payload, this one does")
        return None

    def run(self, artifact: Any, inputs: Mapping[str, np.ndarray], *,
            probes: Sequence[Probe] = (), progress: Progress | None = None) -> Recording:
        import torch

        from .network import GraphNetwork

        graph = artifact.graph
        net = GraphNetwork(graph, dt=artifact.dt, dtype=torch.float64).eval()
        spiking = spiking_nodes(graph)
        record = [*spiking, *(p.text for p in probes)]
        first = next(iter(inputs.values()))
        n, steps = int(first.shape[0]), int(first.shape[1])
        if n == 0 or steps == 0:  # nothing to concatenate; streams.check_streams refuses it first
            raise NeuromorphError("nothing to run: the input has no samples or no time steps")
        parts: dict[str, list[np.ndarray]] = {}
        with torch.no_grad():
            for i in range(0, n, BATCH):
                batch = {k: torch.as_tensor(v[i: i + BATCH]) for k, v in inputs.items()}
                for key, value in net(batch, record=record).items():
                    parts.setdefault(key, []).append(value.numpy())
                if progress is not None:
                    steps = next(iter(inputs.values())).shape[1]
                    progress(min(n, i + BATCH) * steps, n * steps)  # sample-steps, as the CLI says
        out = {k: np.concatenate(v) for k, v in parts.items()}
        return Recording({o: out[o] for o in graph.outputs}, {p.text: out[p.text] for p in probes},
                         {name: int(out[name].sum()) for name in spiking})


TORCH = TorchTarget()
