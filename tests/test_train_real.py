"""On the real MNIST files (skipped without ../shared/datasets): training improves the bound."""

import pytest
import torch

from benchmark.config import RunConfig
from benchmark.data.splits import load_dataset
from benchmark.evaluation.inputs import evaluation_inputs
from benchmark.evaluation.run import score
from benchmark.training.group import initial_member_model
from benchmark.training.loop import train_run

pytestmark = pytest.mark.realdata


def test_200_steps_of_a_one_layer_vae_improve_the_test_bound(real_data_dir, tmp_path):
    config = RunConfig(data="mnist-dynamic", model="vae", k=1, layers=1, steps=200, eval_k=50,
                       eval_n=300)
    dataset = load_dataset("mnist-dynamic", real_data_dir)
    initial = initial_member_model(config, dataset)
    inputs = evaluation_inputs(dataset, config)
    x = inputs.test[inputs.test_index]
    initial_nll = -score(initial, x, 50, torch.device("cpu")).mean()
    # the decoder bias starts at the logit of the mean pixel: already far better than chance
    assert 150 < initial_nll < 784 * 0.6932

    record = train_run(config, tmp_path / "run", real_data_dir, show_progress=False)
    assert record["status"] == "complete" and record["metrics"]["eval_n"] == 300
    assert record["environment"]["dataset_catalogue"] == "built-in"
    trained_nll = record["metrics"]["test_nll"]
    # Measured (this commit and the layout before it alike, to the last digit): 208.45 nats
    # before, 196.09 after 200 steps of the code fidelity's Adam (its second moment starts at
    # one, so the first steps are small), a gain of 12.4 nats with a standard error of 2.2 over
    # the 300 images. Both numbers are deterministic here (fixed initialisation, seeded noise);
    # 10 nats is what that measurement supports (a larger gain quoted earlier did not
    # reproduce), and it still fails for a run that trains a tenth as fast.
    assert trained_nll < initial_nll - 10, (initial_nll, trained_nll)
