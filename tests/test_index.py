"""Indexing, labels, patient keys and the patient-level split, on the real Kermany chest X-rays."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from trainables.data import DEMO_DATA
from trainables.index import (
    DataLayoutError,
    has_test_split,
    index_dataset,
    is_kaggle_layout,
    patient_key,
    split_patients,
)


def test_three_class_counts_of_the_real_train_folder(shared_data: Path) -> None:
    # The train/ folder alone (the data README's counts): 1,341 normal, 2,530 bacterial, 1,345 viral.
    ix = index_dataset(shared_data / "chest_xray" / "train", "pneumonia2class")
    assert ix.class_counts() == {"normal": 1341, "pneumonia": 3875}
    pool = index_dataset(shared_data / "chest_xray", "pneumonia3class")
    in_train = np.array(["/train/" in p for p in pool.paths])
    counts = np.bincount(pool.labels[in_train], minlength=3)
    assert dict(zip(pool.classes, counts.tolist())) == {"normal": 1341, "bacterial": 2530, "viral": 1345}
    # The 16-image val folder joins the pool that validation is carved from.
    assert len(pool) == 1341 + 2530 + 1345 + 16


def test_patient_keys_follow_the_data_readme(shared_data: Path) -> None:
    assert patient_key("person1_virus_6.jpeg", "PNEUMONIA") == "person1_virus"
    assert patient_key("person1_bacteria_1.jpeg", "PNEUMONIA") == "person1_bacteria"
    assert patient_key("NORMAL2-IM-0115-0001.jpeg", "NORMAL") == "IM-0115"
    assert patient_key("IM-0115-0001.jpeg", "NORMAL") == "IM-0115"
    assert patient_key("covid-17.png", "COVID19") == "COVID19/covid-17"
    ix = index_dataset(shared_data / "chest_xray", "pneumonia3class")
    assert ix.patient_counts() == {"normal": 1008, "bacterial": 1360, "viral": 1090}
    # Several images per patient are common: that is why splits are made per patient.
    assert len(ix) > 1.4 * len(set(ix.patients))


@pytest.mark.parametrize("seed", [0, 1])
def test_validation_split_is_patient_disjoint_stratified_and_seeded(shared_data: Path, seed: int) -> None:
    ix = index_dataset(shared_data / "chest_xray", "pneumonia3class")
    train, val = split_patients(ix, val_fraction=0.2, seed=seed)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == len(ix)
    assert not {ix.patients[i] for i in train} & {ix.patients[i] for i in val}
    # Byte-identical images never straddle the split either.
    assert not {ix.hashes[i] for i in train} & {ix.hashes[i] for i in val}
    per_class = np.bincount(ix.labels[val], minlength=3) / np.bincount(ix.labels, minlength=3)
    assert np.allclose(per_class, 0.2, atol=0.01), per_class
    again, _ = split_patients(ix, val_fraction=0.2, seed=seed)
    assert np.array_equal(train, again)
    other, _ = split_patients(ix, val_fraction=0.2, seed=seed + 7)
    assert not np.array_equal(train, other)


def test_test_folder_is_indexed_only_when_asked(shared_data: Path) -> None:
    pool = index_dataset(DEMO_DATA, "pneumonia3class")
    test = index_dataset(DEMO_DATA, "pneumonia3class", split="test")
    assert not any("/test/" in p for p in pool.paths)
    assert all("/test/" in p for p in test.paths)
    with pytest.raises(DataLayoutError, match="no test/ folder"):
        index_dataset(shared_data / "chest_xray", "pneumonia3class", split="test")


def test_bundled_demo_set_is_patient_disjoint_and_keeps_the_class_mix(shared_data: Path) -> None:
    pool = index_dataset(DEMO_DATA, "pneumonia3class")
    test = index_dataset(DEMO_DATA, "pneumonia3class", split="test")
    assert not set(pool.patients) & set(test.patients)
    full = index_dataset(shared_data / "chest_xray", "pneumonia3class")
    for sub in (pool, test):
        mix = np.bincount(sub.labels, minlength=3) / len(sub)
        assert np.allclose(mix, np.bincount(full.labels) / len(full), atol=0.03), mix
    assert (DEMO_DATA.parent / "ATTRIBUTION.md").read_text().count("CC BY 4.0") >= 1


def _copy_images(src: Path, dst: Path, n: int) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for p in sorted(src.iterdir())[:n]:
        shutil.copyfile(p, dst / p.name)


def test_class_folder_layout_with_n_classes(shared_data: Path, tmp_path: Path) -> None:
    # A COVID19/NORMAL/PNEUMONIA/TUBERCULOSIS-style folder: one class per sub-folder, sorted.
    src = shared_data / "chest_xray" / "train"
    for cls in ("TUBERCULOSIS", "COVID19", "NORMAL"):
        _copy_images(src / ("NORMAL" if cls != "COVID19" else "PNEUMONIA"), tmp_path / cls, 5)
    ix = index_dataset(tmp_path, "folders")
    assert ix.classes == ("COVID19", "NORMAL", "TUBERCULOSIS")
    assert ix.class_counts() == {"COVID19": 5, "NORMAL": 5, "TUBERCULOSIS": 5}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: None, "no such directory"),
        (lambda root: root.mkdir(), "no class folders"),
        (lambda root: (root / "NORMAL").mkdir(parents=True), "no images"),
    ],
)
def test_wrong_layout_is_one_line_naming_the_path(tmp_path: Path, make, message: str) -> None:
    root = tmp_path / "data"
    make(root)
    with pytest.raises(DataLayoutError) as err:
        index_dataset(root, "folders")
    text = str(err.value)
    assert message in text and str(root) in text and "\n" not in text


def test_empty_class_and_missing_pneumonia_folder(shared_data: Path, tmp_path: Path) -> None:
    _copy_images(shared_data / "chest_xray" / "train" / "NORMAL", tmp_path / "train" / "NORMAL", 3)
    (tmp_path / "train" / "PNEUMONIA").mkdir()
    with pytest.raises(DataLayoutError, match="class bacterial, viral has no images"):
        index_dataset(tmp_path, "pneumonia3class")
    shutil.rmtree(tmp_path / "train" / "PNEUMONIA")
    with pytest.raises(DataLayoutError, match="no PNEUMONIA folder"):
        index_dataset(tmp_path, "pneumonia2class")


def test_unknown_task_lists_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="valid tasks: pneumonia3class, pneumonia2class, folders"):
        index_dataset(tmp_path, "pneumonia5class")


def test_one_layout_rule_for_index_retrain_and_evaluate(shared_data: Path, tmp_path: Path) -> None:
    """Kaggle layout vs class folders, and whether there is a test split: one rule, also for a test-only folder."""
    src = shared_data / "chest_xray" / "train"
    assert is_kaggle_layout(DEMO_DATA) and has_test_split(DEMO_DATA)
    classes = tmp_path / "classes"
    _copy_images(src / "NORMAL", classes / "NORMAL", 2)
    _copy_images(src / "PNEUMONIA", classes / "PNEUMONIA", 2)
    assert not is_kaggle_layout(classes) and not has_test_split(classes)
    assert len(index_dataset(classes, "pneumonia2class")) == 4
    test_only = tmp_path / "test_only"
    _copy_images(src / "NORMAL", test_only / "test" / "NORMAL", 2)
    _copy_images(src / "PNEUMONIA", test_only / "test" / "PNEUMONIA", 2)
    assert is_kaggle_layout(test_only) and has_test_split(test_only)
    assert len(index_dataset(test_only, "pneumonia2class", split="test")) == 4
    with pytest.raises(DataLayoutError, match="no train/ folder"):
        index_dataset(test_only, "pneumonia2class")
    no_test = tmp_path / "no_test"
    _copy_images(src / "NORMAL", no_test / "train" / "NORMAL", 2)
    assert is_kaggle_layout(no_test) and not has_test_split(no_test)
