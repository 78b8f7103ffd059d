"""Test tiers (markers) and skips for optional packages that are not installed.

Markers (registered in pyproject.toml, [tool.pytest.ini_options]):

* ``lava``  -- the test starts a Lava run or calls Lava's API (needs lava-nc);
* ``torch`` -- the test needs torch (or Norse / snnTorch / nirtorch, which need torch);
* ``slow``  -- the test takes more than ~3 s on the 2-core development machine.

``make test`` runs everything (that is what CI runs); ``make test-fast`` runs
``-m "not slow and not lava"``. The markers are given here, from the tables below,
rather than by decorators in the test files, so that the tiers live in one place.

A missing optional package never makes collection error out:

* a module whose every test needs a package (MODULE_MARKERS) is skipped, without being
  imported, when that package is not installed;
* any other test module that fails to import because an optional package is missing
  (say test_quantize.py, which imports lava at module level although most of its tests
  only use the numpy fixed-point model) is skipped with the name of that package;
* a marked test is skipped when its package is not installed, and an unmarked test that
  fails only because an optional package is missing is reported as skipped too, with a
  reason that says the marker table below lacks it.

So ``pytest -m "not lava and not torch"`` runs on a machine with only the core
dependencies (numpy, scipy, nir, ...).
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import pytest

# Optional top-level packages -> the marker whose requirement they are part of.
OPTIONAL = {"lava": "lava", "torch": "torch", "norse": "torch", "snntorch": "torch", "nirtorch": "torch"}
# The package whose absence skips a marked test.
MARKER_PACKAGE = {"lava": "lava", "torch": "torch"}
INSTALL_HINT = "run `make setup` (scripts/setup.sh), see requirements/"

# Test module (file stem) -> markers of every test in it.
MODULE_MARKERS: dict[str, tuple[str, ...]] = {
    "test_lava_backend": ("lava",),
    "test_lava_compat": ("lava",),
    "test_lava_lifecycle": ("lava",),
    "test_eprop": ("torch",),
    "test_lanes": ("lava",),
    "test_learning_async": ("lava",),
    "test_onchip_learning": ("lava",),
    "test_onchip_eprop": ("lava", "torch"),
    "test_onchip_stdp": ("lava",),
    "test_nir": ("torch",),  # snnTorch / Norse files and behaviour; imports torch at module level
    "test_simulate": ("torch",),  # torch's conv/pool are the references; imported at module level
    "test_torch_backend": ("torch",),
    "test_training": ("torch",),
}

# Tests in mixed modules (file stem, function name: all its parametrisations, or
# name[id]: that one) -> markers.
# Found by running the suite in scratch environments made from .venv without lava-nc
# (and, separately, without torch/Norse/snnTorch/nirtorch): what failed there is listed.
TEST_MARKERS: dict[tuple[str, str], tuple[str, ...]] = {
    # Real Lava processes against the numpy integer model (the module imports lava, so
    # without Lava it is skipped whole; its other tests are the fast tier's fixed-point model).
    ("test_quantize", "test_dense_fixed_equals_lava_dense"): ("lava",),
    ("test_quantize", "test_quantized_mantissas_survive_lavas_clip_and_truncate"): ("lava",),
    ("test_quantize", "test_step_fixed_equals_lava_lif"): ("lava",),
    ("test_quantize", "test_simulate_fixed_equals_a_stock_lava_chain_with_graded_inputs"): ("lava",),
    ("test_resources", "test_limits_agree_with_lavas_own_constants"): ("lava",),
    # Deployment runs in Lava (through the CLI or in process).
    ("test_deploy", "test_float_deployment_agrees_with_the_ir_semantics_spike_for_spike"): ("lava",),
    ("test_deploy", "test_fixed_deployment_equals_the_bit_exact_model"): ("lava",),
    ("test_deploy", "test_run_artifact_on_a_task_matches_the_bit_exact_model"): ("lava",),
    ("test_deploy", "test_run_artifact_on_a_user_stream_is_aligned_with_the_reference"): ("lava",),
    ("test_deploy", "test_verify_command_prints_the_agreements"): ("lava",),
    ("test_deploy", "test_a_model_file_runs_on_any_target_compiled_in_memory"): ("lava",),
    ("test_deploy", "test_norse_network_imported_from_nir_deploys_and_matches_norse"): ("lava", "torch"),
    ("test_deploy", "test_snntorch_recurrent_export_with_dotted_names_deploys_and_verifies"): ("lava", "torch"),
    ("test_deploy", "test_a_trained_model_remembers_its_task_for_compile_run_and_verify"): ("lava", "torch"),
    ("test_deploy", "test_malformed_training_metadata_is_one_line"): ("torch",),
    ("test_examples", "test_main_job_trains_compiles_and_runs_in_lava"): ("lava", "torch"),
    ("test_examples", "test_snntorch_nir_file_deploys_and_matches_snntorch"): ("lava", "torch"),
    ("test_examples", "test_digits_incremental_learns_new_classes_on_chip"): ("lava", "torch"),
    # Reset modes: torch / snnTorch, and real Lava runs (the module imports neither at top level).
    ("test_reset_modes", "test_torch_network_equals_simulate_spike_for_spike"): ("torch",),
    ("test_reset_modes", "test_torch_subtract_reset_is_not_differentiated_but_passes_the_membrane_gradient"): ("torch",),
    ("test_reset_modes", "test_snntorch_subtract_leaky_imported_with_reset_subtract_matches_snntorch"): ("torch",),
    ("test_reset_modes", "test_lava_float_equals_the_netlist_model_and_simulate"): ("lava",),
    ("test_reset_modes", "test_lava_fixed_point_equals_the_bit_exact_model"): ("lava",),
    # Convolutional synapses in real Lava runs, and Lava's own Conv process (why it is not used).
    ("test_conv_deploy", "test_lava_float_convolutions_are_spike_exact_against_the_netlist_model"): ("lava",),
    ("test_conv_deploy", "test_lava_fixed_convolutions_are_bit_exact_against_the_integer_model"): ("lava",),
    ("test_conv_deploy", "test_lavas_own_conv_ignores_weight_exp"): ("lava",),
    ("test_conv_deploy", "test_a_sinabs_nmnist_cnn_imports_compiles_small_and_deploys_exactly"): ("lava",),
    ("test_onchip_learning", "test_cli_compiles_verifies_and_learns_a_digits_incremental_model"): ("lava", "torch"),
    # Training a model, and running a model file on the torch target.
    ("test_digits_incremental", "test_cli_trains_a_learnable_model_runs_it_frozen_and_refuses_learn_off_chip"): ("torch",),
    # The torch target's node rules import torch.
    ("test_plasticity", "test_every_target_refuses_every_rule_naming_the_connection[torch]"): ("torch",),
    ("test_lanes", "test_a_target_without_lanes_refuses_the_option"): ("torch",),
    # `neuromorph backends` loads every registered target and method, bptt included.
    ("test_cli", "test_backends_lists_what_the_registry_holds"): ("torch",),
    ("test_cli", "test_unknown_backend_and_method_name_the_registered_ones"): ("torch",),
    ("test_plugin", "test_a_plugin_target_compiles_runs_and_verifies_through_the_cli"): ("torch",),
    # `neuromorph run` of a model file runs it on the torch target (the default) after its checks.
    ("test_cli_safety", "test_raster_of_a_model_without_spikes_is_refused_before_the_run"): ("torch",),
    ("test_cli_safety", "test_an_npy_header_declaring_a_huge_array_is_refused_unread"): ("torch",),
    ("test_cli_safety", "test_huge_steps_are_refused_with_an_estimate"): ("torch",),
    ("test_cli_safety", "test_an_npz_input_asks_for_an_npy"): ("torch",),
    ("test_cli_safety", "test_empty_inputs_are_refused_on_every_path"): ("torch",),
    ("test_cli_safety", "test_complex_input_is_refused"): ("torch",),
    ("test_cli_safety", "test_dt_for_an_artifact_is_refused_through_the_cli"): ("torch",),
    ("test_cli_safety", "test_no_command_opens_a_fifo_or_a_device[run --input]"): ("torch",),
}

# Slow tests: more than ~3 s of setup + call. Measured on the 2-core development machine
# with `.venv/bin/python -m pytest --durations=0 -q -p no:randomly`, twice: once nearly idle
# and once while other test runs shared it (load ~4, which stretches times ~1.5-2x); slow
# means >= 3 s idle or >= 5 s loaded. The numbers are idle / loaded seconds.
# With --durations, the run ends by listing unmarked tests that took longer (see below).
SLOW_SECONDS = 3.0
SLOW_TESTS = {
    "tests/test_training.py::test_two_gloo_processes_train_the_same_model_as_one",  # 24-28 / 32
    "tests/test_training.py::test_training_lowers_the_loss_and_beats_chance",  # 8-14 / 21
    "tests/test_training.py::test_training_is_reproducible_for_a_seed",  # 6-11 / 7
    "tests/test_training.py::test_cli_train_prints_the_promised_json",  # 7-9 / 9
    "tests/test_training.py::test_a_cosine_schedule_changes_training_and_a_bad_one_is_refused",  # - / 20
    "tests/test_examples.py::test_main_job_trains_compiles_and_runs_in_lava",  # 8-10 / 27
    "tests/test_examples.py::test_snntorch_nir_file_deploys_and_matches_snntorch",  # - / 6
    "tests/test_examples.py::test_digits_incremental_learns_new_classes_on_chip",  # - / 89 (loaded)
    "tests/test_onchip_eprop.py::test_run_learn_accepts_an_eprop_rule_model",  # - / 3.5
    "tests/test_tasks.py::test_randman_alpha_sets_smoothness",  # 2-4 / 4
    "tests/test_lava_backend.py::test_ctrl_c_during_a_run_leaves_no_lava_processes",  # 3-4 / 5
    "tests/test_deploy.py::test_snntorch_recurrent_export_with_dotted_names_deploys_and_verifies",  # - / 12
    "tests/test_deploy.py::test_run_artifact_on_a_task_matches_the_bit_exact_model",  # - / 4 (+ fixture)
    "tests/test_deploy.py::test_a_model_file_runs_on_any_target_compiled_in_memory",  # - / 4
    "tests/test_deploy.py::test_run_artifact_on_a_user_stream_is_aligned_with_the_reference",  # - / 4
    "tests/test_deploy.py::test_a_trained_model_remembers_its_task_for_compile_run_and_verify",  # 15 loaded
    "tests/test_plugin.py::test_a_plugin_target_compiles_runs_and_verifies_through_the_cli",  # - / 11-21
    "tests/test_file_safety.py::test_loading_16000_nodes_is_near_linear",  # - / 9
    "tests/test_fuzz.py::test_fuzzed_files_load_or_are_refused_with_one_line",  # - / 22 (2500 cases)
    "tests/test_lanes.py::test_neuromorph_run_says_its_plan_and_lanes_1_gives_the_same_scores",  # 10-20
    "tests/test_lanes.py::test_verify_runs_the_default_plan_and_stays_exact_in_fixed_and_float",  # 3-7
    "tests/test_conv_deploy.py::test_a_sinabs_nmnist_cnn_imports_compiles_small_and_deploys_exactly",  # 20
    "tests/test_eprop.py::test_true_learning_signal_gives_the_bptt_gradient_over_1000_steps",  # 14 (6 cases)
    "tests/test_eprop.py::test_streaming_equals_autograd_over_2000_steps",  # 3-4
    "tests/test_eprop.py::test_eprop_trains_digits_and_is_reproducible",  # 3-4
    "tests/test_eprop.py::test_cli_refusals_are_one_line_with_exit_2",  # 12 (three CLI starts)
    "tests/test_eprop.py::test_cli_trains_with_eprop_and_says_so",  # 10
    "tests/test_eprop.py::test_two_gloo_processes_train_the_same_eprop_model_as_one",  # 23
}
# Tests that use one of these fixtures (file stem, fixture name) get its markers.
FIXTURE_MARKERS: dict[tuple[str, str], tuple[str, ...]] = {
    ("test_deploy", "trained"): ("torch",),  # trains a model with BPTT
    ("test_lava_lifecycle", "run_digits"): ("slow",),  # a real `neuromorph run` in Lava: 7-15 s
}


@functools.cache
def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def _needs(marker: str) -> str:
    package = MARKER_PACKAGE[marker]
    return f"needs {package}, which is not installed ({INSTALL_HINT})"


def missing_optional(exc: BaseException | None) -> str | None:
    """The optional package whose absence caused ``exc`` (followed through its causes)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ModuleNotFoundError) and exc.name:
            top = exc.name.partition(".")[0]
            if top in OPTIONAL and not installed(top):
                return top
        exc = exc.__cause__ or exc.__context__
    return None


