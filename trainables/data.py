"""One data folder: indexed once, split once, decoded once per image spec, when that spec is first asked for.

``DataCatalog`` holds the patient-level split of one data folder and, per :class:`ImageSpec`, the decoded uint8
arrays of each split. Outside Ray it decodes a spec on first use and caches it to disk. In a search the catalog lives
in a spec registry (:mod:`trainables.spec_store`) that decodes each spec on the first trial's request, over Ray tasks,
and keeps it as its own object in Ray's object store; trials receive a handle, never the catalog's arrays.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trainables.cache import DecodedImages, Decoder, ImageSpec, load_images
from trainables.index import DatasetIndex, index_dataset, split_patients

__all__ = ["DEMO_DATA", "PROBE_SPEC", "BrokenImagesWarning", "DataCatalog", "DecodeCheck", "ImageSplit", "PreparedData"]

log = logging.getLogger(__name__)

#: The bundled demo set: a patient-disjoint, class-stratified subset of the Kermany chest X-rays (CC BY 4.0).
DEMO_DATA = Path(__file__).resolve().parent / "demo_data" / "chest_xray"

#: The spec of the start-up check: 8x8 grey, so JPEGs decode at 1/8 scale (their DCT scaling) and the cached array is
#: 64 bytes an image. A file that fails here fails at every spec (decoding reads the whole file either way).
PROBE_SPEC = ImageSpec(8, 8, channels=1, resize="stretch")

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class BrokenImagesWarning(UserWarning):
    """Some files could not be decoded and were skipped."""


@dataclass
class ImageSplit:
    """Decoded images of one split: ``x`` is N x C x H x W uint8, ``y`` the int64 labels."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class PreparedData:
    """Everything a trial needs at one image spec: arrays per split, class names and normalisation statistics."""

    spec: ImageSpec
    classes: tuple[str, ...]
    train: ImageSplit
    val: ImageSplit
    test: ImageSplit | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    fingerprint: str
    broken: list[str] = field(default_factory=list)

    def normalisation(self, pretrained: bool, intensity: str = "none") -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Training-split statistics (of the images as standardised by ``intensity``), or ImageNet's when the
        backbone was pretrained on it (grey: their channel mean)."""
        if not pretrained:
            if intensity != "none":  # the statistics of what the model will see: the standardised images
                import torch  # here, not at the top: the spec registry and its decode tasks run without torch

                from trainables.intensity import standardise

                sample = np.ascontiguousarray(self.train.x[:: max(1, len(self.train) // 512)])
                return channel_stats(standardise(torch.from_numpy(sample), intensity).numpy())
            return self.mean, self.std
        if self.spec.channels == 3:
            return _IMAGENET_MEAN, _IMAGENET_STD
        return (float(np.mean(_IMAGENET_MEAN)),), (float(np.mean(_IMAGENET_STD)),)

    def majority_rate(self) -> float:
        """Validation accuracy of always predicting the most common class: the floor a trial must beat."""
        counts = np.bincount(self.val.y, minlength=len(self.classes))
        return float(counts.max() / max(counts.sum(), 1))


@dataclass(frozen=True)
class DecodeCheck:
    """What the start-up check found: images that decode per split, and the files that do not."""

    train: int
    val: int
    broken: list[str]


def channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    # Subsample large sets: statistics to three decimals do not need every pixel.
    sample = x[:: max(1, len(x) // 512)].astype(np.float32) / 255.0
    mean = sample.mean(axis=(0, 2, 3))
    std = sample.std(axis=(0, 2, 3))
    return tuple(float(m) for m in mean), tuple(float(max(s, 1e-3)) for s in std)


class DataCatalog:
    """One data folder for one task, split at patient level; decoded arrays per :class:`ImageSpec` on demand.

    ``include_test`` indexes the Kaggle ``test/`` folder too; the search never sets it, retrain and evaluate do.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        task: str = "pneumonia3class",
        *,
        val_fraction: float = 0.2,
        split_seed: int = 0,
        include_test: bool = False,
        cache_directory: Path | None = None,
        decoder: Decoder | None = None,
    ) -> None:
        self.root = Path(root).expanduser() if root is not None else DEMO_DATA
        self.task = task
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.cache_directory = cache_directory
        self.decoder = decoder  # None: this machine's processes (trainables.cache.decode_files)
        self.index: DatasetIndex = index_dataset(self.root, task)
        self.train_idx, self.val_idx = split_patients(self.index, val_fraction, split_seed)
        self.test_index: DatasetIndex | None = index_dataset(self.root, task, split="test") if include_test else None
        if self.index.skipped:
            log.warning(
                "%d file(s) under PNEUMONIA name no subtype (bacteria/virus) and were left out: %s",
                len(self.index.skipped),
                ", ".join(Path(p).name for p in self.index.skipped[:5]),
            )
        if self.index.ignored_folders:
            log.warning(
                "task %s has no label for class folder(s) %s under %s: their images are not used",
                task,
                ", ".join(self.index.ignored_folders),
                self.root,
            )
        self._prepared: dict[ImageSpec, PreparedData] = {}
        self._decoded: dict[ImageSpec, DecodedImages] = {}

    @property
    def classes(self) -> tuple[str, ...]:
        return self.index.classes

    @property
    def fingerprint(self) -> str:
        return self.index.fingerprint()

    def describe(self) -> dict[str, object]:
        """Counts a person checks first: images and patients per split and class."""
        tr, va = self.index.subset(self.train_idx), self.index.subset(self.val_idx)
        out: dict[str, object] = {
            "root": str(self.root),
            "task": self.task,
            "classes": list(self.classes),
            "train_images": tr.class_counts(),
            "val_images": va.class_counts(),
            "train_patients": len(set(tr.patients)),
            "val_patients": len(set(va.patients)),
            "fingerprint": self.fingerprint,
        }
        if self.test_index is not None:
            out["test_images"] = self.test_index.class_counts()
        return out

    def _decode(self, index: DatasetIndex, spec: ImageSpec) -> DecodedImages:
        return load_images(index.paths, index.hashes, spec, directory=self.cache_directory, decoder=self.decoder)

    def warn_broken(self, broken: list[str]) -> None:
        """One warning (and log line) naming the first broken files under this catalog's folder."""
        names = ", ".join(Path(p).name for p in broken[:10]) + (" ..." if len(broken) > 10 else "")
        msg = f"skipped {len(broken)} file(s) under {self.root} that could not be read or decoded: {names}"
        warnings.warn(msg, BrokenImagesWarning, stacklevel=3)
        log.warning(msg)

    def check(self) -> DecodeCheck:
        """Decode every training file at :data:`PROBE_SPEC` (cached like any spec): how many images per split decode
        and which files are broken, known before any trial starts and without decoding a spec no trial asked for.
        Warns nothing: the caller names the broken files (:meth:`warn_broken`) where its user reads."""
        decoded = self._decode(self.index, PROBE_SPEC)
        broken = self.index.unreadable + decoded.broken
        ok = decoded.ok
        return DecodeCheck(int(ok[self.train_idx].sum()), int(ok[self.val_idx].sum()), broken)

    def forget(self, spec: ImageSpec) -> None:
        """Drop this catalog's own copy of ``spec``'s arrays (the spec registry keeps them in the object store)."""
        self._prepared.pop(spec, None)
        self._decoded.pop(spec, None)

    def prepare(self, spec: ImageSpec) -> PreparedData:
        """Decode (or read from the disk cache) every split at ``spec``; remembered for the next call."""
        if spec in self._prepared:
            return self._prepared[spec]
        decoded = self._decode(self.index, spec)
        self._decoded[spec] = decoded
        split = self._splitter(decoded)
        broken = self.index.unreadable + decoded.broken
        test = None
        if self.test_index is not None:
            dt = self._decode(self.test_index, spec)
            test = ImageSplit(dt.array, self.test_index.labels[dt.ok])
            broken += self.test_index.unreadable + dt.broken
        if broken:
            self.warn_broken(broken)
        train = split(self.train_idx)
        mean, std = channel_stats(train.x)
        prepared = PreparedData(
            spec=spec,
            classes=self.classes,
            train=train,
            val=split(self.val_idx),
            test=test,
            mean=mean,
            std=std,
            fingerprint=self.fingerprint,
            broken=broken,
        )
        self._prepared[spec] = prepared
        return prepared

    def _splitter(self, decoded: DecodedImages):
        position = np.cumsum(decoded.ok) - 1  # row of each file in the decoded array

        def split(idx: np.ndarray) -> ImageSplit:
            keep = idx[decoded.ok[idx]]
            return ImageSplit(decoded.array[position[keep]], self.index.labels[keep])

        return split

    def holdout_split(self, spec: ImageSpec, fraction: float, seed: int) -> tuple[ImageSplit, ImageSplit]:
        """Train + validation split again at patient level: (images to fit, ``fraction`` held out), stratified
        and seeded like the validation split. The final model fits on the first and calibrates on the second."""
        self.prepare(spec)
        pool = np.union1d(self.train_idx, self.val_idx)
        fit, held = split_patients(self.index.subset(pool), fraction, seed)
        split = self._splitter(self._decoded[spec])
        return split(pool[fit]), split(pool[held])

    def get(self, spec: ImageSpec) -> PreparedData:
        """The prepared arrays for ``spec``; decodes on a miss (logged, since inside a search it should not happen)."""
        if spec not in self._prepared and self._prepared:
            log.warning("image spec %s was not prepared before the trial started; decoding now", spec.label())
        return self.prepare(spec)
