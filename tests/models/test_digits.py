import numpy as np
import pytest
import torch

import conceptvec as cv
from conceptvec.models.digits import TrainConfig, are_merged, cached_digits_cnn, merged_class, recorded_accuracy, train_digits_cnn


def test_merged_pairs():
    assert merged_class(np.arange(10)).tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
    assert are_merged(0, 5) and are_merged(9, 4) and not are_merged(3, 3) and not are_merged(1, 2)


@pytest.mark.slow
def test_training_is_seeded_and_learns():
    a, ra = train_digits_cnn(TrainConfig(epochs=10))
    b, rb = train_digits_cnn(TrainConfig(epochs=10))
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k
    assert ra == rb and ra["test_accuracy_merged_classes"] > 0.45  # chance is 0.2; 10 epochs reach about 0.57, 120 about 0.96


def test_cache_reuses_same_config_and_retrains_other(tmp_path):
    _, d, reused = cached_digits_cnn(tmp_path / "m", TrainConfig(epochs=1))
    assert not reused and (d / "digits_cnn.safetensors").exists()
    _, _, reused = cached_digits_cnn(tmp_path / "m", TrainConfig(epochs=1))
    assert reused
    _, _, reused = cached_digits_cnn(tmp_path / "m", TrainConfig(epochs=2))
    assert not reused


def test_recorded_accuracy_of_either_network_and_a_record_without_one():
    assert recorded_accuracy({"test_accuracy_merged_classes": 0.9, "test_accuracy_digits": 0.5}) == 0.9
    assert recorded_accuracy({"test_accuracy_digits": 0.5}) == 0.5
    with pytest.raises(cv.ConceptvecError, match="no test accuracy"):  # was float(None): a TypeError
        recorded_accuracy({"train": {}})
