"""Name -> factory registry of the chest X-ray classifiers the hyperparameter search can train.

Two families are registered: ``seed_cnn`` (:mod:`trainables.models.seed_cnns`: ``tinyvgg``, ``cifar_cnn``,
``alexnet_gray``) and ``torchvision`` (:mod:`trainables.models.torchvision_models`: ``resnet18``, ``resnet50``,
``densenet121``, ``efficientnet_b0``, from one table). All take ``in_channels`` 1 or 3, any input of at least 32x32
(non-square too) and return logits of shape ``[N, num_classes]``; :func:`create_model` checks every argument.
"""

from __future__ import annotations

from trainables.models import (
    seed_cnns,  # noqa: F401 - registers the seed CNNs
    torchvision_models,  # noqa: F401 - registers the torchvision models
)
from trainables.models.registry import (
    MIN_IMAGE_SIZE,
    OPTIONAL_KWARGS,
    Family,
    ModelInfo,
    create_model,
    list_models,
    model_info,
    register_model,
)
from trainables.models.training import count_parameters, head_parameters, set_train_mode
from trainables.weights import PretrainedWeightsMissing, pretrained_available, pretrained_weights_path

__all__ = [
    "MIN_IMAGE_SIZE",
    "OPTIONAL_KWARGS",
    "Family",
    "ModelInfo",
    "PretrainedWeightsMissing",
    "count_parameters",
    "create_model",
    "head_parameters",
    "list_models",
    "model_info",
    "pretrained_available",
    "pretrained_weights_path",
    "register_model",
    "set_train_mode",
]
