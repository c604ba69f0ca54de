"""Image specs as separate Ray objects, decoded when a trial first asks for one, over the whole cluster's CPUs.

A search may propose many image specs (6 on CPU, 16 on GPU) but its trials often use a few, and a data set of 100k+
scans decoded at every spec would not fit a node. So the driver starts a :class:`SpecRegistry` actor on its own node
(it holds the :class:`~trainables.data.DataCatalog`: index and split, no arrays) and hands trials a
:class:`SpecSource`, which holds nothing but the actor's handle. A trial's ``source.get(spec)``:

1. asks the registry for ``spec``'s object; on the first request the registry decodes it (or reads it from the
   content-hash keyed disk cache on its node), spreading the file list over Ray tasks, ``SHARD_FILES`` files a shard,
   at most one shard per CPU of each node at a time, and puts the result in the object store as one object per spec;
   the actor runs one request at a time, so two trials asking for an undecoded spec at once wait for one decode;
2. fetches that one object to its node (zero-copy for trials on the registry's node).

So a node receives only the specs its trials train on, and memory grows with the specs used, not the specs declared.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runstore.cachedir import cache_dir
from trainables.cache import ImageSpec
from trainables.data import DataCatalog, DecodeCheck, PreparedData

__all__ = ["SHARD_FILES", "ShardedDecoder", "SpecRegistry", "SpecSource", "SpecStore", "start_spec_store"]

log = logging.getLogger(__name__)

#: Files per decode task: a few seconds of work for scanner-size JPEGs, big enough that task overhead stays small.
SHARD_FILES = 500
_MIN_SHARD = 32


def _decode_shard(paths: list[str], spec: ImageSpec, blobs: list[bytes] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One Ray task: decode a shard of the file list, from the files or, on a node without them, from their bytes
    (``blobs``, read by the registry); (array of the files that decoded, ok mask)."""
    import io

    from trainables.cache import _decode_chunk, stack_decoded

    sources = [io.BytesIO(b) for b in blobs] if blobs is not None else paths
    return stack_decoded(_decode_chunk((sources, spec)), spec)


def _has_files(samples: list[tuple[str, int]]) -> bool:
    """On a node: whether these files exist there with these sizes (the data folder is on its disk too)."""
    return all(os.path.isfile(p) and os.path.getsize(p) == size for p, size in samples)


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""  # decodes as broken, like the unreadable file it is


def _cpu_slots() -> list[str]:
    """One entry per CPU of every alive node (its node id), the nodes taking turns: where decode shards may run at
    the same time. A cluster with no CPU for Ray yet (a head with ``CPU: 0`` before the autoscaler adds workers)
    decodes on this node's cores."""
    import ray

    per_node = [
        [node["NodeID"]] * int(node.get("Resources", {}).get("CPU", 0)) for node in ray.nodes() if node.get("Alive")
    ]
    slots = [n for turn in itertools.zip_longest(*per_node) for n in turn if n is not None]
    return slots or [ray.get_runtime_context().get_node_id()] * len(os.sched_getaffinity(0))


