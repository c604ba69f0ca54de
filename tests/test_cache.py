"""Decoding once into cached uint8 arrays: full-resolution scans, resize policies, broken files, cache reuse."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainables.cache import ImageSpec, decode_image, load_images
from trainables.data import BrokenImagesWarning, DataCatalog
from trainables.index import index_dataset


def test_full_resolution_scans_of_any_size_and_mode_load(shared_data: Path, tmp_path: Path) -> None:
    ix = index_dataset(shared_data / "fullres_sample", "pneumonia3class")
    modes = {Image.open(p).mode for p in ix.paths}
    assert {"L", "RGB"} <= modes  # the sample mixes greyscale and RGB files
    spec = ImageSpec(96, 128, channels=1, resize="pad")
    out = load_images(ix.paths, ix.hashes, spec, directory=tmp_path)
    assert out.array.shape == (len(ix), 1, 96, 128) and out.array.dtype == np.uint8
    assert out.ok.all() and not out.broken
    assert out.array.std() > 20  # real content, not blank images


def test_resize_policies_keep_or_change_the_aspect_ratio(shared_data: Path) -> None:
    # The widest scan in the sample: aspect ratio well away from 1.
    ix = index_dataset(shared_data / "fullres_sample", "pneumonia3class")
    sizes = {p: Image.open(p).size for p in ix.paths}
    wide = max(sizes, key=lambda p: sizes[p][0] / sizes[p][1])
    w, h = sizes[wide]
    assert w / h > 1.5
    padded = decode_image(wide, ImageSpec(128, 128, 1, "pad"))[0]
    # Fitting a wide image into a square leaves black bands above and below, none at the sides.
    band = round((128 - 128 * h / w) / 2)
    assert padded[: band - 1].max() == 0 and padded[-(band - 1) :].max() == 0
    assert padded[64].max() > 0 and padded[:, 0].max() > 0
    cropped = decode_image(wide, ImageSpec(128, 128, 1, "crop"))[0]
    stretched = decode_image(wide, ImageSpec(128, 128, 1, "stretch"))[0]
    assert cropped[:4].max() > 0 and stretched[:4].max() > 0
    assert not np.array_equal(cropped, stretched)
    rgb = decode_image(wide, ImageSpec(256, 300, 3, "stretch"))
    assert rgb.shape == (3, 256, 300)


def test_corrupt_files_are_skipped_counted_and_named_in_one_warning(shared_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    for cls, n in (("NORMAL", 12), ("PNEUMONIA", 12)):
        (root / "train" / cls).mkdir(parents=True)
        for p in sorted((shared_data / "chest_xray" / "train" / cls).iterdir())[:n]:
            shutil.copyfile(p, root / "train" / cls / p.name)
    corrupt = sorted((shared_data / "corrupt").iterdir())
    for p in corrupt:
        shutil.copyfile(p, root / "train" / "PNEUMONIA" / p.name)
    catalog = DataCatalog(root, "pneumonia2class", val_fraction=0.25)
    with pytest.warns(BrokenImagesWarning) as record:
        prepared = catalog.prepare(ImageSpec(64, 64))
    assert len(record) == 1
    message = str(record[0].message)
    assert "skipped 4 file(s)" in message
    assert all(p.name in message for p in corrupt)
    assert len(prepared.train) + len(prepared.val) == 24
    assert len(prepared.broken) == 4


def test_decoded_arrays_are_cached_and_reused(tmp_path: Path) -> None:
    catalog = DataCatalog()
    spec = ImageSpec(48, 40, channels=1, resize="crop")
    first = load_images(catalog.index.paths, catalog.index.hashes, spec, directory=tmp_path)
    assert not first.from_cache
    assert len(list(tmp_path.glob("*.npy"))) == 1
    again = load_images(catalog.index.paths, catalog.index.hashes, spec, directory=tmp_path)
    assert again.from_cache and np.array_equal(first.array, again.array)
    # A different spec is a different entry.
    other = load_images(catalog.index.paths, catalog.index.hashes, ImageSpec(48, 40, 1, "pad"), directory=tmp_path)
    assert not other.from_cache and len(list(tmp_path.glob("*.npy"))) == 2


@pytest.mark.parametrize(
    ("text", "expected"), [("128", (128, 128)), ("256x300", (256, 300)), (" 96 X 64 ", (96, 64)), (64, (64, 64))]
)
def test_image_size_parsing(text, expected) -> None:
    assert ImageSpec.parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "big", "12x", "0x5x"])
def test_bad_image_size_names_the_value(bad: str) -> None:
    with pytest.raises(ValueError, match="128 or 256x300"):
        ImageSpec.parse_size(bad)


def test_bad_spec_values_are_rejected() -> None:
    with pytest.raises(ValueError, match="channels must be 1"):
        ImageSpec(64, 64, channels=2)
    with pytest.raises(ValueError, match="resize policy must be one of stretch, pad, crop"):
        ImageSpec(64, 64, resize="squash")
