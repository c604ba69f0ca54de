"""What one training epoch of a config costs on a CPU, estimated from the measured table in the README ("CPU epoch
times behind the cpu profile": the bundled demo set, 1,253 training and 312 validation images, 2 torch threads).

The search uses it to keep proposals the CPU budget can afford (``search.searcher``): a config whose epoch would take
longer than a fair share of the budget is not proposed. The model is a power law per model, fitted by hand to that
table: ``seconds = base x (pixels / 64^2)^p x width^k``, x1.3 for batches of 8 or fewer (measured on resnet18); within
~30% of every measured row. It is an estimate for ranking cost, not a promise: a loaded machine is slower everywhere,
so the search scales it by the speed it measures on its own trials (``search.searcher``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trainables.cache import ImageSpec

__all__ = ["COSTS", "estimate_epoch_s"]

#: model -> (seconds at 64x64 grey, batch 32, width 1; pixel exponent p; width exponent k).
COSTS: dict[str, tuple[float, float, float]] = {
    "tinyvgg": (2.3, 1.0, 1.0),
    "cifar_cnn": (42.7, 1.0, 2.0),
    "alexnet_gray": (21.9, 0.3, 2.0),  # its 4096-wide classifier costs the same at any image size
    "resnet18": (10.9, 0.85, 0.0),
    "efficientnet_b0": (14.8, 0.8, 0.0),
    "resnet50": (28.8, 0.85, 0.0),
    "densenet121": (30.0, 0.85, 0.0),
}
_SMALL_BATCH = 1.3  # batches of 8 or fewer: resnet18 at 96 px, 29.8 s against 22.9 s at batch 32


def estimate_epoch_s(config: Mapping[str, Any]) -> float:
    """Estimated seconds of one epoch (train + validate) of ``config`` (TrialConfig keys) on the demo set, 2 CPUs.
    RGB counts as grey (the cpu profile is grey); an unknown model is a ``ValueError`` naming the known ones."""
    model = config["model"]
    if model not in COSTS:
        raise ValueError(f"no cost estimate for model {model!r}; known: {', '.join(COSTS)}")
    base, p, k = COSTS[model]
    height, width = ImageSpec.parse_size(str(config["image_size"]))
    seconds = base * (height * width / 64**2) ** p * float(config.get("width") or 1.0) ** k
    return seconds * (_SMALL_BATCH if int(config["batch_size"]) <= 8 else 1.0)
