"""Scores of a classifier on a labelled set, each with a 95% bootstrap interval.

Accuracy, balanced accuracy (mean per-class recall), macro-F1, macro one-vs-rest AUROC, per-class recall and
precision, and the confusion matrix. Intervals are percentile intervals over resamples of the images (seeded), so a
test set of a few hundred X-rays reports how much its figures could move.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["calibration", "score"]


def _confusions(y: np.ndarray, pred: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    """Confusion matrices for each row of resample indices ``idx`` (B x N) -> B x k x k."""
    b = idx.shape[0]
    flat = (np.arange(b)[:, None] * k * k + y[idx] * k + pred[idx]).ravel()
    return np.bincount(flat, minlength=b * k * k).reshape(b, k, k).astype(np.float64)


def _from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics from B x k x k confusion matrices (rows: true class, columns: predicted)."""
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support = cm.sum(2)
    predicted = cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, tp / support, np.nan)
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {
        "accuracy": tp.sum(1) / cm.sum((1, 2)),
        "balanced_accuracy": np.nanmean(recall, axis=1),
        "macro_f1": np.nanmean(np.where(support > 0, f1, np.nan), axis=1),
        "recall": recall,
        "precision": precision,
    }


def _auroc_ovr(y: np.ndarray, prob: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Macro one-vs-rest AUROC (Mann-Whitney U from ranks) for each resample row of ``idx``."""
    k = prob.shape[1]
    out = np.full((idx.shape[0], k), np.nan)
    for c in range(k):
        s = prob[idx, c]  # B x N
        pos = (y[idx] == c).astype(np.float64)
        order = s.argsort(1, kind="mergesort")
        ranks = np.empty_like(s)
        np.put_along_axis(ranks, order, np.arange(1, s.shape[1] + 1, dtype=np.float64)[None, :].repeat(len(s), 0), 1)
        # Average ranks over ties so equal scores count half.
        sorted_s = np.take_along_axis(s, order, 1)
        for row in np.nonzero((np.diff(sorted_s, axis=1) == 0).any(1))[0]:
            vals, inv = np.unique(s[row], return_inverse=True)
            sums = np.bincount(inv, weights=ranks[row])
            counts = np.bincount(inv)
            ranks[row] = (sums / counts)[inv]
        n_pos = pos.sum(1)
        n_neg = pos.shape[1] - n_pos
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = ((ranks * pos).sum(1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
        out[:, c] = np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)
    return np.nanmean(out, axis=1)


def _interval(point: float, samples: np.ndarray) -> dict[str, float]:
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return {"value": float(point), "ci95": [float("nan"), float("nan")]}
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return {"value": float(point), "ci95": [float(lo), float(hi)]}


def score(
    y: np.ndarray,
    prob: np.ndarray,
    classes: tuple[str, ...] | list[str],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    decision_weights: np.ndarray | None = None,
) -> dict[str, Any]:
    """All scores of predictions ``prob`` (N x k probabilities) against labels ``y``, with 95% bootstrap intervals.

    The predicted class is ``argmax(prob x decision_weights)`` (plain argmax without weights); AUROC and calibration
    use the probabilities themselves.
    """
    y = np.asarray(y, dtype=np.int64)
    prob = np.asarray(prob, dtype=np.float64)
    k = len(classes)
    if prob.shape != (len(y), k):
        raise ValueError(f"probabilities have shape {prob.shape}, expected ({len(y)}, {k})")
    if len(y) == 0:
        raise ValueError("no images to score")
    weights = np.ones(k) if decision_weights is None else np.asarray(decision_weights, dtype=np.float64)
    pred = (prob * weights).argmax(1)
    ident = np.arange(len(y))[None, :]
    rng = np.random.default_rng(seed)
    boot = rng.integers(0, len(y), size=(n_boot, len(y)))
    point = _from_confusion(_confusions(y, pred, ident, k))
    samples = _from_confusion(_confusions(y, pred, boot, k))
    auc_point = float(_auroc_ovr(y, prob, ident)[0])
    auc_samples = _auroc_ovr(y, prob, boot)
    cm = _confusions(y, pred, ident, k)[0].astype(int)
    return {
        "n": int(len(y)),
        "classes": list(classes),
        "accuracy": _interval(point["accuracy"][0], samples["accuracy"]),
        "balanced_accuracy": _interval(point["balanced_accuracy"][0], samples["balanced_accuracy"]),
        "macro_f1": _interval(point["macro_f1"][0], samples["macro_f1"]),
        "auroc": _interval(auc_point, auc_samples),
        "recall": {c: _interval(point["recall"][0, i], samples["recall"][:, i]) for i, c in enumerate(classes)},
        "precision": {
            c: _interval(point["precision"][0, i], samples["precision"][:, i]) for i, c in enumerate(classes)
        },
        "confusion_matrix": {"rows_true_columns_predicted": list(classes), "counts": cm.tolist()},
        "calibration": calibration(y, prob),
        "decision_weights": weights.tolist(),
        "bootstrap": {"resamples": n_boot, "seed": seed, "interval": "percentile 95%"},
    }


def calibration(y: np.ndarray, prob: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Expected calibration error of the top-class probability (torchmetrics, ``bins`` equal-width bins) and the
    reliability curve: per bin, the mean confidence, the accuracy and the number of images."""
    import torch
    from torchmetrics.functional.classification import multiclass_calibration_error

    y = np.asarray(y, dtype=np.int64)
    prob = np.asarray(prob, dtype=np.float64)
    k = prob.shape[1]
    ece = float(multiclass_calibration_error(torch.from_numpy(prob).float(), torch.from_numpy(y), k, n_bins=bins))
    conf, pred = prob.max(1), prob.argmax(1)
    which = np.minimum((conf * bins).astype(np.int64), bins - 1)
    curve = []
    for b in range(bins):
        m = which == b
        if m.any():
            curve.append(
                {
                    "bin": [b / bins, (b + 1) / bins],
                    "confidence": float(conf[m].mean()),
                    "accuracy": float((pred[m] == y[m]).mean()),
                    "n": int(m.sum()),
                }
            )
    nll = float(-np.log(np.clip(prob[np.arange(len(y)), y], 1e-12, None)).mean())
    return {"ece": ece, "bins": bins, "nll": nll, "reliability": curve}
