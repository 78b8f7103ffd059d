"""The examples are user stories; each runs here in a quick mode so that it cannot rot."""
import runpy
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name, argv):
    module = runpy.run_path(str(EXAMPLES / name), run_name="example")
    return module["main"](argv)


def test_quickstart_defines_simulates_and_round_trips_nir(tmp_path, capsys):
    run_example("quickstart.py", ["--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "re-imported identical: True" in out
    assert (tmp_path / "lsnn.json").exists() and (tmp_path / "lsnn.nir").exists()


def test_main_job_trains_compiles_and_runs_in_lava(tmp_path):
    result = run_example("digits_to_loihi.py", ["--quick", "--out", str(tmp_path)])
    assert result["deployed"]["samples"] == 40
    assert result["reference"]["accuracy"] > 0.7
    assert abs(result["reference"]["accuracy"] - result["deployed"]["accuracy"]) <= 0.1
    assert (tmp_path / "digits.loihi").exists()


def test_snntorch_nir_file_deploys_and_matches_snntorch(tmp_path):
    result = run_example("nir_to_loihi.py", ["--out", str(tmp_path)])
    assert result["spikes"] > 5
    assert result["agreement"] == 1.0


def test_digits_incremental_learns_new_classes_on_chip(tmp_path):
    result = run_example("digits_incremental.py", ["--quick", "--out", str(tmp_path)])  # fixed point
    assert result["learning_samples"] == 300
    assert result["new_classes_accuracy_before"] == 0.0  # their readout rows start at zero
    assert result["new_classes_accuracy"] > 0.3  # 300 samples (about 150 of new classes) already teach them
    assert (tmp_path / "incremental-learned.nm").exists() and (tmp_path / "learning.png").exists()
