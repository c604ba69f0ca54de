"""Training throughput of three input pipelines on the same model, resolution and images, in one process.

The images: by default ``../shared/data/fullres_sample`` beside the repository, 133 Kermany chest X-rays at the
scanner's resolution (a few hundred to about 2,200 pixels a side, mostly greyscale JPEGs): what a user's ``--data``
holds when it points at the Kaggle originals, and where decoding, not the model, is the seed pipeline's cost. The
train split (about 106 files) is cycled in order until an epoch holds ``--epoch-images`` (default 1,000) entries, so
an epoch is long enough to time; every arm trains on the same entries. ``--data trainables/demo_data/chest_xray``
measures the bundled 224-pixel demo set instead (1,253 training images, nothing cycled).

What it measures (training images per second, training phase only, validation excluded in every arm):

(a) ``seed_pipeline``: the seed projects' pipeline. ``torchvision.datasets.ImageFolder`` over the same files as (b)
    (the catalog's train split, with its 3-class labels), transforms ``Resize((s, s)) -> RandomHorizontalFlip() ->
    TrivialAugmentWide() -> ToTensor()`` on PIL images, and a ``DataLoader(batch_size, shuffle=True,
    num_workers=w)``. Every epoch decodes every JPEG again, at full size. ``w`` is probed over {0, 1, 2} (a short
    run of each, timed from the loader's creation so worker start-up counts, as it does every seed epoch) and the
    measured epochs use the fastest.
(b) ``ours``: ``trainables.train.train_trial`` with ``hflip=0.5, trivial_augment=True`` on the uint8 arrays that
    ``DataCatalog.prepare`` decoded once (per-image random augmentation done batched on tensors). The figure is
    the trial's own ``train_images_per_s``.
(c) ``compute_limit``: the same model, optimizer and training step on batches indexed straight out of the
    pre-decoded uint8 tensor, only ``.float() / 255``, no augmentation: the ceiling for any input pipeline.

The one-off decode that (b) relies on is timed separately, before the arms, at the benchmark's own image spec and at
every spec of ``--decode-profile`` (default ``cpu``: the specs a CPU search decodes before its first trial): the
pool cycled to ``--decode-images`` files (default 1,000) is decoded by ``trainables.cache.load_images`` into an
empty cache directory in a temporary folder (cold), then read back from that cache. One ``decode_once spec=...
cold_s_per_1000=... cached_s_per_1000=...`` line per spec. The JPEG files are in the OS page cache both times (the
index has just hashed them), so "cold" is decode work, not disk reads.

Why: decode-once plus batched tensor augmentation should make the input pipeline nearly free, so a trial runs at
close to the model's compute limit (``ratio_vs_compute_limit`` = ours / compute, goal >= 0.9) and much faster than
the seed pipeline (``ratio_vs_seed_pipeline`` = ours / seed, goal >= 1.8 on a 2-core CPU at 128x128). Note that
``ratio_vs_seed_pipeline`` can never exceed ``compute_limit / seed_pipeline``: where the seed's per-image work is
cheap (the demo JPEGs are already 224x224) and the model step is expensive, no input pipeline can beat the seed's by
much; on scanner-size files the seed pays a full-size decode for every image of every epoch.

Fairness: every arm trains the same model (default the seed recipe, ``tinyvgg`` hidden 10, 3 classes, batch 32,
Adam lr 1e-3) at the same size and channel count (default 3 = the RGB that ``ImageFolder`` loads; ``--channels 1``
adds ``Grayscale(1)`` in front of the seed transforms and makes our arrays grey), on the same images, one epoch
each. Each training step does forward, loss, ``zero_grad``, backward, ``step``, and reads the loss and the
predictions (as the seed loop and ours both do). Main-process compute uses ``torch.set_num_threads(2)``; DataLoader
workers compete with it for the same 2 cores, which is the seed's real situation. (a) and (c) train in the memory
format ``train_trial`` uses (read off the model of a short warm-up trial), so the arms differ only in how batches
are made: the ratios measure the input pipeline, not a faster training step.

Noise: the machine is shared, so the arms are interleaved one epoch at a time, in rounds (``--epochs`` rounds, the
order rotating each round), after warm-ups (a 3-batch trial for ours, 2 batches for compute, the worker probe for
the seed). Each arm's line is the median over its epochs; the two ratios on the last line are medians of the
per-round ratios (a round's arms run within a minute or two of each other, so a load change between rounds mostly
cancels; one inside a round does not). Single rounds swing by 30% either way on the shared development machine, so
the default is 9 rounds (about three minutes). The ``machine`` line prints the load average and ``OMP_WAIT_POLICY``, the
``end`` line the load at the end: compare runs only at similar load.

The command (a few minutes on the shared 2-core development CPU; run it under ``flock /work/cpu.lock`` there)::

    .venv/bin/python benchmarks/pipeline.py

``--quick`` is a ~30 s smoke run (1 round of 128-image epochs, a short worker probe, 133-file decodes); ``--data
DIR`` takes any Kaggle-layout folder and fails in one line if it is missing. The last line printed is
``ratio_vs_seed_pipeline=X.XX ratio_vs_compute_limit=Y.YY``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from spaces.profiles import PROFILES  # noqa: E402
from trainables.cache import ImageSpec, load_images  # noqa: E402
from trainables.data import DataCatalog, ImageSplit, PreparedData  # noqa: E402
from trainables.models import create_model  # noqa: E402
from trainables.train import train_trial  # noqa: E402

#: 133 Kermany chest X-rays at the scanner's resolution; the repository sits beside ``../shared``.
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "fullres_sample"
WORKER_CHOICES = (0, 1, 2)
ARMS = ("ours", "compute_limit", "seed_pipeline")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help=f"Kaggle-layout data folder (default {DEFAULT_DATA})"
    )
    p.add_argument("--task", default="pneumonia3class", help="labelling task (default pneumonia3class)")
    p.add_argument("--model", default="tinyvgg", help="registered model name (default tinyvgg, the seed recipe)")
    p.add_argument("--size", type=int, default=128, help="square image side in pixels (default 128)")
    p.add_argument("--channels", type=int, choices=(1, 3), default=3, help="1 grey or 3 RGB in every arm (default 3)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument(
        "--epochs",
        type=int,
        default=9,
        help="measured epochs per arm, one per round (default 9: single rounds swing +-30%% on a shared machine)",
    )
    p.add_argument("--probe-batches", type=int, default=12, help="batches per DataLoader worker-count probe")
    p.add_argument("--max-images", type=int, default=0, help="train on a random subset of this many images (0: all)")
    p.add_argument(
        "--epoch-images",
        type=int,
        default=1000,
        help="cycle the train split until an epoch holds this many images (default 1000; 0: each image once)",
    )
    p.add_argument(
        "--decode-images",
        type=int,
        default=1000,
        help="images per timed one-off decode, the pool cycled (default 1000)",
    )
    p.add_argument(
        "--decode-profile",
        choices=(*PROFILES.list(), "none"),
        default="cpu",
        help="time the one-off decode at this profile's image specs, besides the benchmark's own (default cpu)",
    )
    p.add_argument("--threads", type=int, default=2, help="torch threads in the main process (default 2)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="~30 s smoke run: 1 round of 128-image epochs, a short probe, 133-file decodes",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.max_images = args.max_images or 256
        args.epoch_images, args.decode_images = min(args.epoch_images, 128), min(args.decode_images, 133)
        args.epochs, args.probe_batches = 1, 3
    if args.epochs < 1 or args.probe_batches < 2 or min(args.max_images, args.epoch_images) < 0:
        p.error("--epochs must be >= 1, --probe-batches >= 2, --max-images and --epoch-images >= 0")
    if args.decode_images < 1:
        p.error(f"--decode-images must be >= 1, got {args.decode_images}")
    if not args.data.is_dir():
        p.exit(2, f"{p.prog}: error: no data folder at {args.data} (clone beside ../shared, or pass --data DIR)\n")
    return args


# -- shared training step -----------------------------------------------------------------------------------------


def _model_and_optimizer(args: argparse.Namespace, num_classes: int) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = create_model(
        args.model, in_channels=args.channels, num_classes=num_classes, image_size=(args.size, args.size)
    )
    model.train()
    return model, torch.optim.Adam(model.parameters(), lr=args.lr)


def _step(
    model: nn.Module, opt: torch.optim.Optimizer, loss_fn: nn.Module, xb: torch.Tensor, yb: torch.Tensor
) -> tuple[float, int]:
    logits = model(xb)
    loss = loss_fn(logits, yb)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach()), int((logits.detach().argmax(1) == yb).sum())


# -- (b) ours -----------------------------------------------------------------------------------------------------


def warm_up_ours(args: argparse.Namespace, data: PreparedData) -> bool:
    """A short ``train_trial`` (3 batches), so the measured epochs pay no first-call costs; returns whether the trial
    trained channels-last, which the other two arms then mirror (same training step in every arm)."""
    n = min(3 * args.batch_size, len(data.train))
    small = dataclasses.replace(data, train=ImageSplit(data.train.x[:n], data.train.y[:n]))
    return run_ours(args, small, seed=0)[1]


def run_ours(args: argparse.Namespace, data: PreparedData, seed: int) -> tuple[float, bool]:
    """One epoch of ``train_trial``: its own ``train_images_per_s``, and whether it trained channels-last (read off
    the returned model's conv weights)."""
    config = {
        "model": args.model,
        "batch_size": args.batch_size,
        "image_size": str(args.size),
        "channels": args.channels,
        "hflip": 0.5,
        "trivial_augment": True,
        "optimizer": "adam",
        "lr": args.lr,
        "epochs": 1,
        "seed": seed,
    }
    result = train_trial(config, data, device="cpu")
    conv = next((p for p in result.model.parameters() if p.dim() == 4), None)
    channels_last = conv is not None and conv.is_contiguous(memory_format=torch.channels_last)
    channels_last = channels_last and not conv.is_contiguous()
    return float(result.history[0]["train_images_per_s"]), channels_last


# -- (c) compute limit --------------------------------------------------------------------------------------------


def run_compute(args: argparse.Namespace, data: PreparedData, seed: int, channels_last: bool) -> float:
    """Images/s of one epoch of the bare training step on pre-decoded uint8 batches (after warm-up batches)."""
    model, opt = _model_and_optimizer(args, len(data.classes))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    loss_fn = nn.CrossEntropyLoss()
    x, y = torch.from_numpy(data.train.x), torch.from_numpy(np.asarray(data.train.y))
    n, bs = len(y), args.batch_size

    def batch(idx: torch.Tensor | slice) -> torch.Tensor:
        return x[idx].float().div_(255.0).contiguous(memory_format=fmt)

    for i in range(min(2, -(-n // bs))):  # warm-up
        _step(model, opt, loss_fn, batch(slice(i * bs, (i + 1) * bs)), y[i * bs : (i + 1) * bs])
    order = torch.from_numpy(np.random.default_rng(seed).permutation(n))
    t0 = time.perf_counter()
    for start in range(0, n, bs):
        idx = order[start : start + bs]
        _step(model, opt, loss_fn, batch(idx), y[idx])
    return n / (time.perf_counter() - t0)


# -- (a) the seed projects' pipeline ------------------------------------------------------------------------------


def seed_dataset(args: argparse.Namespace, paths: list[str], labels: list[int], root: Path) -> datasets.ImageFolder:
    """The seed's ImageFolder and transforms, restricted to ``paths`` with our 3-class ``labels``."""
    steps: list[Callable] = [transforms.Grayscale(num_output_channels=1)] if args.channels == 1 else []
    steps += [
        transforms.Resize((args.size, args.size)),
        transforms.RandomHorizontalFlip(),
        transforms.TrivialAugmentWide(),
        transforms.ToTensor(),
    ]
    train_dir = root / "train" if (root / "train").is_dir() else root
    ds = datasets.ImageFolder(str(train_dir), transform=transforms.Compose(steps))
    # Same files and labels as our train split (ImageFolder alone would see the NORMAL/PNEUMONIA folders only).
    ds.samples = list(zip(paths, labels))
    ds.imgs = ds.samples
    ds.targets = list(labels)
    return ds


def _seed_loader(ds: datasets.ImageFolder, batch_size: int, workers: int, seed: int) -> DataLoader:
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers, generator=g)


def run_seed(
    args: argparse.Namespace,
    ds: datasets.ImageFolder,
    num_classes: int,
    workers: int,
    seed: int,
    channels_last: bool,
    max_batches: int | None = None,
) -> float:
    """Images/s of one seed epoch (or ``max_batches``), timed from creating the loader's iterator, so worker
    start-up counts as it does in every epoch of the seed (no ``persistent_workers``)."""
    model, opt = _model_and_optimizer(args, num_classes)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    loss_fn = nn.CrossEntropyLoss()
    loader = _seed_loader(ds, args.batch_size, workers, seed)
    seen = 0
    t0 = time.perf_counter()
    for i, (xb, yb) in enumerate(loader):
        _step(model, opt, loss_fn, xb.contiguous(memory_format=fmt), yb)
        seen += len(yb)
        if max_batches is not None and i + 1 >= max_batches:
            break
    return seen / (time.perf_counter() - t0)


def probe_seed_workers(
    args: argparse.Namespace, ds: datasets.ImageFolder, num_classes: int, channels_last: bool
) -> tuple[int, dict[int, float]]:
    """A short run per worker count; the fastest is the seed pipeline's best configuration on this machine."""
    rates = {
        w: run_seed(args, ds, num_classes, w, 100 + w, channels_last, max_batches=args.probe_batches)
        for w in WORKER_CHOICES
    }
    return max(rates, key=lambda w: rates[w]), rates


# -- data ---------------------------------------------------------------------------------------------------------


def prepare_data(args: argparse.Namespace) -> tuple[DataCatalog, PreparedData]:
    """Index the folder and decode its pool once at the benchmark's spec (into a temporary cache: untimed here)."""
    with tempfile.TemporaryDirectory(prefix="cxr-bench-cache-") as tmp:
        catalog = DataCatalog(args.data, args.task, cache_directory=Path(tmp))
        return catalog, catalog.prepare(ImageSpec(args.size, args.size, args.channels))


def decode_specs(args: argparse.Namespace) -> list[ImageSpec]:
    """The benchmark's own spec, then every spec of ``--decode-profile`` (the ones a search decodes up front)."""
    specs = [ImageSpec(args.size, args.size, args.channels)]
    if args.decode_profile != "none":
        specs += [s for s in PROFILES.get(args.decode_profile).image_specs() if s not in specs]
    return specs


def time_decode(catalog: DataCatalog, spec: ImageSpec, n: int) -> tuple[float, float]:
    """Seconds per 1,000 images of the one-off decode at ``spec``: cold (an empty cache directory) and from the disk
    cache. The pool is cycled to ``n`` files so the decode runs as it would on an ``n``-image set (``load_images``,
    one process per CPU from 256 files up). The JPEGs themselves sit in the OS page cache in both cases."""
    reps = np.arange(max(n, len(catalog.index.paths))) % len(catalog.index.paths)
    paths = [catalog.index.paths[i] for i in reps]
    hashes = [catalog.index.hashes[i] for i in reps]
    with tempfile.TemporaryDirectory(prefix="cxr-bench-decode-") as tmp:
        t0 = time.perf_counter()
        load_images(paths, hashes, spec, directory=Path(tmp))
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        if not load_images(paths, hashes, spec, directory=Path(tmp)).from_cache:
            raise RuntimeError(f"the second decode at {spec.label()} missed the cache it had just written")
        cached = time.perf_counter() - t0
    return cold * 1000 / len(paths), cached * 1000 / len(paths)


def describe_images(paths: list[str]) -> str:
    """Side lengths and modes of the source files (headers only), for the ``data`` line."""
    sizes, modes = [], {}
    for path in paths:
        with Image.open(path) as im:
            sizes.append(im.size)
            modes[im.mode] = modes.get(im.mode, 0) + 1
    sides = np.array(sizes)
    megapixels = float(np.median(sides.prod(1))) / 1e6
    return (
        f"sides={sides.min()}-{sides.max()}px median_megapixels={megapixels:.2f} "
        + "modes="
        + ",".join(f"{m}:{k}" for m, k in sorted(modes.items()))
    )


def train_files(catalog: DataCatalog, prepared: PreparedData) -> tuple[list[str], list[int]]:
    """Paths and labels of the train split in the order of ``prepared.train`` (broken files left out, as there)."""
    broken = set(prepared.broken)
    keep = [int(i) for i in catalog.train_idx if catalog.index.paths[i] not in broken]
    paths = [catalog.index.paths[i] for i in keep]
    labels = [int(catalog.index.labels[i]) for i in keep]
    if labels != prepared.train.y.tolist():
        raise RuntimeError("the seed file list does not match the prepared train split")
    return paths, labels


def subset(
    prepared: PreparedData, paths: list[str], labels: list[int], n: int
) -> tuple[PreparedData, list[str], list[int]]:
    """A random ``n``-image subset of the train split (same images in every arm); validation (untimed) cut to match."""
    rng = np.random.default_rng(0)
    sel = np.sort(rng.permutation(len(labels))[:n])
    keep_val = np.sort(rng.permutation(len(prepared.val))[: max(64, n // 4)])
    train = ImageSplit(np.ascontiguousarray(prepared.train.x[sel]), prepared.train.y[sel])
    val = ImageSplit(np.ascontiguousarray(prepared.val.x[keep_val]), prepared.val.y[keep_val])
    return dataclasses.replace(prepared, train=train, val=val), [paths[i] for i in sel], [labels[i] for i in sel]


def cycle(
    prepared: PreparedData, paths: list[str], labels: list[int], n: int
) -> tuple[PreparedData, list[str], list[int]]:
    """The train split repeated in order until it holds ``n`` images (the last pass cut short), so an epoch of a
    133-image sample is long enough to time; every arm then trains on the same ``n`` entries, and the seed's loader
    decodes every one of them again, as it does every epoch."""
    if n <= len(labels):
        return prepared, paths, labels
    idx = np.arange(n) % len(labels)
    train = ImageSplit(np.ascontiguousarray(prepared.train.x[idx]), prepared.train.y[idx])
    return dataclasses.replace(prepared, train=train), [paths[i] for i in idx], [labels[i] for i in idx]


# -- main ---------------------------------------------------------------------------------------------------------


def _fmt(rates: list[float]) -> str:
    return "[" + ", ".join(f"{r:.1f}" for r in rates) + "]"


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    torch.set_num_threads(args.threads)
    wall, load_start = time.perf_counter(), os.getloadavg()[0]

    catalog, prepared = prepare_data(args)
    paths, labels = train_files(catalog, prepared)
    n_files = len(labels)
    if 0 < args.max_images < len(labels):
        prepared, paths, labels = subset(prepared, paths, labels, args.max_images)
        n_files = len(labels)
    prepared, paths, labels = cycle(prepared, paths, labels, args.epoch_images)
    num_classes = len(prepared.classes)
    ds = seed_dataset(args, paths, labels, catalog.root)
    colour = "grey" if args.channels == 1 else "RGB"
    print(
        f"data {catalog.root} pool_images={len(catalog.index.paths)} {describe_images(catalog.index.paths)} "
        f"broken={len(prepared.broken)}",
        flush=True,
    )
    print(
        f"setup model={args.model} size={args.size}x{args.size} channels={args.channels} ({colour}, all arms) "
        f"batch_size={args.batch_size} optimizer=adam lr={args.lr:g} classes={num_classes} "
        f"train_images={len(labels)} (train files={n_files}, cycled) rounds={args.epochs} "
        f"(one epoch per arm per round) "
        f"metric=training-phase images/s (validation excluded in every arm)",
        flush=True,
    )
    print(
        f"machine cpus={len(os.sched_getaffinity(0))} torch_threads={torch.get_num_threads()} "
        f"load_1min={load_start:.2f} OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')} "
        f"torch={torch.__version__}",
        flush=True,
    )
    for spec in decode_specs(args):
        cold, cached = time_decode(catalog, spec, args.decode_images)
        print(
            f"decode_once spec={spec.label()} images={max(args.decode_images, len(catalog.index.paths))} "
            f"cold_s_per_1000={cold:.2f} cached_s_per_1000={cached:.3f}",
            flush=True,
        )

    channels_last = warm_up_ours(args, prepared)
    best_w, probe = probe_seed_workers(args, ds, num_classes, channels_last)
    print(
        "seed_probe " + " ".join(f"num_workers={w}:{r:.1f}" for w, r in probe.items()) + f" -> best {best_w}",
        flush=True,
    )
    rates: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for r in range(args.epochs):
        for arm in ARMS[r % len(ARMS) :] + ARMS[: r % len(ARMS)]:  # the order rotates each round
            if arm == "ours":
                ips = run_ours(args, prepared, seed=r)[0]
            elif arm == "compute_limit":
                ips = run_compute(args, prepared, seed=r, channels_last=channels_last)
            else:
                ips = run_seed(args, ds, num_classes, best_w, seed=r, channels_last=channels_last)
            rates[arm].append(ips)
        print(f"round {r + 1}: " + " ".join(f"{a}={rates[a][-1]:.1f}" for a in ARMS), flush=True)

    seed, ours, compute = rates["seed_pipeline"], rates["ours"], rates["compute_limit"]
    layout = "channels_last" if channels_last else "NCHW"
    print(
        f"seed_pipeline images_per_s={statistics.median(seed):.1f} (num_workers={best_w}) epochs={_fmt(seed)} "
        f"memory_format={layout}"
    )
    print(f"ours images_per_s={statistics.median(ours):.1f} epochs={_fmt(ours)} memory_format={layout}")
    print(f"compute_limit images_per_s={statistics.median(compute):.1f} epochs={_fmt(compute)} memory_format={layout}")
    print(f"end total_wall_seconds={time.perf_counter() - wall:.0f} load_1min_end={os.getloadavg()[0]:.2f}")
    x = statistics.median(o / s for o, s in zip(ours, seed))
    y = statistics.median(o / c for o, c in zip(ours, compute))
    print(f"ratio_vs_seed_pipeline={x:.2f} ratio_vs_compute_limit={y:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
