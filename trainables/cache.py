"""Decode images once into a compact uint8 array, cached on disk and keyed by what produced it.

A trial never decodes a JPEG: the search decodes each (file list, size, channels, resize policy) once, through here
(with a ``decoder`` that spreads the files over Ray tasks, ``trainables.spec_store``), and the array (N x C x H x W,
uint8: 128x128 grey is 16 KiB an image) is saved under the cache directory and reused by every later run that asks
for the same thing. The key hashes the files' *contents*, so a copied or moved data set hits the
same cache entry and an edited image misses it.

Broken files (bytes that no image library can decode) are skipped, counted and named in one warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from runstore.cachedir import cache_dir

__all__ = [
    "RESIZE_POLICIES",
    "DecodedImages",
    "Decoder",
    "ImageSpec",
    "cache_dir",
    "decode_files",
    "decode_image",
    "load_images",
    "stack_decoded",
]

log = logging.getLogger(__name__)

RESIZE_POLICIES = ("stretch", "pad", "crop")
_CACHE_VERSION = 1
_SIZE = re.compile(r"^\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*$")


@dataclass(frozen=True)
class ImageSpec:
    """How images are turned into arrays: output height and width, 1 (grey) or 3 (RGB) channels, resize policy.

    ``stretch`` resizes to exactly HxW (the aspect ratio changes); ``pad`` fits the whole image inside HxW and pads
    with black; ``crop`` fills HxW and cuts the centre out.
    """

    height: int
    width: int
    channels: int = 1
    resize: str = "stretch"

    def __post_init__(self) -> None:
        if not (8 <= self.height <= 4096 and 8 <= self.width <= 4096):
            raise ValueError(f"image size must be between 8 and 4096 pixels a side, got {self.height}x{self.width}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {self.channels}")
        if self.resize not in RESIZE_POLICIES:
            raise ValueError(f"resize policy must be one of {', '.join(RESIZE_POLICIES)}, got {self.resize!r}")

    @staticmethod
    def parse_size(text: str | int | tuple[int, int] | list[int]) -> tuple[int, int]:
        """``"128"`` -> (128, 128); ``"256x300"`` -> (256, 300) as height x width; tuples pass through."""
        if isinstance(text, int):
            return text, text
        if isinstance(text, (tuple, list)) and len(text) == 2:
            return int(text[0]), int(text[1])
        m = _SIZE.match(str(text))
        if not m:
            raise ValueError(f"image size must look like 128 or 256x300 (height x width), got {text!r}")
        h = int(m.group(1))
        return h, int(m.group(2) or h)

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    def label(self) -> str:
        return f"{self.height}x{self.width}-{'grey' if self.channels == 1 else 'rgb'}-{self.resize}"


@dataclass
class DecodedImages:
    """The decoded array for the files that decoded (``ok`` marks them), and the names of those that did not."""

    array: np.ndarray
    ok: np.ndarray
    broken: list[str]
    from_cache: bool


def _to_8bit(im: Image.Image) -> Image.Image:
    """16-bit and float images (some PNG/TIFF exports) are rescaled to 0..255 instead of being clipped."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        return Image.fromarray(a.astype(np.uint8), mode="L")
    return im


