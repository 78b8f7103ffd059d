"""neuromorph.tasks: each task is what its docstring says, deterministic and download-free.

Expected values are recomputed here from the definitions (scikit-learn's own split,
the documented cue layout), not read back from the generator.
"""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from neuromorph.errors import NeuromorphError
from neuromorph.tasks import TASKS, Dataset, load

SMALL = {  # options that keep every task fast
    "digits": {},
    "randman": {"samples_per_class": 20, "steps": 50},
    "cue-accumulation": {"n_train": 32, "n_test": 16},
    "digits-incremental": {},
}
CUE = dict(n_cues=7, cue_steps=50, gap_steps=25, delay_steps=200, recall_steps=50)


@pytest.fixture(scope="module")
def digits_split():
    """scikit-learn's digits and the documented fixed split, computed independently."""
    d = load_digits()
    i_train, i_test = train_test_split(
        np.arange(len(d.target)), test_size=360, stratify=d.target, random_state=0)
    return d, i_train, i_test


@pytest.fixture(scope="module")
def cue_ds() -> Dataset:
    return load("cue-accumulation", seed=3, n_train=256, n_test=256)


def cue_sides_from_spikes(x: np.ndarray) -> np.ndarray:
    """Which side each cue was on, read off the spikes in each documented cue window."""
    slot = CUE["gap_steps"] + CUE["cue_steps"]
    sides = []
    for k in range(CUE["n_cues"]):
        w = slice(k * slot + CUE["gap_steps"], (k + 1) * slot)
        left, right = x[:, w, 0:10].sum(axis=(1, 2)), x[:, w, 10:20].sum(axis=(1, 2))
        assert np.all((left == 0) != (right == 0)), "exactly one side must fire per cue"
        sides.append((right > 0).astype(int))
    return np.stack(sides, axis=1)


# --- registry, shapes, dtypes -------------------------------------------------------

def test_registry_lists_the_tasks():
    assert set(TASKS) == {"digits", "randman", "cue-accumulation", "digits-incremental"}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_shapes_and_dtypes(name):
    ds = load(name, **SMALL[name])
    info = TASKS[name]
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test), ds.learning_stream()):
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert x.ndim == 3 and x.shape[2:] == info.input_shape and x.shape[1] == ds.steps
        assert len(x) == len(y) and set(np.unique(y)) <= set(range(info.n_classes))
    assert ds.n_classes == info.n_classes and ds.dt == 1e-3 and ds.name == name
    assert ds.description


@pytest.mark.parametrize("name", ["randman", "cue-accumulation"])
def test_generated_tasks_are_binary_spikes(name):
    ds = load(name, **SMALL[name])
    assert set(np.unique(ds.x_train)) == {0.0, 1.0}


def test_default_sizes():
    assert load("digits").x_train.shape == (1437, 16, 64)
    assert load("randman").x_train.shape == (800, 100, 20)
    cue = load("cue-accumulation")
    assert cue.x_train.shape == (512, 775, 40) and cue.x_test.shape == (256, 775, 40)


# --- determinism ---------------------------------------------------------------------

@pytest.mark.parametrize("name, options", [
    ("randman", SMALL["randman"]), ("cue-accumulation", SMALL["cue-accumulation"]),
    ("digits", {"encoding": "rate"})])
def test_same_seed_gives_identical_arrays(name, options):
    a, b = load(name, seed=7, **options), load(name, seed=7, **options)
    for f in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(a, f), getattr(b, f))


@pytest.mark.parametrize("name, options", [
    ("randman", SMALL["randman"]), ("cue-accumulation", SMALL["cue-accumulation"]),
    ("digits", {"encoding": "rate"})])
def test_different_seed_gives_different_data(name, options):
    a, b = load(name, seed=0, **options), load(name, seed=1, **options)
    assert not np.array_equal(a.x_train, b.x_train)


def test_loading_leaves_global_random_state_alone():
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    load("cue-accumulation", **SMALL["cue-accumulation"])
    load("digits", encoding="rate")
    assert np.random.random() == expected


# --- digits --------------------------------------------------------------------------

def test_digits_split_does_not_depend_on_seed():
    a, b = load("digits", seed=0), load("digits", seed=5)
    assert np.array_equal(a.y_train, b.y_train) and np.array_equal(a.y_test, b.y_test)
    assert np.array_equal(a.x_test, b.x_test)


