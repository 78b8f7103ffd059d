"""``cue-accumulation``: the evidence-accumulation task of Bellec et al. (2020, e-prop,
Nat. Commun. 11:3625, Fig. 3).

40 input channels in 4 groups of 10: 0-9 left cues, 10-19 right cues, 20-29 recall cue,
30-39 background noise. A trial is ``n_cues`` slots of (``gap_steps`` silence, then
``cue_steps`` of cue), then ``delay_steps``, then ``recall_steps`` of recall cue::

    | gap | cue 1 | gap | cue 2 | ... | gap | cue n | delay | recall |

During a cue its side's 10 channels fire Poisson at ``cue_rate``; the recall group fires
at ``recall_rate`` only during the recall period; background fires at
``background_rate`` throughout. Spikes are Bernoulli per step with p = rate * dt.
Label: the side that got more cues (0 left, 1 right); ``n_cues`` is odd, so no ties.
The network is scored on the recall period (``decision_steps``).

Bellec's values (their published code): cue 100 ms after a 50 ms pause, 7 cues, delay
1050 ms, recall 150 ms (2250 steps at dt = 1 ms), 40 Hz cues and recall, 10 Hz
background, and each trial favours a random side with probability 0.7 per cue
(``p_favoured=0.7``). The defaults here are a shorter variant that trains on a 2-core
CPU in reasonable time: cue 50, gap 25, delay 200, recall 50 (775 steps), and each cue's
side drawn uniformly (``p_favoured=0.5``). The paper's setting is one option::

    load("cue-accumulation", timing="paper")     # CLI: --option timing=paper

(it sets the five values above; giving one of them as well with another value is refused).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import NeuromorphError
from .base import DT, Dataset, TaskInfo, check_float, check_int

NAME = "cue-accumulation"
GROUP = 10
LEFT, RIGHT, RECALL, BACKGROUND = (slice(g * GROUP, (g + 1) * GROUP) for g in range(4))

INFO = TaskInfo(
    description="e-prop evidence accumulation (Bellec et al. 2020): count left/right cues, "
                "answer after a delay during the recall cue",
    input_shape=(4 * GROUP,),
    n_classes=2,
    defaults={"n_cues": 7, "cue_steps": 50, "gap_steps": 25, "delay_steps": 200,
              "recall_steps": 50, "cue_rate": 40.0, "recall_rate": 40.0,
              "background_rate": 10.0, "p_favoured": 0.5, "n_train": 512, "n_test": 256,
              "timing": "short"},
)
PAPER_TIMING = {"cue_steps": 100, "gap_steps": 50, "delay_steps": 1050, "recall_steps": 150, "p_favoured": 0.7}
"""Bellec et al. (2020)'s trial (2250 steps at dt = 1 ms): ``timing="paper"``."""


def _timed(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with ``timing`` applied: "short" (the defaults) or "paper"."""
    o = dict(options)
    if o["timing"] == "short":
        return o
    if o["timing"] != "paper":
        raise NeuromorphError(f"task {NAME!r}: option timing must be 'short' or 'paper', got {o['timing']!r}")
    for key, value in PAPER_TIMING.items():
        if o[key] not in (INFO.defaults[key], value):
            raise NeuromorphError(f"task {NAME!r}: timing=paper sets {key}={value}; got {key}={o[key]!r} as well")
        o[key] = value
    return o


def cue_windows(n_cues: int, cue_steps: int, gap_steps: int) -> list[slice]:
    """The time steps of each cue, in order."""
    slot = gap_steps + cue_steps
    return [slice(k * slot + gap_steps, (k + 1) * slot) for k in range(n_cues)]


def _trials(rng: np.random.Generator, n: int, o: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``n`` trials: spikes float32 [n, T, 40] and labels int64 [n]."""
    n_cues, cue_steps, recall_steps = o["n_cues"], o["cue_steps"], o["recall_steps"]
    steps = n_cues * (o["gap_steps"] + cue_steps) + o["delay_steps"] + recall_steps
    favoured = rng.integers(0, 2, size=(n, 1))
    sides = np.where(rng.random((n, n_cues)) < o["p_favoured"], favoured, 1 - favoured)
    labels = (sides.sum(axis=1) > n_cues // 2).astype(np.int64)

    x = np.zeros((n, steps, 4 * GROUP), dtype=np.float32)
    cue_spikes = rng.random((n, n_cues, cue_steps, GROUP)) < o["cue_rate"] * DT
    for k, window in enumerate(cue_windows(n_cues, cue_steps, o["gap_steps"])):
        for side, channels in ((0, LEFT), (1, RIGHT)):
            mask = sides[:, k] == side
            x[mask, window, channels] = cue_spikes[mask, k]
    recall = rng.random((n, recall_steps, GROUP)) < o["recall_rate"] * DT
    x[:, steps - recall_steps:, RECALL] = recall
    x[:, :, BACKGROUND] = rng.random((n, steps, GROUP)) < o["background_rate"] * DT
    return x, labels


def footprint(options: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(samples, steps, values per step) that ``make`` would allocate."""
    o = _timed(options)
    steps = o["n_cues"] * (o["gap_steps"] + o["cue_steps"]) + o["delay_steps"] + o["recall_steps"]
    return o["n_train"] + o["n_test"], steps, 4 * GROUP


def make(seed: int, options: dict[str, Any]) -> Dataset:
    """Generate ``n_train`` then ``n_test`` independent trials from ``seed``."""
    o = _timed(options)
    for name, minimum in (("n_cues", 1), ("cue_steps", 1), ("gap_steps", 0),
                          ("delay_steps", 0), ("recall_steps", 1), ("n_train", 1),
                          ("n_test", 1)):
        o[name] = check_int(NAME, name, o[name], minimum)
    if o["n_cues"] % 2 == 0:
        raise NeuromorphError(
            f"task {NAME!r}: option n_cues must be odd (no ties), got {o['n_cues']}")
    for name in ("cue_rate", "recall_rate", "background_rate"):
        o[name] = check_float(NAME, name, o[name], 0.0, 1.0 / DT)
    o["p_favoured"] = check_float(NAME, "p_favoured", o["p_favoured"], 0.5, 1.0)

    rng = np.random.default_rng(seed)
    x_train, y_train = _trials(rng, o["n_train"], o)
    x_test, y_test = _trials(rng, o["n_test"], o)
    steps = x_train.shape[1]
    return Dataset(
        name=NAME,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        n_classes=2,
        dt=DT,
        decision_steps=slice(steps - o["recall_steps"], steps),
        description=f"cue accumulation: {o['n_cues']} cues of {o['cue_steps']} steps after "
                    f"{o['gap_steps']}-step gaps, delay {o['delay_steps']}, recall "
                    f"{o['recall_steps']} ({steps} steps at dt={DT:g} s)",
    )
