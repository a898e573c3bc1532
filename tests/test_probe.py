"""The linear probe learns separable classes and only the classes it is shown."""
import pytest
import torch

from mmcore.probe import fit_linear_probe, probe_accuracy


def clusters(n_per_class: int, centres: torch.Tensor, noise: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(len(centres)).repeat_interleave(n_per_class)  # (N,)
    return centres[labels] + noise * torch.randn(len(labels), centres.shape[1], generator=g), labels


def test_probe_separates_clusters_and_generalises():
    centres = torch.eye(4, 16) * 3  # four well separated classes in 16-d
    x, y = clusters(10, centres, 0.5, seed=0)
    weight, bias = fit_linear_probe(x, y, num_classes=4)
    test_x, test_y = clusters(50, centres, 0.5, seed=1)
    assert probe_accuracy(test_x, test_y, weight, bias) > 0.97
    assert weight.shape == (16, 4) and bias.shape == (4,)


def test_probe_never_predicts_an_unseen_class_on_its_training_data():
    centres = torch.eye(3, 8) * 3
    x, y = clusters(20, centres, 0.3, seed=0)
    seen = y < 2  # class 2 is never shown
    weight, bias = fit_linear_probe(x[seen], y[seen], num_classes=3)
    unseen_predictions = (x[~seen] @ weight + bias).argmax(1)
    assert (unseen_predictions != 2).all()


def test_probe_checks_shapes():
    with pytest.raises(ValueError, match="expected embeddings"):
        fit_linear_probe(torch.zeros(5, 3), torch.zeros(4, dtype=torch.long), 2)