def test_digits_split_sizes_and_stratified(digits_split):
    ds = load("digits")
    assert (len(ds.y_train), len(ds.y_test)) == (1437, 360)
    full = np.bincount(digits_split[0].target)
    assert np.all(np.abs(np.bincount(ds.y_test) - full * 360 / 1797) <= 1)


def test_digits_split_is_the_documented_sklearn_split(digits_split):
    d, i_train, i_test = digits_split
    ds = load("digits")
    assert np.array_equal(ds.y_train, d.target[i_train])
    assert np.array_equal(ds.y_test, d.target[i_test])


def test_digits_current_encoding_is_pixel_over_16_at_every_step(digits_split):
    d, _, i_test = digits_split
    ds = load("digits", encoding="current", steps=5)
    expected = (d.data[i_test] / 16.0).astype(np.float32)
    assert ds.x_test.shape == (360, 5, 64)
    for t in range(5):
        assert np.array_equal(ds.x_test[:, t], expected)


def test_digits_latency_one_spike_per_nonzero_pixel_at_its_step(digits_split):
    d, i_train, _ = digits_split
    steps = 16
    x = load("digits", encoding="latency", steps=steps).x_train
    pixels = d.data[i_train]
    counts = x.sum(axis=1)
    assert np.array_equal(counts, (pixels > 0).astype(np.float32))
    step_of = x.argmax(axis=1)
    on = pixels > 0
    expected = np.floor((1 - pixels / 16.0) * (steps - 1) + 0.5)
    assert np.array_equal(step_of[on], expected[on])


@pytest.mark.parametrize("steps, expected", [
    (16, {16: 0, 8: 8, 1: 14}),   # 8/16 -> 7.5 -> 8
    (6, {16: 0, 8: 3, 4: 4, 1: 5}),  # 8/16 -> 2.5 -> 3: halves round up, not to even
])
def test_digits_latency_known_steps(digits_split, steps, expected):
    """Brightest pixel first (step 0), dimmer pixels later, halves rounded up."""
    d, i_train, _ = digits_split
    x = load("digits", encoding="latency", steps=steps).x_train
    pixels = d.data[i_train]
    for value, step in expected.items():
        sel = pixels == value
        assert sel.any() and np.all(x.argmax(axis=1)[sel] == step), value
        assert np.all(x[:, step][sel] == 1)


def test_digits_rate_mean_approximates_pixel_probability():
    steps = 64
    for max_prob in (1.0, 0.5):
        ds = load("digits", encoding="rate", steps=steps, max_prob=max_prob, seed=2)
        px = load("digits", encoding="current", steps=1).x_train[:, 0] * 16
        rate = ds.x_train.mean(axis=1)
        for value in (0, 4, 8, 12, 16):
            sel = px == value
            assert abs(rate[sel].mean() - value / 16 * max_prob) < 0.01, (max_prob, value)


def test_digits_input_shape_gives_the_8x8_image():
    d = load_digits()
    img = load("digits", input_shape=(1, 8, 8))
    flat = load("digits")
    assert img.x_train.shape == (1437, 16, 1, 8, 8)
    assert np.array_equal(img.x_train.reshape(flat.x_train.shape), flat.x_train)
    # the first test sample, as an image, is one of scikit-learn's images / 16
    first = img.x_test[0, 0, 0]
    assert any(np.array_equal(first, (im / 16).astype(np.float32)) for im in d.images)


# --- randman -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def randman_ds() -> Dataset:
    return load("randman")


def test_randman_each_unit_fires_exactly_once(randman_ds):
    for x in (randman_ds.x_train, randman_ds.x_test):
        assert np.all(x.sum(axis=1) == 1)


def test_randman_spike_counts_carry_no_class_information(randman_ds):
    counts = randman_ds.x_train.sum(axis=1)
    assert len(np.unique(counts, axis=0)) == 1


def test_randman_classes_differ_in_timing(randman_ds):
    t, y = randman_ds.x_train.argmax(axis=1), randman_ds.y_train
    means = np.stack([t[y == c].mean(axis=0) for c in range(10)])
    gaps = np.abs(means[:, None] - means[None]).max(axis=-1)
    assert np.all(gaps[~np.eye(10, dtype=bool)] > 5)