class ShardedDecoder:
    """A :data:`trainables.cache.Decoder` that decodes over Ray tasks, one shard of the file list each.

    The tasks ask Ray for no CPU (``num_cpus=0``): trials hold every CPU while they wait for their data, and a task
    that waited for a free CPU would wait for them. Instead at most one shard per CPU of each node runs at a time,
    placed on that node, so decoding uses the cluster's CPUs as the trials waiting for it would. A node that has the
    data folder at the same path (checked once, on a few files' sizes) reads the files itself; to any other node this
    process (the registry, on the driver's node, which has it) sends the shard's file bytes. ``ship_bytes=True``
    sends bytes to every node.
    """

    def __init__(self, shard_files: int = SHARD_FILES, ship_bytes: bool | None = None) -> None:
        self.shard_files = shard_files
        self.ship_bytes = ship_bytes
        self._has_data: dict[str, bool] = {}
        self.last: dict[str, Any] = {}

    def _nodes_with_data(self, paths: list[str], nodes: set[str]) -> dict[str, bool]:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if self.ship_bytes is not None:
            return {n: not self.ship_bytes for n in nodes}
        unknown = sorted(nodes - set(self._has_data))
        if unknown:
            picks = sorted({0, len(paths) // 2, len(paths) - 1})
            samples = [(paths[i], os.path.getsize(paths[i])) for i in picks if os.path.isfile(paths[i])]
            probe = ray.remote(num_cpus=0)(_has_files)
            refs = [
                probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=n, soft=False)).remote(samples)
                for n in unknown
            ]
            self._has_data.update(zip(unknown, ray.get(refs)))
        return {n: self._has_data[n] for n in nodes}

    def __call__(self, paths: list[str], spec: ImageSpec) -> tuple[np.ndarray, np.ndarray]:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if not paths:
            return np.zeros((0, spec.channels, spec.height, spec.width), np.uint8), np.zeros(0, dtype=bool)
        slots = _cpu_slots()
        local = self._nodes_with_data(paths, set(slots))
        size = max(_MIN_SHARD, min(self.shard_files, math.ceil(len(paths) / len(slots))))
        shards = [(i, paths[i : i + size]) for i in range(0, len(paths), size)]
        task = ray.remote(num_cpus=0, max_retries=2)(_decode_shard)
        out = np.empty((len(paths), spec.channels, spec.height, spec.width), np.uint8)
        ok = np.zeros(len(paths), dtype=bool)
        pending: dict[Any, tuple[int, int, str]] = {}
        free = list(slots)
        nodes: set[str] = set()
        while shards or pending:
            while shards and free:
                node = free.pop(0)
                start, part = shards.pop(0)
                strategy = NodeAffinitySchedulingStrategy(node_id=node, soft=True)
                blobs = None if local[node] else [_read(p) for p in part]
                ref = task.options(scheduling_strategy=strategy).remote(part, spec, blobs)
                pending[ref] = (start, len(part), node)
            [done], _ = ray.wait(list(pending), num_returns=1)
            start, n, node = pending.pop(done)
            free.append(node)
            nodes.add(node)
            arr, good = ray.get(done)
            ok[start : start + n] = good
            rows = np.flatnonzero(good) + start
            out[rows] = arr
            del arr
        sent = sum(1 for n in nodes if not local[n])
        self.last = {"shards": math.ceil(len(paths) / size), "nodes": len(nodes), "cpus": len(slots), "sent": sent}
        log.info(
            "decode of %d image(s) at %s spread over %d shard(s) on %d node(s) (%d CPU(s)); %d node(s) were sent the "
            "files' bytes, not having the data folder",
            len(paths),
            spec.label(),
            self.last["shards"],
            len(nodes),
            len(slots),
            sent,
        )
        # The rows of broken files are dropped; the array keeps only what decoded, in file order.
        return (out if ok.all() else out[ok]), ok