def decode_image(path: str | BinaryIO, spec: ImageSpec) -> np.ndarray:
    """Decode one file (a path, or its bytes as a file object) into a C x H x W uint8 array following ``spec``;
    raises on a file that is not an image."""
    h, w = spec.size
    mode = "L" if spec.channels == 1 else "RGB"
    with Image.open(path) as im:
        # JPEG can decode straight to a reduced scale (DCT scaling): a 2000 px scan decodes 4-8x faster.
        im.draft(mode, (w, h))
        im = _to_8bit(im)
        im = im.convert(mode)
        iw, ih = im.size
        if spec.resize == "stretch":
            out = im.resize((w, h), Image.Resampling.BILINEAR)
        elif spec.resize == "pad":
            scale = min(w / iw, h / ih)
            nw, nh = max(1, round(iw * scale)), max(1, round(ih * scale))
            out = Image.new(mode, (w, h), 0)
            out.paste(im.resize((nw, nh), Image.Resampling.BILINEAR), ((w - nw) // 2, (h - nh) // 2))
        else:  # crop
            scale = max(w / iw, h / ih)
            nw, nh = max(w, round(iw * scale)), max(h, round(ih * scale))
            left, top = (nw - w) // 2, (nh - h) // 2
            out = im.resize((nw, nh), Image.Resampling.BILINEAR).crop((left, top, left + w, top + h))
    a = np.asarray(out, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _decode_chunk(args: tuple[list[str] | list[BinaryIO], ImageSpec]) -> list[np.ndarray | None]:
    paths, spec = args
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    out: list[np.ndarray | None] = []
    for p in paths:
        try:
            out.append(decode_image(p, spec))
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            out.append(None)
    return out


def _cache_key(hashes: list[str], spec: ImageSpec) -> str:
    h = hashlib.sha256(f"v{_CACHE_VERSION}|{spec.label()}|".encode())
    for digest in hashes:
        h.update(digest.encode())
    return h.hexdigest()[:24]


def _decode_all(paths: list[str], spec: ImageSpec, workers: int) -> list[np.ndarray | None]:
    if workers <= 1 or len(paths) < 256:
        return _decode_chunk((paths, spec))
    chunk = max(64, len(paths) // (workers * 8))
    chunks = [(paths[i : i + chunk], spec) for i in range(0, len(paths), chunk)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return [a for part in pool.map(_decode_chunk, chunks) for a in part]


def stack_decoded(decoded: list[np.ndarray | None], spec: ImageSpec) -> tuple[np.ndarray, np.ndarray]:
    """(N_ok x C x H x W array of the files that decoded, boolean mask over all files)."""
    ok = np.array([a is not None for a in decoded], dtype=bool)
    arr = (
        np.stack([a for a in decoded if a is not None])
        if ok.any()
        else np.zeros((0, spec.channels, spec.height, spec.width), np.uint8)
    )
    return arr, ok


def decode_files(paths: list[str], spec: ImageSpec, workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``paths`` in this machine's processes (default: the CPUs this process may use); (array, ok mask)."""
    workers = workers if workers is not None else len(os.sched_getaffinity(0))
    return stack_decoded(_decode_all(paths, spec, workers), spec)


#: How a file list becomes (array of the files that decoded, ok mask): local processes by default, Ray tasks over
#: shards of the list in a search (``trainables.spec_store``).
Decoder = Callable[[list[str], ImageSpec], tuple[np.ndarray, np.ndarray]]


def load_images(
    paths: list[str],
    hashes: list[str],
    spec: ImageSpec,
    *,
    directory: Path | None = None,
    workers: int | None = None,
    use_cache: bool = True,
    decoder: Decoder | None = None,
) -> DecodedImages:
    """Decode ``paths`` per ``spec``, or read the cached array made from the same file contents and spec.

    ``hashes`` are the files' content hashes (from the index) and key the cache. Decoding uses ``decoder`` if given,
    else ``workers`` processes here (default: the CPUs this process may use).
    """
    if len(paths) != len(hashes):
        raise ValueError(f"{len(paths)} paths but {len(hashes)} hashes")
    directory = directory or cache_dir()
    key = _cache_key(hashes, spec)
    arr_path, meta_path = directory / f"{key}.npy", directory / f"{key}.json"
    if use_cache and arr_path.exists() and meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            arr = np.load(arr_path)
            ok = np.array(meta["ok"], dtype=bool)
            if arr.shape == (int(ok.sum()), spec.channels, spec.height, spec.width):
                broken = [p for p, good in zip(paths, ok) if not good]
                return DecodedImages(arr, ok, broken, from_cache=True)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable cache entry %s (%s); decoding again", arr_path, exc)

    t0 = time.perf_counter()
    arr, ok = decoder(paths, spec) if decoder is not None else decode_files(paths, spec, workers)
    # Said once per decode, with the process and host, so a log shows where decoding is assembled (in a search: the
    # spec registry on the driver's node; trials on every node read the arrays from Ray's object store).
    log.info(
        "decoded %d image(s) at %s in %.1fs (pid %d on %s)",
        len(paths),
        spec.label(),
        time.perf_counter() - t0,
        os.getpid(),
        socket.gethostname(),
    )
    broken = [p for p, good in zip(paths, ok) if not good]
    if use_cache:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            tmp = arr_path.with_suffix(f".{os.getpid()}.tmp.npy")
            np.save(tmp, arr)
            os.replace(tmp, arr_path)
            meta_path.write_text(json.dumps({"spec": spec.label(), "n": len(paths), "ok": ok.astype(int).tolist()}))
        except OSError as exc:  # a read-only or full disk costs speed next time, not this run
            log.warning("could not write the image cache to %s (%s); the next run will decode again", directory, exc)
    return DecodedImages(arr, ok, broken, from_cache=False)