def test_randman_is_learnable_from_spike_times(randman_ds):
    """1-nearest-neighbour on spike times far above chance (0.1): the task is learnable."""
    tr, te = randman_ds.x_train.argmax(axis=1), randman_ds.x_test.argmax(axis=1)
    d = ((te[:, None, :] - tr[None, :, :]) ** 2).sum(axis=-1)
    acc = np.mean(randman_ds.y_train[d.argmin(axis=1)] == randman_ds.y_test)
    assert acc > 0.8


def test_randman_split_is_80_20_per_class(randman_ds):
    assert np.all(np.bincount(randman_ds.y_train) == 80)
    assert np.all(np.bincount(randman_ds.y_test) == 20)


def test_randman_options_set_sizes_and_times_span_the_window():
    ds = load("randman", n_classes=3, n_units=5, dim_manifold=2, samples_per_class=50,
              steps=30, alpha=3.0)
    assert ds.x_train.shape == (120, 30, 5) and ds.x_test.shape == (30, 30, 5)
    assert ds.n_classes == 3
    t = np.concatenate([ds.x_train, ds.x_test]).argmax(axis=1)
    assert t.min() == 0 and t.max() == 29


def test_randman_alpha_sets_smoothness():
    """Larger alpha damps high frequencies: the manifold's curvature drops."""
    from neuromorph.tasks.randman import manifold_values

    z = np.linspace(0, 1, 2001)[:, None]

    def roughness(alpha: float) -> float:
        f = manifold_values(np.random.default_rng(0), z, 50, alpha)
        return float(np.abs(np.diff(f, 2, axis=0)).mean())

    assert roughness(1.0) > 3 * roughness(2.0) > 9 * roughness(4.0)
    # same number of sinusoids (the 128 cap) for both: only the 1/k^alpha decay differs
    assert roughness(0.5) > 3 * roughness(1.25)


# --- cue accumulation ----------------------------------------------------------------

def test_cue_label_is_majority_side_of_the_cues(cue_ds):
    for x, y in ((cue_ds.x_train, cue_ds.y_train), (cue_ds.x_test, cue_ds.y_test)):
        sides = cue_sides_from_spikes(x)
        assert np.array_equal(y, (sides.sum(axis=1) > 3).astype(np.int64))


def test_cue_sides_are_random_per_cue(cue_ds):
    sides = cue_sides_from_spikes(cue_ds.x_train)
    assert 0.4 < sides.mean() < 0.6
    assert len({tuple(s) for s in sides}) > 50


def test_cue_firing_rates_match_the_specified_rates(cue_ds):
    x = cue_ds.x_train
    slot = CUE["gap_steps"] + CUE["cue_steps"]
    sides = cue_sides_from_spikes(x)
    cue_rates = []
    for k in range(CUE["n_cues"]):
        w = slice(k * slot + CUE["gap_steps"], (k + 1) * slot)
        for side, ch in ((0, slice(0, 10)), (1, slice(10, 20))):
            cue_rates.append(x[sides[:, k] == side][:, w, ch].mean())
    assert np.mean(cue_rates) / 1e-3 == pytest.approx(40.0, rel=0.05)
    assert x[:, :, 30:40].mean() / 1e-3 == pytest.approx(10.0, rel=0.05)
    assert x[:, cue_ds.decision_steps, 20:30].mean() / 1e-3 == pytest.approx(40.0, rel=0.05)


def test_cue_channels_silent_outside_their_cues(cue_ds):
    x = cue_ds.x_train
    slot = CUE["gap_steps"] + CUE["cue_steps"]
    mask = np.ones(x.shape[1], dtype=bool)
    for k in range(CUE["n_cues"]):
        mask[k * slot + CUE["gap_steps"]:(k + 1) * slot] = False
    assert x[:, mask, 0:20].sum() == 0


def test_cue_recall_channels_silent_before_recall(cue_ds):
    x, start = cue_ds.x_train, cue_ds.decision_steps.start
    assert x[:, :start, 20:30].sum() == 0 and x[:, start:, 20:30].sum() > 0


def test_cue_decision_steps_are_the_recall_period(cue_ds):
    total = 7 * (25 + 50) + 200 + 50
    assert cue_ds.steps == total
    assert cue_ds.decision_steps == slice(total - 50, total)


