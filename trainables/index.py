"""Index a folder of chest X-rays: files, labels, patient keys, and a patient-level train/validation split.

Two layouts are understood:

* the Kaggle ``chest_xray`` layout, ``ROOT/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg``;
* any folder of class sub-folders, ``ROOT/<class>/*.png`` (e.g. COVID19/NORMAL/PNEUMONIA/TUBERCULOSIS).

The official Kaggle ``val/`` folder holds 16 images, too few to select models on, so its images join the pool that
validation is carved from. ``test/`` is indexed only when asked for: the search never sees it.

Several images per patient are common, so splits are made over *patient groups*: images that share a patient key,
joined with any byte-identical copies (a duplicate under two names must not straddle the split).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runstore.errors import UserError

__all__ = [
    "IMAGE_SUFFIXES",
    "TASKS",
    "DataLayoutError",
    "DatasetIndex",
    "has_test_split",
    "index_dataset",
    "is_kaggle_layout",
    "patient_key",
    "split_patients",
]

IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff"})

#: Task name -> what the labels are. ``folders`` takes one class per sub-folder, in sorted order.
TASKS = {
    "pneumonia3class": ("normal", "bacterial", "viral"),
    "pneumonia2class": ("normal", "pneumonia"),
    "folders": (),
}

_KAGGLE_SPLITS = ("train", "val", "test")
_PERSON = re.compile(r"person(\d+)_(bacteria|virus)", re.IGNORECASE)
_NORMAL_IM = re.compile(r"^(?:NORMAL2-)?IM-(\d+)", re.IGNORECASE)
_EXPECTED = (
    "expected the Kaggle chest_xray layout (train/NORMAL, train/PNEUMONIA, ...) "
    "or one sub-folder per class holding images"
)


class DataLayoutError(ValueError, UserError):
    """The data folder is not laid out as expected; the message names the path and the expected layout."""


def patient_key(path: str | Path, folder: str) -> str:
    """Return the patient an image belongs to, from its file name.

    ``person1_virus_6.jpeg`` -> ``person1_virus`` (bacterial and viral cases are numbered separately, so the same
    number under both subtypes is two different children); ``NORMAL2-IM-0115-0001.jpeg`` -> ``IM-0115``.
    Any other name is its own patient, prefixed by its class folder so equal names in two folders stay apart.
    """
    name = Path(path).name
    m = _PERSON.search(name)
    if m:
        return f"person{int(m.group(1))}_{m.group(2).lower()}"
    m = _NORMAL_IM.match(name)
    if m:
        return f"IM-{m.group(1)}"
    return f"{folder}/{Path(name).stem}"


def _subtype(name: str) -> str | None:
    m = _PERSON.search(name)
    return m.group(2).lower() if m else None


@dataclass
class DatasetIndex:
    """Every usable image of one split pool, with its label, patient key and content hash.

    ``groups`` numbers the patient groups (patients joined through byte-identical images); splits never cut one.
    """

    root: Path
    task: str
    classes: tuple[str, ...]
    paths: list[str]
    labels: np.ndarray
    patients: list[str]
    hashes: list[str]
    groups: np.ndarray
    skipped: list[str] = field(default_factory=list)
    #: Files that could not be read (no permission, a symlink loop or a dangling link): left out and named.
    unreadable: list[str] = field(default_factory=list)
    #: Class folders the task has no label for (e.g. COVID19 beside NORMAL and PNEUMONIA): their images are not used.
    ignored_folders: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts)}

    def patient_counts(self) -> dict[str, int]:
        per_class: dict[str, set[str]] = defaultdict(set)
        for label, patient in zip(self.labels, self.patients):
            per_class[self.classes[label]].add(patient)
        return {c: len(per_class[c]) for c in self.classes}

    def images_by_group(self) -> dict[int, list[int]]:
        """Image indices of each patient group, in index order: the unit every split draws."""
        out: dict[int, list[int]] = defaultdict(list)
        for i, g in enumerate(self.groups.tolist()):
            out[g].append(i)
        return out

    def fingerprint(self) -> str:
        """A hash of the file contents and labels: the same images and labels give the same fingerprint anywhere."""
        h = hashlib.sha256(self.task.encode())
        h.update("\0".join(self.classes).encode())
        for digest, label in sorted(zip(self.hashes, self.labels.tolist())):
            h.update(f"{digest}:{label};".encode())
        return h.hexdigest()[:16]

    def subset(self, idx: np.ndarray) -> DatasetIndex:
        idx = np.asarray(idx, dtype=np.int64)
        return DatasetIndex(
            root=self.root,
            task=self.task,
            classes=self.classes,
            paths=[self.paths[i] for i in idx],
            labels=self.labels[idx],
            patients=[self.patients[i] for i in idx],
            hashes=[self.hashes[i] for i in idx],
            groups=self.groups[idx],
        )


def _images_in(folder: Path) -> list[Path]:
    """Image files under ``folder``; a link that leads nowhere (a loop, a dangling link) is kept, to be named."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and not p.name.startswith(".")
        and (p.is_file() or (p.is_symlink() and not p.exists()))
    )


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def is_kaggle_layout(root: str | Path) -> bool:
    """True if ``root`` is the Kaggle layout (``train/``, ``val/`` or ``test/`` folders of class folders) rather than
    a folder of class folders. The one rule that index_dataset, search.retrain and search.evaluate share."""
    root = Path(root).expanduser()
    return any((root / s).is_dir() and any(_class_dirs(root / s)) for s in _KAGGLE_SPLITS)


