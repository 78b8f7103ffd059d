"""PNG figures people look at: training curves and spike rasters (matplotlib, Agg)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .documents import write_atomic


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, path: str | Path, title: str) -> Path:
    """Title, write atomically as PNG, and always free the figure."""
    if title:
        fig.suptitle(title)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    return write_atomic(path, buf.getvalue())


def training_curves(history: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Loss and train/test accuracy per epoch."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, [h["loss"] for h in history], marker="o")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("training loss")
    ax2.plot(epochs, [h["train_accuracy"] for h in history], marker="o", label="train")
    ax2.plot(epochs, [h["test_accuracy"] for h in history], marker="o", label="test")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy")
    ax2.set_ylim(0, 1)
    ax2.legend()
    return _save(plt, fig, path, title)


def raster(spikes: dict[str, np.ndarray], path: str | Path, dt: float, title: str = "") -> Path:
    """Spike rasters of one sample: ``{layer: [T, neurons...]}``, one panel per layer."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(spikes), 1, figsize=(8, 1.8 * len(spikes) + 0.6), sharex=True,
                             squeeze=False)
    for ax, (name, s) in zip(axes[:, 0], spikes.items()):
        s = s.reshape(s.shape[0], -1)
        t, n = np.nonzero(s)
        ax.scatter(t * dt * 1e3, n, s=2, marker="|", color="k")
        ax.set_ylabel(f"{name}\nneuron")
        ax.set_ylim(-0.5, s.shape[1] - 0.5)
    axes[-1, 0].set_xlabel("time (ms)")
    return _save(plt, fig, path, title)


def learning_curve(result: dict[str, Any], path: str | Path) -> Path:
    """On-chip learning (``run --learn``): the online accuracy over the learning stream,
    with the test accuracy before and after (and per class group when the task has new
    classes)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.8))
    curve = result["curve"]
    ax.plot([c["samples"] for c in curve], [c["accuracy"] for c in curve], marker=".",
            label="online accuracy on the stream (its label acts within the sample)")
    n = result["learning_samples"]
    lines = [("accuracy", "test, all classes", "k")]
    if "new_classes_accuracy" in result:
        lines += [("new_classes_accuracy", "test, new classes", "tab:green"),
                  ("old_classes_accuracy", "test, old classes", "tab:orange")]
    for key, label, color in lines:
        before = result["accuracy_before"] if key == "accuracy" else result[f"{key}_before"]
        after = result["accuracy_after"] if key == "accuracy" else result[key]
        if before is None or after is None:  # the test split has no sample of that group
            continue
        ax.plot([0, n], [before, after], linestyle="none", marker="o", color=color,
                label=f"{label}: {before:.3f} -> {after:.3f}")
    ax.set_xlabel("labelled samples played on chip")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.03, 1.03)  # a score of 0 or 1 stays visible
    # below the axes: inside, it hid the scores after learning (drawn at the right edge)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=8, ncol=1, frameon=False)
    title = f"on-chip learning: {result['task']} ({result['backend']}, {result['precision']})"
    return _save(plt, fig, path, title)
