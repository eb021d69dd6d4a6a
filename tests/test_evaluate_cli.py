"""`python -m benchmark evaluate RUN_DIR`: re-scoring a trained run."""

import json

import numpy as np
import pytest

from benchmark.cli import main


def test_evaluate_writes_its_estimate_beside_the_run(trained_run, synthetic_data_dir, capsys):
    argv = ["evaluate", str(trained_run), "--k", "20", "--n", "30", "--data-dir",
            str(synthetic_data_dir)]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["split"], summary["k"], summary["n"]) == ("test", 20, 30)
    saved = json.loads((trained_run / "evaluations" / "test_k20_n30.json").read_text())
    assert saved == summary
    per_example = np.load(trained_run / "evaluations" / "test_k20_n30.npy")
    assert per_example.shape == (30,)
    # the same k, subset and noise seed as the training run's own final evaluation
    record = json.loads((trained_run / "result.json").read_text())
    assert summary["nll"] == pytest.approx(record["metrics"]["test_nll"], rel=1e-6)

    assert main(argv[:2] + ["--split", "train", "--k", "5", "--n", "40", "--data-dir",
                            str(synthetic_data_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 40


def test_evaluate_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "no result.json" in capsys.readouterr().err
