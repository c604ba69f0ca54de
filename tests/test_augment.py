"""Batched augmentation: per-image randomness, no black corners, repeatable, correct normalisation."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from reports.rundata import augment_ops_on as augment_ops_on_in_report
from trainables.augment import TA_OPS, TA_TABLE, AugmentConfig, BatchAugment, _affine_grid
from trainables.augment_config import AUGMENT_OPS, augment_ops_on
from trainables.cache import ImageSpec
from trainables.config import TrialConfig
from trainables.data import DataCatalog


@pytest.fixture(scope="module")
def xrays() -> torch.Tensor:
    """32 real demo X-rays at 64x80 (non-square on purpose), uint8."""
    prepared = DataCatalog().prepare(ImageSpec(64, 80, channels=1))
    return torch.from_numpy(prepared.train.x[:32].copy())


def _same_image_batch(xrays: torch.Tensor, n: int = 64) -> torch.Tensor:
    return xrays[:1].expand(n, -1, -1, -1).contiguous()


def test_flips_are_drawn_per_image(xrays: torch.Tensor) -> None:
    batch = _same_image_batch(xrays)
    out = BatchAugment(AugmentConfig(hflip=0.5), (0.0,), (1.0,), seed=0).augment(batch)
    original = batch.float() / 255
    flipped = original.flip(-1)
    is_orig = torch.isclose(out, original).flatten(1).all(1)
    is_flip = torch.isclose(out, flipped).flatten(1).all(1)
    assert bool((is_orig | is_flip).all())  # flips are exact pixel moves
    assert 16 < int(is_flip.sum()) < 48  # about half, and not all-or-nothing as v2 on a batch would do
    vflipped = BatchAugment(AugmentConfig(vflip=1.0), (0.0,), (1.0,)).augment(batch)
    assert torch.allclose(vflipped, original.flip(-2))


def test_rotation_leaves_no_black_corners(xrays: torch.Tensor) -> None:
    grey = torch.full((16, 1, 64, 80), 140, dtype=torch.uint8)
    out = BatchAugment(AugmentConfig(rotate=15.0), (0.0,), (1.0,)).augment(grey)
    assert torch.allclose(out, torch.full_like(out, 140 / 255), atol=1e-4)  # zero fill would give black corners
    real = BatchAugment(AugmentConfig(rotate=15.0), (0.0,), (1.0,)).augment(xrays)
    corners = real[..., [0, 0, -1, -1], [0, -1, 0, -1]]
    source_corners = (xrays.float() / 255)[..., [0, 0, -1, -1], [0, -1, 0, -1]]
    assert float((corners == 0).float().mean()) <= float((source_corners == 0).float().mean()) + 0.05


def test_trivial_augment_draws_an_op_per_image(xrays: torch.Tensor) -> None:
    batch = _same_image_batch(xrays)
    out = BatchAugment(AugmentConfig(trivial_augment=True), (0.0,), (1.0,), seed=3).augment(batch)
    distinct = {tuple(img.flatten()[::97].round(decimals=3).tolist()) for img in out}
    assert len(distinct) > 8  # one op for the whole batch would give a single distinct image
    assert out.min() >= 0 and out.max() <= 1 and out.shape == batch.shape


def test_everything_on_is_repeatable_per_seed(xrays: torch.Tensor) -> None:
    cfg = AugmentConfig(
        hflip=0.5, vflip=0.5, rotate=10, brightness=0.2, contrast=0.2, trivial_augment=True, crop_scale=0.7
    )
    a = BatchAugment(cfg, (0.5,), (0.25,), seed=1)(xrays)
    b = BatchAugment(cfg, (0.5,), (0.25,), seed=1)(xrays)
    c = BatchAugment(cfg, (0.5,), (0.25,), seed=2)(xrays)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.dtype == torch.float32 and a.shape == xrays.shape and torch.isfinite(a).all()


def test_cpu_augmentation_runs_on_one_thread_and_gives_the_batches_of_any_thread_count(xrays: torch.Tensor) -> None:
    """One intra-op thread while augmenting (a busy 2-core machine stalls every multi-threaded small op), the
    caller's thread count back afterwards for the model step, and bitwise the batches a 2-thread run gives."""
    cfg = AugmentConfig(hflip=0.5, rotate=10, brightness=0.2, contrast=0.2, trivial_augment=True, crop_scale=0.7)
    rgb = torch.cat([xrays, xrays.flip(-1), xrays.flip(-2)], dim=1)  # three different channels
    threads_seen: list[int] = []

    class Spy(BatchAugment):
        def augment(self, x: torch.Tensor) -> torch.Tensor:
            threads_seen.append(torch.get_num_threads())
            return super().augment(x)

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        spy = Spy(cfg, (0.5,) * 3, (0.25,) * 3, seed=3)
        ours = [spy(rgb) for _ in range(2)]
        assert threads_seen == [1, 1] and torch.get_num_threads() == 2
        prep = BatchAugment(cfg, (0.5,) * 3, (0.25,) * 3, seed=3)
        two_threads = [prep.normalise(prep.augment(rgb)) for _ in range(2)]  # the same ops, on two threads
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(ours, two_threads))


