"""Test-set scores and their bootstrap intervals agree with torchmetrics and behave as intervals should."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassAUROC, MulticlassF1Score, MulticlassRecall

from trainables.scoring import score


@pytest.fixture(scope="module")
def predictions() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 500)
    logits = rng.normal(size=(500, 3))
    logits[np.arange(500), y] += 1.2
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, np.round(prob, 2)  # rounding makes ties, which AUROC must count as half


def test_point_values_match_torchmetrics(predictions: tuple[np.ndarray, np.ndarray]) -> None:
    y, prob = predictions
    s = score(y, prob, ("normal", "bacterial", "viral"), n_boot=200)
    p, t = torch.tensor(prob, dtype=torch.float32), torch.tensor(y)
    assert s["accuracy"]["value"] == pytest.approx(float(MulticlassAccuracy(3, average="micro")(p, t)), abs=1e-6)
    assert s["balanced_accuracy"]["value"] == pytest.approx(float(MulticlassRecall(3, average="macro")(p, t)), abs=1e-6)
    assert s["macro_f1"]["value"] == pytest.approx(float(MulticlassF1Score(3, average="macro")(p, t)), abs=1e-6)
    assert s["auroc"]["value"] == pytest.approx(float(MulticlassAUROC(3, average="macro")(p, t)), abs=1e-4)
    recall = MulticlassRecall(3, average=None)(p, t).tolist()
    assert [s["recall"][c]["value"] for c in ("normal", "bacterial", "viral")] == pytest.approx(recall, abs=1e-6)
    cm = np.array(s["confusion_matrix"]["counts"])
    assert cm.sum() == 500 and np.trace(cm) == round(s["accuracy"]["value"] * 500)


def test_intervals_contain_the_value_and_shrink_with_more_images(predictions: tuple[np.ndarray, np.ndarray]) -> None:
    y, prob = predictions
    big = score(y, prob, ("a", "b", "c"), n_boot=300)
    small = score(y[:60], prob[:60], ("a", "b", "c"), n_boot=300)
    for s in (big, small):
        lo, hi = s["accuracy"]["ci95"]
        assert lo <= s["accuracy"]["value"] <= hi
    width = lambda s: s["accuracy"]["ci95"][1] - s["accuracy"]["ci95"][0]  # noqa: E731
    assert width(small) > 1.8 * width(big)
    assert score(y, prob, ("a", "b", "c"), n_boot=300) == big  # seeded


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="expected \\(2, 3\\)"):
        score(np.array([0, 1]), np.ones((2, 2)), ("a", "b", "c"))
