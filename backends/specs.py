"""The backends neuromorph ships, registered through the ``neuromorph.backends`` entry
points in pyproject.toml (the same way a third-party backend registers)."""
from ..registry import BackendSpec

LAVA = BackendSpec(
    name="lava",
    description="Intel Lava 0.10.0, Loihi 2 simulator (Loihi2SimCfg floating_pt / fixed_pt)",
    precisions=("float", "fixed"),
    node_types=frozenset({
        "Input", "Output", "Affine", "Linear", "Scale", "Conv1d", "Conv2d", "SumPool2d",
        "Flatten", "Delay", "IF", "LIF", "CubaLIF", "ALIF", "LI",
    }),
    compile="neuromorph.compiler.loihi:compile_loihi",
    run="neuromorph.backends.lava:run_lava",
    limits="neuromorph.compiler.resources:Loihi2Limits",
)