def _ensure_logging() -> None:
    """Ray workers have no log handler of their own; INFO lines of this project reach the driver's log this way."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("trainables").setLevel(logging.INFO)


class SpecRegistry:
    """The Ray actor that owns one object per image spec: spec -> ObjectRef, filled on the first request."""

    def __init__(self, catalog: DataCatalog, cache_directory: str, ship_bytes: bool | None = None) -> None:
        _ensure_logging()
        self.catalog = catalog
        self.catalog.cache_directory = Path(cache_directory)
        self.catalog.decoder = ShardedDecoder(ship_bytes=ship_bytes)
        self._refs: dict[ImageSpec, Any] = {}
        self._sizes: dict[ImageSpec, int] = {}

    def check(self) -> DecodeCheck:
        """The start-up check (:meth:`DataCatalog.check`), decoded over the cluster like any spec."""
        return self.catalog.check()

    def ref(self, spec: ImageSpec) -> list[Any]:
        """``[ObjectRef]`` of ``spec``'s :class:`PreparedData` (a list, so Ray hands the reference over, not the
        arrays); decodes it on the first request."""
        import ray

        if spec not in self._refs:
            prepared = self.catalog.prepare(spec)
            self._sizes[spec] = _nbytes(prepared)
            self._refs[spec] = ray.put(prepared)
            self.catalog.forget(spec)  # the object store holds it now; a second copy here would double the memory
            del prepared
        return [self._refs[spec]]

    def summary(self, spec: ImageSpec) -> dict[str, Any]:
        """Images per split and broken files at ``spec`` (decoding it if needed), without shipping the arrays."""
        import ray

        prepared: PreparedData = ray.get(self.ref(spec)[0])
        return {"train": len(prepared.train), "val": len(prepared.val), "broken": list(prepared.broken)}

    def locations(self) -> dict[str, dict[str, Any]]:
        """Per decoded spec (by label): its size in bytes and the ids of the nodes whose object store holds it."""
        import ray

        where = ray.experimental.get_object_locations(list(self._refs.values())) if self._refs else {}
        return {
            spec.label(): {"bytes": self._sizes[spec], "nodes": sorted(where.get(ref, {}).get("node_ids", []))}
            for spec, ref in self._refs.items()
        }


def _nbytes(prepared: PreparedData) -> int:
    splits = [prepared.train, prepared.val] + ([prepared.test] if prepared.test is not None else [])
    return sum(s.x.nbytes + s.y.nbytes for s in splits)


@dataclass
class SpecSource:
    """What a trial receives in a search: the registry's handle; ``get(spec)`` fetches that spec only, to this node."""

    registry: Any

    def get(self, spec: ImageSpec) -> PreparedData:
        import ray

        _ensure_logging()
        t0 = time.perf_counter()
        [ref] = ray.get(self.registry.ref.remote(spec))
        prepared: PreparedData = ray.get(ref)
        # One line per trial, naming the node: the record of which specs reached which node.
        log.info(
            "node %s fetched image spec %s (%.1f MB) in %.1fs (pid %d)",
            ray.get_runtime_context().get_node_id(),
            spec.label(),
            _nbytes(prepared) / 1e6,
            time.perf_counter() - t0,
            os.getpid(),
        )
        return prepared


@dataclass
class SpecStore:
    """The driver's side: the registry actor and the source trials get; ``close()`` ends the actor (and its objects)."""

    registry: Any
    source: SpecSource

    def check(self) -> DecodeCheck:
        import ray

        return ray.get(self.registry.check.remote())

    def summary(self, spec: ImageSpec) -> dict[str, Any]:
        import ray

        return ray.get(self.registry.summary.remote(spec))

    def locations(self) -> dict[str, dict[str, Any]]:
        import ray

        return ray.get(self.registry.locations.remote())

    def log_locations(self, declared: int | None = None) -> dict[str, dict[str, Any]]:
        """One log line per decoded spec: its size and the nodes that hold it; and how many of the declared were."""
        where = self.locations()
        of = f" of {declared} declared" if declared is not None else ""
        log.info("image specs decoded: %d%s", len(where), of)
        for label, info in where.items():
            log.info("image spec %s (%.1f MB) is on node(s) %s", label, info["bytes"] / 1e6, ", ".join(info["nodes"]))
        return where

    def close(self, declared: int | None = None) -> None:
        """Log where the decoded specs are (:meth:`log_locations`), then end the registry, freeing its objects."""
        import ray

        try:
            self.log_locations(declared)
        except Exception as exc:  # noqa: BLE001 - a record for the log; it must not cost the run
            log.warning("could not list where the image specs are: %s: %s", type(exc).__name__, exc)
        ray.kill(self.registry)


def start_spec_store(
    catalog: DataCatalog, cache_directory: Path | None = None, ship_bytes: bool | None = None
) -> SpecStore:
    """Start the registry on this (the driver's) node, so it reads the data folder and this machine's disk cache;
    ``ship_bytes`` as in :class:`ShardedDecoder`."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    actor = ray.remote(num_cpus=0, max_restarts=0)(SpecRegistry)
    registry = actor.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False)).remote(
        catalog, str(cache_directory or catalog.cache_directory or cache_dir()), ship_bytes
    )
    return SpecStore(registry, SpecSource(registry))