class OptionalDepsModule(pytest.Module):
    """A test module that is skipped, not a collection error, when an optional package is missing."""

    def collect(self):
        for marker in MODULE_MARKERS.get(self.path.stem, ()):
            if marker in MARKER_PACKAGE and not installed(MARKER_PACKAGE[marker]):
                raise pytest.skip.Exception(f"{self.path.name}: {_needs(marker)}", allow_module_level=True)
        try:
            self.obj  # imports the module
        except self.CollectError as exc:
            package = missing_optional(exc)
            if package is None:
                raise
            reason = f"{self.path.name} imports {package}, which is not installed ({INSTALL_HINT})"
            raise pytest.skip.Exception(reason, allow_module_level=True) from None
        return super().collect()


def pytest_pycollect_makemodule(module_path, parent):
    return OptionalDepsModule.from_parent(parent, path=module_path)


_stale: list[str] = []


def _stale_entries(items) -> list[str]:
    """Table entries naming a test that a whole-module collection did not find (renamed?)."""
    names: dict[str, set[str]] = {}
    for item in items:
        names.setdefault(item.path.stem, set()).update(
            {item.name, getattr(item, "originalname", item.name), item.nodeid.split("[")[0]})
    entries = [(stem, test) for stem, test in TEST_MARKERS]
    entries += [(Path(nodeid.split("::")[0]).stem, nodeid) for nodeid in SLOW_TESTS]
    return sorted(f"{stem}: {test}" for stem, test in entries if stem in names and test not in names[stem])