def test_cue_timing_options_set_the_length():
    ds = load("cue-accumulation", n_cues=3, cue_steps=10, gap_steps=5, delay_steps=20,
              recall_steps=7, n_train=4, n_test=4)
    assert ds.steps == 3 * 15 + 20 + 7 and ds.decision_steps == slice(65, 72)


def test_cue_p_favoured_one_puts_all_cues_on_one_side():
    ds = load("cue-accumulation", p_favoured=1.0, n_train=64, n_test=8)
    sides = cue_sides_from_spikes(ds.x_train)
    assert np.all(sides == sides[:, :1]) and 0 < ds.y_train.mean() < 1


@pytest.mark.parametrize("name", ["digits", "randman"])
def test_decision_steps_cover_all_steps(name):
    ds = load(name, **SMALL[name])
    assert ds.decision_steps == slice(0, ds.steps)


# --- chance ----------------------------------------------------------------------------

def test_chance_is_most_frequent_test_class():
    ds = Dataset("toy", np.zeros((2, 1, 1), np.float32), np.array([0, 1]),
                 np.zeros((3, 1, 1), np.float32), np.array([1, 1, 0]), 2, 1e-3,
                 slice(0, 1), "toy")
    assert ds.chance() == pytest.approx(2 / 3)


def test_chance_values():
    assert 0.1 <= load("digits").chance() < 0.11
    assert 0.5 <= load("cue-accumulation").chance() < 0.6
    assert load("randman").chance() == pytest.approx(0.1)


# --- errors ----------------------------------------------------------------------------

def one_line_error(match: str, *args, **kwargs) -> str:
    with pytest.raises(NeuromorphError, match=match) as info:
        load(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unknown_task_lists_valid_tasks():
    message = one_line_error("unknown task", "mnist")
    assert all(name in message for name in TASKS)


def test_unknown_option_lists_valid_options():
    message = one_line_error("unknown option", "digits", stepz=3)
    assert "steps" in message and "encoding" in message and "max_prob" in message


@pytest.mark.parametrize("name, options", [
    ("digits", {"steps": 0}),
    ("digits", {"steps": 2.5}),
    ("digits", {"encoding": "poisson"}),
    ("digits", {"encoding": "rate", "max_prob": 1.5}),
    ("digits", {"max_prob": 0.5}),                # only meaningful for 'rate'
    ("randman", {"n_classes": 1}),
    ("randman", {"alpha": 0.0}),
    ("randman", {"samples_per_class": 2}),
    ("randman", {"steps": True}),
    ("cue-accumulation", {"n_cues": 6}),
    ("cue-accumulation", {"cue_rate": -1.0}),
    ("cue-accumulation", {"cue_rate": 2000.0}),
    ("cue-accumulation", {"p_favoured": 0.2}),
    ("cue-accumulation", {"n_train": 0}),
])
def test_invalid_option_values_raise(name, options):
    """The message names the task and the offending option (the last one given)."""
    message = one_line_error(list(options)[-1], name, **options)
    assert name in message


@pytest.mark.parametrize("shape", [(63,), (8, 9), (2, 8, 8)])
def test_input_shape_with_wrong_element_count_raises(shape):
    one_line_error("64", "digits", input_shape=shape)


@pytest.mark.parametrize("shape", [(0, 64), (8.0, 8), "64", 64, ()])
def test_input_shape_must_be_positive_integers(shape):
    one_line_error("input_shape", "digits", input_shape=shape)


def test_negative_seed_raises():
    one_line_error("seed", "randman", seed=-1)


def test_dataset_rejects_inconsistent_arrays():
    with pytest.raises(NeuromorphError, match="x_train"):
        Dataset("bad", np.zeros((3, 1, 1), np.float32), np.zeros(2, np.int64),
                np.zeros((1, 1, 1), np.float32), np.zeros(1, np.int64), 2, 1e-3,
                slice(0, 1), "bad")


@pytest.mark.parametrize("name, options", [
    ("cue-accumulation", {"delay_steps": 10**9}),
    ("cue-accumulation", {"n_train": 10**8}),
    ("randman", {"samples_per_class": 10**9}),
    ("digits", {"steps": 10**9}),
])
def test_a_data_set_beyond_the_memory_bound_is_refused_before_it_is_built(name, options):
    with pytest.raises(NeuromorphError, match=r"would need about .* more than the bound") as err:
        load(name, **options)
    assert "\n" not in str(err.value) and f"task {name!r}" in str(err.value)