def test_grey_images_decoded_as_rgb_are_augmented_as_one_channel_with_the_same_result(xrays: torch.Tensor) -> None:
    """An X-ray decoded as RGB has three equal channels: augmenting one and widening it gives the 3-channel result
    (to float rounding) for a third of the work; a batch with any colour in it takes the full path."""
    cfg = AugmentConfig(hflip=0.5, rotate=10, brightness=0.2, contrast=0.2, trivial_augment=True, crop_scale=0.7)
    channels_seen: list[int] = []

    class Spy(BatchAugment):
        def augment(self, x: torch.Tensor) -> torch.Tensor:
            channels_seen.append(x.shape[1])
            return super().augment(x)

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    grey_rgb = xrays.expand(-1, 3, -1, -1).contiguous()
    spy, full = Spy(cfg, mean, std, seed=5), BatchAugment(cfg, mean, std, seed=5)
    for _ in range(3):
        out = spy(grey_rgb)
        assert out.shape == grey_rgb.shape and out.dtype == torch.float32
        assert torch.allclose(out, full.normalise(full.augment(grey_rgb)), atol=1e-5)
    assert channels_seen == [1, 1, 1]
    tinted = grey_rgb.clone()
    tinted[0, 2, 0, 0] ^= 1  # one pixel of one image differs in one channel
    spy(tinted)
    assert channels_seen[-1] == 3


def test_evaluation_only_normalises(xrays: torch.Tensor) -> None:
    cfg = AugmentConfig(hflip=1.0, rotate=10)
    prep = BatchAugment(cfg, (0.4,), (0.2,))
    out = prep(xrays, train=False)
    assert torch.allclose(out, (xrays.float() / 255 - 0.4) / 0.2, atol=1e-5)