def has_test_split(root: str | Path) -> bool:
    """True if ``root`` is the Kaggle layout with a ``test/`` folder of class folders (what retrain looks at once)."""
    root = Path(root).expanduser()
    return is_kaggle_layout(root) and (root / "test").is_dir() and any(_class_dirs(root / "test"))


def _label_files(folder_of_classes: list[Path], task: str, classes: tuple[str, ...]):
    """Yield (path, label, class folder name) for each image; files that carry no usable label are yielded with -1."""
    by_upper = {d.name.upper(): d for d in folder_of_classes}
    if task == "folders":
        for label, cls in enumerate(classes):
            for p in _images_in(by_upper[cls.upper()]):
                yield p, label, cls
        return
    for name in ("NORMAL", "PNEUMONIA"):
        if name not in by_upper:
            raise DataLayoutError(
                f"{folder_of_classes[0].parent}: no {name} folder (found {', '.join(sorted(by_upper)) or 'none'}); "
                f"task {task} expects NORMAL and PNEUMONIA class folders"
            )
    for p in _images_in(by_upper["NORMAL"]):
        yield p, 0, "NORMAL"
    for p in _images_in(by_upper["PNEUMONIA"]):
        if task == "pneumonia2class":
            yield p, 1, "PNEUMONIA"
        else:
            sub = _subtype(p.name)
            yield p, {"bacteria": 1, "virus": 2}.get(sub or "", -1), "PNEUMONIA"


