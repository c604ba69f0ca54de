"""What the training loop needs of any built model: train mode that respects a frozen backbone, head, size."""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["count_parameters", "head_parameters", "mark_built", "set_train_mode"]


def _frozen_batchnorms(model: nn.Module) -> Iterator[_BatchNorm]:
    for module in model.modules():
        if isinstance(module, _BatchNorm) and not any(p.requires_grad for p in module.parameters(recurse=False)):
            yield module


def set_train_mode(model: nn.Module, train: bool = True) -> nn.Module:
    """``model.train(train)``, but BatchNorm layers of a frozen backbone stay in eval mode.

    A frozen backbone must keep its (pretrained) running statistics; plain ``model.train()``
    would let every training forward pass overwrite them.
    """
    model.train(train)
    if getattr(model, "frozen_backbone", False):
        for module in _frozen_batchnorms(model):
            module.eval()
    return model


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of the classification head (the layer(s) producing the ``num_classes`` logits).

    For torchvision models this is the replaced head; for seed CNNs the final Linear layer.
    """
    head_name = getattr(model, "head_name", None)
    if not isinstance(head_name, str):
        raise ValueError(f"{type(model).__name__} was not built by create_model (it has no head_name attribute)")
    return list(model.get_submodule(head_name).parameters())


def count_parameters(model: nn.Module) -> int:
    """Number of trainable (``requires_grad``) parameter elements."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def mark_built(model: nn.Module, head_name: str, frozen_backbone: bool = False) -> nn.Module:
    """Record where the head is and whether the backbone is frozen; every factory ends with this."""
    model.head_name = head_name
    model.frozen_backbone = frozen_backbone
    return set_train_mode(model, True)