def test_three_channel_batches(xrays: torch.Tensor) -> None:
    rgb = xrays.expand(-1, 3, -1, -1).contiguous()
    cfg = AugmentConfig(hflip=0.5, trivial_augment=True, brightness=0.1, contrast=0.1)
    out = BatchAugment(cfg, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))(rgb)
    assert out.shape == rgb.shape and torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("hflip", 1.5, "hflip is a probability"), ("rotate", -1, "rotate"), ("crop_scale", 0.0, "crop_scale")],
)
def test_bad_strengths_name_the_field(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AugmentConfig(**{field: value})


def test_our_trivial_augment_table_is_torchvisions_wide_space() -> None:
    """Names, order, signs and the largest magnitude of every linear op match torchvision's TrivialAugmentWide."""
    from torchvision.transforms import TrivialAugmentWide

    space = TrivialAugmentWide()._augmentation_space(31)
    assert [op.name.replace("_", "") for op in TA_TABLE] == [k.lower() for k in space]
    for op, (magnitudes, signed) in zip(TA_TABLE, space.values()):
        assert op.signed == signed, op.name
        if op.name not in ("posterize", "solarize"):  # those two count bits and grey levels; see _trivial_photometric
            assert op.max_magnitude == pytest.approx(float(magnitudes.max()), abs=1e-6), op.name


def test_trial_config_carries_every_augmentation_field_and_the_on_rule() -> None:
    """Each augmentation field set on a TrialConfig turns on exactly that op, in the trainable and in the reports."""
    off = TrialConfig()
    assert not off.augment.active and augment_ops_on(off.to_dict()) == []
    strengths = {"hflip": 0.5, "vflip": 0.5, "rotate": 10.0, "brightness": 0.2, "contrast": 0.2, "crop_scale": 0.5}
    for name in AUGMENT_OPS:
        cfg = TrialConfig(**{name: strengths.get(name, True)})
        assert cfg.augment.active, name
        assert getattr(cfg.augment, name) == getattr(cfg, name)
        assert augment_ops_on(cfg.to_dict()) == [name]
        assert augment_ops_on_in_report(pd.Series({f"config/{k}": v for k, v in cfg.to_dict().items()})) == [name]
    # Intensity standardisation is preprocessing, not augmentation.
    assert augment_ops_on(TrialConfig(intensity="equalize").to_dict()) == []
    # Values read back from trials.csv: text, NaN for a run that never recorded a field.
    read_back = {"hflip": "0.5", "trivial_augment": "True", "crop_scale": float("nan"), "rotate": None}
    assert augment_ops_on(read_back) == ["hflip", "trivial_augment"]
    assert AUGMENT_OPS["crop_scale"] == "crop_scale < 1" and AUGMENT_OPS["hflip"] == "hflip > 0"


def test_sharpness_and_the_warp_grid_match_torchvision(xrays: torch.Tensor) -> None:
    """The hand-written fast paths give what torchvision's own functions give on the same images."""
    x = xrays[:8].float() / 255
    prep = BatchAugment(AugmentConfig(trivial_augment=True), (0.0,), (1.0,))
    mag = torch.linspace(-1, 1, 8)
    ours = prep._trivial_photometric(x.clone(), torch.full((8,), TA_OPS.index("sharpness")), mag)
    theirs = torch.stack([TF.adjust_sharpness(img, 1 + float(m) * 0.99) for img, m in zip(x, mag)])
    assert torch.allclose(ours, theirs, atol=1e-5)
    theta = torch.randn(8, 3, 3)[:, :2, :]  # not contiguous, as _warp passes it
    reference = F.affine_grid(theta, [8, 1, 64, 80], align_corners=False)
    assert torch.allclose(_affine_grid(theta, 64, 80), reference, atol=1e-5)


def test_batches_come_in_the_requested_memory_format_with_the_same_values(xrays: torch.Tensor) -> None:
    """The trainer asks for channels-last batches (its model's layout): written so once, equal to the NCHW ones."""
    cfg = AugmentConfig(hflip=0.5, trivial_augment=True)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    rgb = torch.cat([xrays, xrays.flip(-1), xrays.flip(-2)], dim=1)
    for batch in (rgb, xrays.expand(-1, 3, -1, -1).contiguous()):
        for train in (True, False):
            nchw = BatchAugment(cfg, mean, std, seed=2)(batch, train=train)
            last = BatchAugment(cfg, mean, std, seed=2, memory_format=torch.channels_last)(batch, train=train)
            assert last.is_contiguous(memory_format=torch.channels_last) and nchw.is_contiguous()
            assert torch.allclose(nchw, last, atol=1e-6)
            reference = (batch.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
            if not train:
                assert torch.allclose(last, reference, atol=1e-5)
