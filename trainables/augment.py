"""Batched data augmentation on uint8 image tensors, on the trial's device, with per-image random parameters.

``torchvision.transforms.v2`` applied to a batch draws *one* set of random parameters for the whole batch (every image
flipped or none), which is not augmentation. So this module draws parameters per image and applies them with batched
tensor maths: every geometric op (flips, random resized crop, rotation, TrivialAugmentWide's shear/translate/rotate)
folds into one affine matrix per image and one ``grid_sample`` call (flips are exact pixel selections);
photometric ops are broadcast per image;
``torchvision.transforms.v2.functional.equalize`` handles histogram equalisation, which is per image by nature.

Rotations sample outside the image with reflection padding, so a rotated X-ray has no black corners (a failure one
seed project ran into with zero fill).

No Python loop runs per image: the cost is a handful of tensor ops per batch. A 3-channel batch whose channels are
copies of one grey image (an X-ray decoded as RGB) is augmented as one channel and widened when normalised: every op
keeps equal channels equal, so only float rounding differs, at a third of the work. On the CPU those ops run on one
intra-op thread (:func:`one_cpu_thread`): a second thread gains little on ops this small, and on a busy machine a
multi-threaded op waits for whichever of its threads the OS has descheduled. The results are bitwise the same.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from trainables.augment_config import AugmentConfig
from trainables.intensity import standardise

__all__ = ["TA_OPS", "TA_TABLE", "AugmentConfig", "BatchAugment", "TAOp", "one_cpu_thread"]


class TAOp(NamedTuple):
    """One TrivialAugmentWide op: whether its magnitude takes a random sign, whether it moves pixels (an affine
    warp), and its largest magnitude in the "wide" space (degrees, pixels at 224 px, shear, factor - 1, bits, or
    the [0, 1] solarize threshold)."""

    name: str
    signed: bool
    geometric: bool
    max_magnitude: float


#: TrivialAugmentWide's operations (Müller & Hutter 2021), in torchvision's order.
TA_TABLE = (
    TAOp("identity", signed=False, geometric=False, max_magnitude=0.0),
    TAOp("shear_x", signed=True, geometric=True, max_magnitude=0.99),
    TAOp("shear_y", signed=True, geometric=True, max_magnitude=0.99),
    TAOp("translate_x", signed=True, geometric=True, max_magnitude=32.0),
    TAOp("translate_y", signed=True, geometric=True, max_magnitude=32.0),
    TAOp("rotate", signed=True, geometric=True, max_magnitude=135.0),
    TAOp("brightness", signed=True, geometric=False, max_magnitude=0.99),
    TAOp("color", signed=True, geometric=False, max_magnitude=0.99),
    TAOp("contrast", signed=True, geometric=False, max_magnitude=0.99),
    TAOp("sharpness", signed=True, geometric=False, max_magnitude=0.99),
    TAOp("posterize", signed=False, geometric=False, max_magnitude=6.0),
    TAOp("solarize", signed=False, geometric=False, max_magnitude=1.0),
    TAOp("autocontrast", signed=False, geometric=False, max_magnitude=0.0),
    TAOp("equalize", signed=False, geometric=False, max_magnitude=0.0),
)
TA_OPS = tuple(op.name for op in TA_TABLE)
_TA_GEOMETRIC = frozenset(op.name for op in TA_TABLE if op.geometric)
_TA_MAX = {op.name: op.max_magnitude for op in TA_TABLE}
_TA_SIGNED = torch.tensor([op.signed for op in TA_TABLE])
_TA_IS_GEOMETRIC = torch.tensor([op.geometric for op in TA_TABLE])


@contextmanager
def one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run the enclosed CPU tensor ops on one intra-op thread, then restore the thread count (no-op off the CPU).

    A batch's augmentation is some hundred element-wise ops of about a millisecond each. With two or more threads,
    each op is a parallel region that ends only when every thread has done its share: when other processes keep
    the cores busy, one descheduled thread stalls the region for an OS time slice, which made augmentation many times
    slower than on one thread (README, "Input pipeline"). Switching the count costs well under a microsecond.
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) * (hi - lo) + lo


def grey(x: torch.Tensor) -> torch.Tensor:
    """Float batch -> its luminance (ITU-R 601 weights, as PIL's "L"), one channel; grey input as it is."""
    if x.shape[1] == 1:
        return x
    w = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``b + factor * (a - b)`` per image: factor 1 keeps ``a``, 0 gives ``b``."""
    return (b + factor.view(-1, 1, 1, 1) * (a - b)).clamp_(0.0, 1.0)


def _sharpen_blur(x: torch.Tensor) -> torch.Tensor:
    """PIL's SMOOTH kernel (3x3 ones, centre 5, over 13), borders untouched: the degenerate image that
    ImageEnhance.Sharpness blends with. A 3x3 box sum plus 4 x centre, which is the kernel without a grouped conv."""
    out = x.clone()
    box = F.avg_pool2d(x, 3, stride=1)  # the interior: (H-2) x (W-2)
    out[..., 1:-1, 1:-1] = (box * 9.0 + x[..., 1:-1, 1:-1] * 4.0) / 13.0
    return out


def _affine_grid(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``F.affine_grid(theta, (n, c, h, w), align_corners=False)`` by broadcasting: the library's batched matmul
    with an inner dimension of 3 costs more than the warp itself on the CPU."""
    dev, dt = theta.device, theta.dtype
    xs = (torch.arange(w, device=dev, dtype=dt) * 2 + 1) / w - 1  # pixel centres in [-1, 1]
    ys = ((torch.arange(h, device=dev, dtype=dt) * 2 + 1) / h - 1).view(h, 1)
    n = theta.shape[0]
    along_x = theta[:, :, 0].reshape(n, 1, 1, 2) * xs.view(1, 1, w, 1)  # n x 1 x w x (gx, gy)
    along_y = theta[:, :, 1].reshape(n, 1, 1, 2) * ys.view(1, h, 1, 1) + theta[:, :, 2].reshape(n, 1, 1, 2)
    return along_x + along_y  # n x h x w x 2, written once and contiguous


def _grey_copies(x: torch.Tensor) -> bool:
    """True for a 3-channel batch whose channels are all equal (grey images decoded as RGB)."""
    return x.shape[1] == 3 and bool(torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2]))


