"""Data past one node: decode throughput, start-up to the first trial and peak node memory, against N and the specs.

Generates N synthetic scanner-size JPEGs (1000-2000 px a side, smooth random "anatomy" plus film grain, grey, in the
Kaggle layout ``chest_xray/train/{NORMAL,PNEUMONIA}`` so ``DataCatalog`` reads them; about 0.26 MB a file, so 20k files
are ~5 GB) and, on a fresh local Ray instance per measurement with a cold image cache, measures what a search's
driver and its trials do (``trainables.spec_store``: the start-up check at 8x8, then the one spec the trials ask for):

* decode throughput: one image spec decoded by Ray tasks over shards, with 1 and with 2 CPUs given to Ray;
* start-up: from indexing the data folder to the first trial holding its arrays, two trials (one per CPU) asking
  for the same spec at once;
* peak memory of the node: the PSS (shared pages counted once) of this driver and every process Ray started, sampled
  every 0.2 s; also above the idle level of Ray itself.

Each figure is taken for a profile that declares many specs (the CPU profile's 6) and one that declares only the spec
the trials use, and once for the old eager path (every declared spec decoded before the first trial) for reference.
The last line: ``startup_ratio=X memory_ratio=Y``, many declared / one declared (means over ``--rounds`` interleaved
runs), at the largest N (goal: both <= 1.2).

    python benchmarks/data_scale.py [--n 500,2000] [--rounds 2] [--dir DIR] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spaces.profiles import CPU  # noqa: E402
from trainables.cache import ImageSpec  # noqa: E402
from trainables.data import DataCatalog  # noqa: E402
from trainables.spec_store import ShardedDecoder, start_spec_store  # noqa: E402

#: The spec the trials train on (the seed TinyVGG's 64x64 grey) and the many a profile declares (the CPU profile's).
USED = ImageSpec(64, 64, 1, "stretch")
DECLARED = CPU.image_specs()
_LAYOUT_VERSION = 1


# -- the synthetic data set ---------------------------------------------------------------------------------------


def _one_image(args: tuple[Path, int, int, int]) -> int:
    path, seed, lo, hi = args
    rng = np.random.default_rng(seed)
    w, h = (int(v) for v in rng.integers(lo, hi + 1, size=2))
    coarse = Image.fromarray(rng.integers(40, 215, size=(12, 12), dtype=np.uint8), mode="L")
    base = np.asarray(coarse.resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)
    grain = rng.normal(0.0, 6.0, size=(h // 4, w // 4)).astype(np.float32)
    grain = np.asarray(Image.fromarray(grain, mode="F").resize((w, h), Image.Resampling.BILINEAR))
    img = np.clip(base + grain, 0, 255).astype(np.uint8)
    Image.fromarray(img, mode="L").save(path, quality=90)
    return path.stat().st_size


def _layout(n: int) -> list[str]:
    """Kaggle names (the index reads class, subtype and patient from them): a third normal, the rest bacterial or
    viral, two images a patient."""
    names = []
    for i in range(n):
        patient = i // 2 + 1
        if i % 3 == 0:
            names.append(f"NORMAL/IM-{patient:05d}-{i % 2 + 1:04d}.jpeg")
        else:
            kind = "bacteria" if i % 3 == 1 else "virus"
            names.append(f"PNEUMONIA/person{patient}_{kind}_{i % 2 + 1}.jpeg")
    return names


def generate(root: Path, n: int, lo: int, hi: int, workers: int = 2) -> tuple[Path, int]:
    """``root/chest_xray`` with ``n`` JPEGs (made once; reused when the same set is there); (folder, bytes)."""
    data = root / f"synthetic-{n}-{lo}-{hi}" / "chest_xray"
    marker = data / "MADE.json"
    if marker.exists() and json.loads(marker.read_text()).get("version") == _LAYOUT_VERSION:
        return data, int(json.loads(marker.read_text())["bytes"])
    jobs = []
    for i, name in enumerate(_layout(n)):
        path = data / "train" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        jobs.append((path, i, lo, hi))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        size = sum(pool.map(_one_image, jobs, chunksize=16))
    marker.write_text(json.dumps({"version": _LAYOUT_VERSION, "n": n, "bytes": size}))
    return data, size


# -- measuring ----------------------------------------------------------------------------------------------------


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


class NodeMemory:
    """Samples the PSS of this process and all its descendants (Ray's GCS, raylet, object store, workers)."""

    def __init__(self, every: float = 0.2) -> None:
        self.every, self.peak_mb, self._stop = every, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now_mb(self) -> float:
        return sum(_pss_kb(p) for p in _descendants(os.getpid())) / 1024

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self.now_mb())
            self._stop.wait(self.every)

    def __enter__(self) -> NodeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _ray(cpus: int) -> None:
    import ray

    # Ray's workers import the project from this checkout, as the driver does.
    root = str(Path(__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")


def throughput(data: Path, cpus: int) -> float:
    """Images a second for one spec decoded by the sharded Ray decoder with ``cpus`` CPUs given to Ray."""
    import ray

    catalog = DataCatalog(data)
    _ray(cpus)
    try:
        ray.get([ray.remote(num_cpus=0)(lambda: 0).remote() for _ in range(cpus)])  # workers started, not timed
        t0 = time.perf_counter()
        ShardedDecoder()(catalog.index.paths, USED)
        return len(catalog.index) / (time.perf_counter() - t0)
    finally:
        ray.shutdown()


def _trial(source: object, spec: ImageSpec) -> float:
    """A stand-in trial: what a search's trial does first, ``source.get(spec)``; returns when it has the arrays."""
    prepared = source.get(spec)  # type: ignore[attr-defined]
    if not len(prepared.train):
        raise RuntimeError("the trial received no training images")
    return time.time()


@dataclass
class Arm:
    startup_s: float
    peak_mb: float
    data_mb: float


def startup(data: Path, declared: tuple[ImageSpec, ...], eager: bool = False, cpus: int = 2) -> Arm:
    """Start-up to the first trial and peak node memory of a search whose profile declares ``declared`` and whose
    trials use :data:`USED`; ``eager``: every declared spec decoded before the first trial (the old driver)."""
    import ray

    with tempfile.TemporaryDirectory() as cache, NodeMemory() as memory:
        _ray(cpus)
        try:
            time.sleep(1.0)
            idle = memory.now_mb()
            t0 = time.time()
            catalog = DataCatalog(data, cache_directory=Path(cache))
            store = start_spec_store(catalog)
            check = store.check()
            assert check.train and check.val, check
            if eager:
                for spec in declared:
                    store.summary(spec)
            trial = ray.remote(num_cpus=1)(_trial)
            first = min(ray.get([trial.remote(store.source, USED) for _ in range(cpus)]))
            store.close(len(declared))
        finally:
            ray.shutdown()
    return Arm(first - t0, memory.peak_mb, memory.peak_mb - idle)


def _report(n: int, name: str, declared: int, arm: Arm) -> Arm:
    print(
        f"N={n} declared={name}:{declared} used=1 startup_s={arm.startup_s:.1f} "
        f"peak_node_mb={arm.peak_mb:.0f} above_idle_mb={arm.data_mb:.0f}",
        flush=True,
    )
    return arm


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", default="500,2000", help="comma-separated data set sizes (up to ~20000 here)")
    p.add_argument("--dir", help="where the synthetic sets are made and kept (default: a temp dir, removed)")
    p.add_argument("--min-side", type=int, default=1000)
    p.add_argument("--max-side", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=2, help="one/many arms per N, interleaved; ratios use their means")
    p.add_argument("--quick", action="store_true", help="a smoke run: N=60 at 300-500 px, one round")
    args = p.parse_args(argv)
    sizes = [int(v) for v in args.n.split(",")]
    lo, hi = args.min_side, args.max_side
    rounds = args.rounds
    if args.quick:
        sizes, lo, hi, rounds = [60], 300, 500, 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.dir) if args.dir else Path(tmp)
        print(f"specs declared: many={len(DECLARED)} ({', '.join(s.label() for s in DECLARED)}); one={USED.label()}")
        ratios = (0.0, 0.0)
        for index, n in enumerate(sizes):
            t0 = time.perf_counter()
            data, size = generate(root, n, lo, hi)
            print(
                f"N={n} data={data} disk_mb={size / 1e6:.0f} ({lo}-{hi} px a side; made or found in "
                f"{time.perf_counter() - t0:.0f}s)",
                flush=True,
            )
            for cpus in (1, 2):
                print(f"N={n} decode cpus={cpus} images_per_s={throughput(data, cpus):.0f}", flush=True)
            ones, manys = [], []
            for _ in range(rounds):
                ones.append(_report(n, "one", 1, startup(data, (USED,))))
                manys.append(_report(n, "many", len(DECLARED), startup(data, DECLARED)))
            if index == 0:
                _report(n, "eager-many", len(DECLARED), startup(data, DECLARED, eager=True))
            ratios = (
                statistics.mean(a.startup_s for a in manys) / statistics.mean(a.startup_s for a in ones),
                statistics.mean(a.peak_mb for a in manys) / statistics.mean(a.peak_mb for a in ones),
            )
    print(f"startup_ratio={ratios[0]:.2f} memory_ratio={ratios[1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