def _union_groups(patients: list[str], hashes: list[str]) -> np.ndarray:
    """Number the connected components of 'same patient' or 'same bytes'."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    first_patient_of_hash: dict[str, str] = {}
    for patient, digest in zip(patients, hashes):
        other = first_patient_of_hash.setdefault(digest, patient)
        ra, rb = find(patient), find(other)
        if ra != rb:
            parent[ra] = rb
    roots: dict[str, int] = {}
    return np.array([roots.setdefault(find(p), len(roots)) for p in patients], dtype=np.int64)


def _file_hash(path: Path) -> str | None:
    """Content hash, or None for a file that cannot be read (no permission, a symlink loop, gone meanwhile)."""
    try:
        return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
    except OSError:
        return None


def index_dataset(root: str | Path, task: str, split: str = "pool") -> DatasetIndex:
    """Index ``root`` for ``task``.

    ``split="pool"`` gives the images the search may see (Kaggle ``train/`` plus ``val/``, or every class folder);
    ``split="test"`` gives the Kaggle ``test/`` folder, and fails if there is none.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    if split not in ("pool", "test"):
        raise ValueError(f"split must be 'pool' or 'test', got {split!r}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataLayoutError(f"{root}: no such directory; {_EXPECTED}")

    if is_kaggle_layout(root):
        if split == "test":
            if not has_test_split(root):
                raise DataLayoutError(f"{root}: no test/ folder; expected test/NORMAL, test/PNEUMONIA beside train/")
            folders = [root / "test"]
        else:
            folders = [root / s for s in _KAGGLE_SPLITS[:2] if (root / s).is_dir()]
            if not folders:
                raise DataLayoutError(f"{root}: no train/ folder; the Kaggle layout needs train/<class>/ images")
    else:
        if split == "test":
            raise DataLayoutError(f"{root}: no test/ folder; expected the Kaggle layout with test/<class>/ images")
        folders = [root]

    class_names = sorted({d.name for f in folders for d in _class_dirs(f)}, key=str.upper)
    if not class_names:
        raise DataLayoutError(f"{root}: no class folders; {_EXPECTED}")
    classes = TASKS[task] or tuple(class_names)

    paths: list[str] = []
    labels: list[int] = []
    patients: list[str] = []
    skipped: list[str] = []
    for folder in folders:
        for p, label, cls in _label_files(_class_dirs(folder), task, classes):
            if label < 0:
                skipped.append(str(p))
                continue
            paths.append(str(p))
            labels.append(label)
            patients.append(patient_key(p, cls))
    digests = [_file_hash(Path(p)) for p in paths]
    unreadable = [p for p, d in zip(paths, digests) if d is None]
    if unreadable:
        keep = [i for i, d in enumerate(digests) if d is not None]
        paths, labels, patients = ([xs[i] for i in keep] for xs in (paths, labels, patients))
    hashes = [d for d in digests if d is not None]
    if not paths:
        raise DataLayoutError(
            f"{root}: no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))}"
            + (f"; {len(unreadable)} could not be read" if unreadable else "")
            + f"); {_EXPECTED}"
        )
    counts = Counter(labels)
    empty = [c for i, c in enumerate(classes) if counts[i] == 0]
    if empty:
        raise DataLayoutError(
            f"{root}: class {', '.join(empty)} has no images; every class of task {task} needs at least one"
        )
    return DatasetIndex(
        root=root,
        task=task,
        classes=classes,
        paths=paths,
        labels=np.array(labels, dtype=np.int64),
        patients=patients,
        hashes=hashes,
        groups=_union_groups(patients, hashes),
        skipped=skipped,
        unreadable=unreadable,
        ignored_folders=[n for n in class_names if TASKS[task] and n.upper() not in ("NORMAL", "PNEUMONIA")],
    )


def split_patients(index: DatasetIndex, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Carve a validation set out of ``index`` at patient-group level, stratified by class and seeded.

    Within each class (a group's class is its most common label) groups are shuffled and taken into validation until
    the class's validation images reach ``val_fraction`` of its images. Returns sorted (train, val) image indices.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    rng = np.random.default_rng(seed)
    group_images = index.images_by_group()
    by_class: dict[int, list[int]] = defaultdict(list)
    for g, members in group_images.items():
        label = Counter(index.labels[members].tolist()).most_common(1)[0][0]
        by_class[label].append(g)

    val: list[int] = []
    for label in sorted(by_class):
        groups = sorted(by_class[label])
        rng.shuffle(groups)
        target = val_fraction * sum(len(group_images[g]) for g in groups)
        taken = 0
        for g in groups[: len(groups) - 1]:  # keep at least one group of each class for training
            if taken >= target or (taken and taken + len(group_images[g]) - target > target - taken):
                break
            val.extend(group_images[g])
            taken += len(group_images[g])
    val_arr = np.array(sorted(val), dtype=np.int64)
    train_arr = np.setdiff1d(np.arange(len(index)), val_arr)
    return train_arr, val_arr
