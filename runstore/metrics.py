"""The validation metrics a trial reports, and which way each is better."""

from __future__ import annotations

__all__ = ["DEFAULT_METRIC", "EPOCH_SECONDS", "METRICS", "metric_mode"]

#: What a search selects by unless told otherwise: mean per-class recall (a rare class counts as much as a common one).
DEFAULT_METRIC = "val_balanced_acc"
#: Validation metrics every trial reports each epoch (plus ``val_recall_<class>``); ``val_loss`` is minimised.
METRICS = ("val_balanced_acc", "val_acc", "val_macro_f1", "val_auroc", "val_loss")
#: The seconds one epoch took to train and validate, measured by the trial itself (no checkpoint or restore time).
EPOCH_SECONDS = "epoch_seconds"

#: Metrics where lower is better; every other metric is maximised.
_MINIMISED = frozenset({"val_loss", "train_loss"})


def metric_mode(metric: str, mode: str | None = None) -> str:
    """``mode`` if given, else "min" for a loss and "max" for every other metric."""
    return mode or ("min" if metric in _MINIMISED else "max")
