"""Behaviour of the model registry, checked over every registered model (like timm's tests).

Everything is local: pretrained weights are faked by saving randomly initialised torchvision
state dicts into a temporary TORCH_HOME, so nothing is ever downloaded.
"""

from __future__ import annotations

import os
import re

import pytest
import torch
import torchvision
from torch import nn

from trainables.models import (
    OPTIONAL_KWARGS,
    PretrainedWeightsMissing,
    count_parameters,
    create_model,
    head_parameters,
    list_models,
    model_info,
    pretrained_available,
    pretrained_weights_path,
    set_train_mode,
)

torch.set_num_threads(2)

TORCHVISION_MODELS = [n for n in list_models() if model_info(n).family == "torchvision"]
SEED_MODELS = [n for n in list_models() if model_info(n).family == "seed_cnn"]
FIRST_CONV = {"resnet18": "conv1", "resnet50": "conv1", "densenet121": "features.conv0"}
FIRST_CONV["efficientnet_b0"] = "features.0.0"


def _build(name: str, in_channels: int = 1, image_size: tuple[int, int] = (64, 64), **kwargs) -> nn.Module:
    return create_model(name, in_channels=in_channels, num_classes=3, image_size=image_size, **kwargs)


def test_registry_contents() -> None:
    assert list_models() == sorted(list_models())
    assert set(SEED_MODELS) == {"tinyvgg", "cifar_cnn", "alexnet_gray"}
    assert set(TORCHVISION_MODELS) == {"resnet18", "resnet50", "densenet121", "efficientnet_b0"}
    for name in list_models():
        info = model_info(name)
        assert info.name == name and info.supports <= OPTIONAL_KWARGS


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("image_size", [(64, 64), (96, 128)])
@pytest.mark.parametrize("name", list_models())
def test_forward_shape(name: str, image_size: tuple[int, int], in_channels: int) -> None:
    torch.manual_seed(0)
    model = _build(name, in_channels, image_size).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, in_channels, *image_size))
    assert logits.shape == (2, 3)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ["alexnet_gray", "cifar_cnn"])
def test_smallest_and_seed_sized_inputs(name: str) -> None:
    for size in [(32, 32), (256, 300)]:
        model = _build(name, 1, size, width=0.25).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 1, *size)).shape == (1, 3)


@pytest.mark.parametrize("name", ["tinyvgg", "resnet18"])
def test_backward_produces_gradients(name: str) -> None:
    torch.manual_seed(0)
    model = _build(name, 1, (64, 64))
    set_train_mode(model, True)
    loss = nn.functional.cross_entropy(model(torch.randn(2, 1, 64, 64)), torch.tensor([0, 2]))
    loss.backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, pname
        assert torch.isfinite(param.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


def test_same_seed_same_weights() -> None:
    for name in ["tinyvgg", "resnet18"]:
        torch.manual_seed(123)
        first = _build(name).state_dict()
        torch.manual_seed(123)
        second = _build(name).state_dict()
        assert all(torch.equal(first[k], second[k]) for k in first)


def test_tinyvgg_rejects_other_input_size() -> None:
    model = _build("tinyvgg", 1, (64, 64))
    with pytest.raises(ValueError, match=r"\(64, 64\)"):
        model(torch.randn(1, 1, 96, 128))


def test_unknown_model_lists_valid_models() -> None:
    with pytest.raises(ValueError, match="unknown model 'foo'") as excinfo:
        _build("foo")
    for name in list_models():
        assert name in str(excinfo.value)


def test_unsupported_kwarg_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="width") as excinfo:
        _build("resnet18", width=2.0)
    message = str(excinfo.value)
    assert "resnet18" in message
    for accepted in model_info("resnet18").supports:
        assert accepted in message
    with pytest.raises(TypeError, match="pretrained"):
        _build("tinyvgg", pretrained=False)
    with pytest.raises(TypeError, match="widht"):
        _build("tinyvgg", widht=2.0)


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"in_channels": 2}, "2"),
        ({"num_classes": 1}, "1"),
        ({"width": 0.0}, "0.0"),
        ({"width": -1.5}, "-1.5"),
        ({"dropout": 1.0}, "1.0"),
        ({"dropout": -0.1}, "-0.1"),
        ({"image_size": (16, 64)}, "16"),
    ],
)
def test_bad_values_are_value_errors(kwargs: dict, bad: str) -> None:
    args = {"in_channels": 1, "num_classes": 3, "image_size": (64, 64), **kwargs}
    with pytest.raises(ValueError, match=re.escape(bad)):
        create_model("tinyvgg", **args)


