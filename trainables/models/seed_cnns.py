"""The seed project's from-scratch CNNs (``tinyvgg``, ``cifar_cnn``, ``alexnet_gray``); they accept ``width``
(channel multiplier) and ``dropout``."""

from __future__ import annotations

import torch
from torch import nn

from trainables.models.registry import register_model
from trainables.models.training import mark_built

__all__ = ["TinyVGG", "alexnet_gray", "cifar_cnn", "tinyvgg"]


def scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def dropout_layer(p: float) -> nn.Module:
    return nn.Dropout(p) if p > 0 else nn.Identity()


class TinyVGG(nn.Module):
    """CNN Explainer TinyVGG; its Linear head is sized for exactly one input size."""

    def __init__(
        self, in_channels: int, num_classes: int, image_size: tuple[int, int], hidden: int, dropout: float
    ) -> None:
        super().__init__()
        self.image_size = image_size
        self.conv_block_1 = self._block(in_channels, hidden)
        self.conv_block_2 = self._block(hidden, hidden)
        with torch.no_grad():
            dummy = torch.zeros(1, in_channels, *image_size)
            flat = self.conv_block_2(self.conv_block_1(dummy)).numel()
        layers: list[nn.Module] = [nn.Flatten()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(flat, num_classes))
        self.classifier = nn.Sequential(*layers)

    @staticmethod
    def _block(in_channels: int, out_channels: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.image_size:
            raise ValueError(
                f"tinyvgg was built for image_size {self.image_size}, got input of size {tuple(x.shape[-2:])}"
            )
        return self.classifier(self.conv_block_2(self.conv_block_1(x)))


@register_model(family="seed_cnn", supports=frozenset({"width", "dropout"}))
def tinyvgg(
    *, in_channels: int, num_classes: int, image_size: tuple[int, int], width: float = 1.0, dropout: float = 0.0
) -> nn.Module:
    """Seed TinyVGG: 2 x [conv-relu-conv-relu-pool] with round(10*width) channels, Linear head."""
    model = TinyVGG(in_channels, num_classes, image_size, scaled(10, width), dropout)
    return mark_built(model, f"classifier.{len(model.classifier) - 1}")


@register_model(family="seed_cnn", supports=frozenset({"width", "dropout"}))
def cifar_cnn(
    *, in_channels: int, num_classes: int, image_size: tuple[int, int], width: float = 1.0, dropout: float = 0.5
) -> nn.Module:
    """Seed 6-conv / 3-FC CIFAR CNN (conv widths 32-64, 128-128, 256-256 and FC 1024-512, x width)."""
    del image_size  # adaptive pooling makes it size independent
    layers: list[nn.Module] = []
    prev = in_channels
    for first, second in ((32, 64), (128, 128), (256, 256)):
        first, second = scaled(first, width), scaled(second, width)
        layers += [
            nn.Conv2d(prev, first, kernel_size=3, padding=1),
            nn.BatchNorm2d(first),
            nn.ReLU(inplace=True),
            nn.Conv2d(first, second, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]
        prev = second
    fc1, fc2 = scaled(1024, width), scaled(512, width)
    model = nn.Sequential(
        nn.Sequential(*layers),
        nn.AdaptiveAvgPool2d((4, 4)),
        nn.Flatten(),
        nn.Sequential(
            nn.Linear(prev * 16, fc1),
            nn.ReLU(inplace=True),
            dropout_layer(dropout),
            nn.Linear(fc1, fc2),
            nn.ReLU(inplace=True),
            dropout_layer(dropout),
            nn.Linear(fc2, num_classes),
        ),
    )
    return mark_built(model, "3.6")


@register_model(family="seed_cnn", supports=frozenset({"width", "dropout"}))
def alexnet_gray(
    *, in_channels: int, num_classes: int, image_size: tuple[int, int], width: float = 1.0, dropout: float = 0.5
) -> nn.Module:
    """Seed AlexNet-like CNN for 256x300 X-rays; pools use padding 1 so 32x32 inputs still work."""
    del image_size  # adaptive pooling makes it size independent
    c1, c2, c3, c4, fc = (scaled(c, width) for c in (64, 192, 384, 256, 4096))

    def pool() -> nn.Module:
        return nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    model = nn.Sequential(
        nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            pool(),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            pool(),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c4, c4, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            pool(),
        ),
        nn.AdaptiveAvgPool2d((6, 6)),
        nn.Flatten(),
        nn.Sequential(
            dropout_layer(dropout),
            nn.Linear(c4 * 36, fc),
            nn.ReLU(inplace=True),
            dropout_layer(dropout),
            nn.Linear(fc, fc),
            nn.ReLU(inplace=True),
            nn.Linear(fc, num_classes),
        ),
    )
    return mark_built(model, "3.6")