class BatchAugment:
    """Turns a uint8 batch (B x C x H x W, on any device) into a normalised float batch, augmenting in training.

    ``mean`` and ``std`` are per-channel statistics in [0, 1] units. ``seed`` makes the augmentation repeatable.
    ``intensity`` (``trainables.intensity``) standardises each image first, in training and evaluation alike.
    ``memory_format`` is the layout of the batches it returns: the model's, so the batch is written once, in place.
    """

    def __init__(
        self,
        config: AugmentConfig,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        device: torch.device | str = "cpu",
        seed: int = 0,
        intensity: str = "none",
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> None:
        standardise(torch.zeros(1, 1, 2, 2, dtype=torch.uint8), intensity)  # validates the name
        self.config = config
        self.intensity = intensity
        self.device = torch.device(device)
        self.mean = torch.tensor(mean, device=self.device, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=self.device, dtype=torch.float32).view(1, -1, 1, 1)
        self.memory_format = memory_format
        # (x - mean) / std as one multiply-add: x * scale + shift (for uint8 input scale includes the / 255).
        self._scale, self._shift = 1.0 / self.std, -self.mean / self.std
        self._scale_u8 = self._scale / 255.0
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])

    def normalise(self, x: torch.Tensor, owned: bool = False) -> torch.Tensor:
        """uint8 or [0, 1] float -> (x - mean) / std, float32, in ``memory_format``; a one-channel ``x`` with
        three-channel statistics is widened to three channels. ``owned``: ``x`` is a float batch nobody else holds,
        so it may be overwritten."""
        scale = self._scale_u8 if x.dtype == torch.uint8 else self._scale
        n, c, h, w = x.shape
        channels = max(c, self.mean.shape[1])
        if c == channels and x.is_contiguous(memory_format=self.memory_format):
            y = x.float() if x.dtype == torch.uint8 else (x if owned else x.clone())
            return y.mul_(scale).add_(self._shift)
        # Widening or changing the layout: one pass that writes the result where it belongs.
        out = torch.empty((n, channels, h, w), device=x.device, dtype=torch.float32, memory_format=self.memory_format)
        return torch.addcmul(self._shift, x.float(), scale, out=out)

    def __call__(self, x: torch.Tensor, train: bool = True) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        with one_cpu_thread(self.device):
            if self.intensity != "none":
                x = standardise(x, self.intensity)
            if not train or not self.config.active:
                return self.normalise(x)
            if _grey_copies(x) and self.mean.shape[1] == 3:
                return self.normalise(self.augment(x[:, :1]), owned=True)  # widened back to 3 channels here
            return self.normalise(self.augment(x), owned=True)

    # -- the augmentation proper, in [0, 1] float ------------------------------------------------------------------
    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 batch -> augmented float batch in [0, 1] (not normalised), always a new tensor."""
        cfg, g = self.config, self.generator
        n, _, h, w = x.shape
        ta_op = torch.randint(len(TA_OPS), (n,), generator=g, device=self.device) if cfg.trivial_augment else None
        ta_mag = torch.rand(n, generator=g, device=self.device) if cfg.trivial_augment else None
        if ta_mag is not None:  # random sign for the signed ops
            ta_sign = torch.where(torch.rand(n, generator=g, device=self.device) < 0.5, -1.0, 1.0)
            signed = _TA_SIGNED.to(self.device)[ta_op]
            ta_mag = torch.where(signed, ta_mag * ta_sign, ta_mag)

        # Flips move whole pixels, so they run on the uint8 batch (a quarter of the bytes) before it becomes float;
        # every step below then works on this new float tensor in place where it can.
        x = self._flips(x)
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float().div(255.0)  # a new tensor either way
        if cfg.rotate > 0 or cfg.crop_scale < 1.0:
            x = self._warp(x, ta_op, ta_mag)
        elif ta_op is not None:  # only the images that drew a geometric TrivialAugment op need a warp
            geo = _TA_IS_GEOMETRIC.to(self.device)[ta_op]
            idx = geo.nonzero().squeeze(1)
            if idx.numel():
                x.index_copy_(0, idx, self._warp(x.index_select(0, idx), ta_op[idx], ta_mag[idx]))
        if ta_op is not None:
            x = self._trivial_photometric(x, ta_op, ta_mag)
        if cfg.brightness > 0:
            x = (x * _uniform(n, 1 - cfg.brightness, 1 + cfg.brightness, g, self.device).view(-1, 1, 1, 1)).clamp_(0, 1)
        if cfg.contrast > 0:
            f = _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, g, self.device)
            x = _blend(x, grey(x).mean(dim=(1, 2, 3), keepdim=True).expand_as(x), f)
        return x

    def _flips(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image flips by selection, not resampling: exact pixels and far cheaper than a warp."""
        cfg, g, n = self.config, self.generator, x.shape[0]
        for p, dim in ((cfg.hflip, -1), (cfg.vflip, -2)):
            if p > 0:
                idx = (torch.rand(n, generator=g, device=self.device) < p).nonzero().squeeze(1)
                x = x.index_copy(0, idx, x.index_select(0, idx).flip(dim))  # only the drawn images move
        return x

    def _warp(self, x: torch.Tensor, ta_op: torch.Tensor | None, ta_mag: torch.Tensor | None) -> torch.Tensor:
        """One affine matrix per image (output pixel -> input pixel, in pixel units), one grid_sample for all."""
        cfg, g, dev = self.config, self.generator, self.device
        n, _, h, w = x.shape
        eye = torch.eye(3, device=dev).expand(n, 3, 3).clone()
        m = eye.clone()

        def rotation(deg: torch.Tensor) -> torch.Tensor:
            r = eye.clone()
            a = deg * (math.pi / 180.0)
            r[:, 0, 0], r[:, 0, 1], r[:, 1, 0], r[:, 1, 1] = a.cos(), -a.sin(), a.sin(), a.cos()
            return r

        if cfg.crop_scale < 1.0:
            area = _uniform(n, cfg.crop_scale, 1.0, g, dev)
            log_r = _uniform(n, math.log(3 / 4), math.log(4 / 3), g, dev)
            cw = (area * log_r.exp()).sqrt().clamp(max=1.0)
            ch = (area / log_r.exp()).sqrt().clamp(max=1.0)
            c = eye.clone()
            c[:, 0, 0], c[:, 1, 1] = cw, ch
            c[:, 0, 2] = (torch.rand(n, generator=g, device=dev) * 2 - 1) * (1 - cw) * (w / 2)
            c[:, 1, 2] = (torch.rand(n, generator=g, device=dev) * 2 - 1) * (1 - ch) * (h / 2)
            m = m @ c
        if cfg.rotate > 0:
            m = m @ rotation(_uniform(n, -cfg.rotate, cfg.rotate, g, dev))
        if ta_op is not None and ta_mag is not None:
            t = eye.clone()
            is_op = {op: (ta_op == TA_OPS.index(op)).float() for op in _TA_GEOMETRIC}
            t[:, 0, 1] = is_op["shear_x"] * ta_mag * _TA_MAX["shear_x"]
            t[:, 1, 0] = is_op["shear_y"] * ta_mag * _TA_MAX["shear_y"]
            t[:, 0, 2] = is_op["translate_x"] * ta_mag * _TA_MAX["translate_x"] * (w / 224.0)
            t[:, 1, 2] = is_op["translate_y"] * ta_mag * _TA_MAX["translate_y"] * (h / 224.0)
            m = m @ t @ rotation(is_op["rotate"] * ta_mag * _TA_MAX["rotate"])
        # Pixel units about the centre -> grid_sample's [-1, 1] units: theta = S^-1 M S.
        s = torch.diag(torch.tensor([w / 2, h / 2, 1.0], device=dev))
        s_inv = torch.diag(torch.tensor([2 / w, 2 / h, 1.0], device=dev))
        theta = (s_inv @ m @ s)[:, :2, :]
        grid = _affine_grid(theta, h, w)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    def _trivial_photometric(self, x: torch.Tensor, ta_op: torch.Tensor, ta_mag: torch.Tensor) -> torch.Tensor:
        """TrivialAugmentWide's colour ops, each applied to the images that drew it, with their own magnitude.

        Writes into ``x``: every image drew exactly one op, so no op reads an image another op has written."""
        for k, op in enumerate(TA_OPS):
            if op == "identity" or op in _TA_GEOMETRIC:
                continue
            idx = (ta_op == k).nonzero().squeeze(1)
            if idx.numel() == 0:
                continue
            xi, mag = x.index_select(0, idx), ta_mag.index_select(0, idx)
            mag = mag * _TA_MAX[op]
            if op == "brightness":
                yi = (xi * (1 + mag).view(-1, 1, 1, 1)).clamp(0, 1)
            elif op == "color":
                yi = _blend(xi, grey(xi).expand_as(xi), 1 + mag)
            elif op == "contrast":
                yi = _blend(xi, grey(xi).mean(dim=(1, 2, 3), keepdim=True).expand_as(xi), 1 + mag)
            elif op == "sharpness":
                yi = _blend(xi, _sharpen_blur(xi), 1 + mag)
            elif op == "posterize":
                bits = 8 - mag.round()  # 8 .. 2 bits, as torchvision's wide space
                step = (2 ** (8 - bits)).view(-1, 1, 1, 1)
                yi = torch.floor(xi * 255 / step) * step / 255
            elif op == "solarize":
                thr = (1.0 - mag).view(-1, 1, 1, 1)
                yi = torch.where(xi >= thr, 1.0 - xi, xi)
            elif op == "autocontrast":
                lo = xi.amin(dim=(2, 3), keepdim=True)
                hi = xi.amax(dim=(2, 3), keepdim=True)
                yi = torch.where(hi > lo, (xi - lo) / (hi - lo).clamp(min=1e-6), xi)
            else:  # equalize: a per-image histogram, which torchvision computes batched
                yi = TF.equalize((xi * 255).round().to(torch.uint8)).float() / 255
            x.index_copy_(0, idx, yi)
        return x