def test_width_scales_parameters() -> None:
    assert count_parameters(_build("tinyvgg", width=2.0)) > count_parameters(_build("tinyvgg", width=1.0))
    assert count_parameters(_build("cifar_cnn", width=0.5)) < count_parameters(_build("cifar_cnn"))


def test_dropout_is_used() -> None:
    for name in ["tinyvgg", "resnet18"]:
        model = _build(name, dropout=0.3)
        assert any(isinstance(m, nn.Dropout) and m.p == 0.3 for m in model.modules())


def test_pretrained_missing(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert pretrained_weights_path("resnet18") == expected
    assert not pretrained_available("resnet18")
    assert not pretrained_available("tinyvgg")
    with pytest.raises(PretrainedWeightsMissing) as excinfo:
        _build("resnet18", pretrained=True)
    message = str(excinfo.value)
    assert isinstance(excinfo.value, FileNotFoundError)
    assert str(expected) in message
    assert torchvision.models.ResNet18_Weights.DEFAULT.url in message
    assert "\n" not in message


@pytest.mark.parametrize("name", ["resnet18", "densenet121", "efficientnet_b0"])
def test_pretrained_present_is_loaded(name: str, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.get_model_weights(name).DEFAULT
    path = tmp_path / "hub" / "checkpoints" / os.path.basename(weights.url)
    path.parent.mkdir(parents=True)
    torch.manual_seed(1)
    saved = torchvision.models.get_model(name, weights=None).state_dict()
    if name == "densenet121":  # published DenseNet checkpoints use "norm.1" keys, no num_batches_tracked
        old_key = re.compile(r"(denselayer\d+\.(?:norm|relu|conv))(\d)")
        on_disk = {old_key.sub(r"\1.\2", k): v for k, v in saved.items() if "num_batches_tracked" not in k}
        assert on_disk.keys() != saved.keys()
    else:
        on_disk = saved
    torch.save(on_disk, path)
    assert pretrained_available(name)

    torch.manual_seed(2)
    model = _build(name, 1, (64, 64), pretrained=True)
    state = model.state_dict()
    conv = FIRST_CONV[name]
    assert torch.equal(state[f"{conv}.weight"], saved[f"{conv}.weight"].sum(dim=1, keepdim=True))
    backbone_keys = [k for k in saved if not k.startswith((conv + ".", "fc.", "classifier."))]
    assert backbone_keys
    for key in backbone_keys:
        assert torch.equal(state[key], saved[key]), key
    if name == "resnet18":
        assert torch.equal(state["layer1.0.conv1.weight"], saved["layer1.0.conv1.weight"])

    rgb = _build(name, 3, (64, 64), pretrained=True).state_dict()
    assert torch.equal(rgb[f"{conv}.weight"], saved[f"{conv}.weight"])


def test_freeze_backbone_trains_only_head() -> None:
    torch.manual_seed(0)
    model = _build("resnet18", 1, (224, 224), freeze_backbone=True, dropout=0.2)
    head = head_parameters(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in head}
    assert count_parameters(model) == 512 * 3 + 3

    set_train_mode(model, True)
    assert model.training
    batchnorms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert batchnorms and not any(m.training for m in batchnorms)

    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(2, 1, 224, 224)
    loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1]))
    loss.backward()
    optimiser.step()

    after = model.state_dict()
    head_keys = {k for k in after if k.startswith("fc.")}
    assert head_keys == {"fc.1.weight", "fc.1.bias"}
    for key in after:
        if key in head_keys:
            assert not torch.equal(before[key], after[key]), key
        else:  # includes BN running statistics, which eval-mode BN leaves alone
            assert torch.equal(before[key], after[key]), key

    set_train_mode(model, False)
    assert not model.training


def test_unfrozen_model_trains_batchnorm() -> None:
    model = _build("resnet18")
    set_train_mode(model, True)
    assert all(m.training for m in model.modules())
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())
    assert {id(p) for p in head_parameters(model)} == {id(p) for p in model.fc.parameters()}


def test_seed_cnn_head_is_final_linear() -> None:
    for name in SEED_MODELS:
        head = head_parameters(_build(name, width=0.25))
        assert [tuple(p.shape)[:1] for p in head] == [(3,), (3,)]