def pytest_collection_modifyitems(config, items):
    if not any("::" in arg for arg in config.args):  # whole modules collected
        _stale[:] = _stale_entries(items)
    for item in items:
        stem = item.path.stem
        name = getattr(item, "originalname", item.name)
        markers = {*MODULE_MARKERS.get(stem, ()), *TEST_MARKERS.get((stem, name), ()),
                   *TEST_MARKERS.get((stem, item.name), ())}
        for fixture in getattr(item, "fixturenames", ()):
            markers.update(FIXTURE_MARKERS.get((stem, fixture), ()))
        if item.nodeid.split("[")[0] in SLOW_TESTS:
            markers.add("slow")
        for marker in sorted(markers):
            item.add_marker(marker)
            if marker in MARKER_PACKAGE and not installed(MARKER_PACKAGE[marker]):
                item.add_marker(pytest.mark.skip(reason=_needs(marker)))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """An unmarked test that fails only because an optional package is missing is skipped."""
    report = yield
    if report.failed and call.excinfo is not None:
        package = missing_optional(call.excinfo.value)
        if package is not None:
            report.outcome = "skipped"
            report.longrepr = (str(item.path), (item.location[1] or 0) + 1,
                               f"Skipped: needs {package}, which is not installed; mark this test "
                               f"'{OPTIONAL[package]}' in tests/conftest.py")
    return report


_durations: dict[str, float] = {}


def pytest_runtest_logreport(report):
    if report.when in ("setup", "call") and "slow" not in report.keywords:
        _durations[report.nodeid] = _durations.get(report.nodeid, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter, config):
    """Table entries that name no test; with --durations, unmarked tests over SLOW_SECONDS."""
    if _stale:
        terminalreporter.section("tests/conftest.py: marker table entries that match no test")
        for name in _stale:
            terminalreporter.write_line(name)
    if config.getoption("durations", None) is None:
        return
    late = sorted(((t, n) for n, t in _durations.items() if t > SLOW_SECONDS), reverse=True)
    if late:
        terminalreporter.section(f"not marked slow but over {SLOW_SECONDS:g} s (tests/conftest.py)")
        for t, n in late:
            terminalreporter.write_line(f"{t:6.2f}s {n}")
