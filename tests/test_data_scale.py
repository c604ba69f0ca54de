"""Data past one node: each image spec is its own Ray object, decoded on the first trial's request, fetched only by the
nodes whose trials train on it; and the scaling benchmark's last line."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from clusterlib import ROOT, SMALL, driver_env, local_cluster, make_slice, run_search, trial_results
from conftest import run_benchmark

from trainables.cache import ImageSpec, decode_files
from trainables.data import DataCatalog

_FETCHED = re.compile(r"node (\w+) fetched image spec (\S+) \(")
_ON_NODES = re.compile(r"image spec (\S+) \([\d.]+ MB\) is on node\(s\) ([\w, ]*)")


def _cached_specs(cache: Path) -> list[str]:
    """The spec label of every entry in an image cache folder, sorted (repeats show a spec cached twice)."""
    return sorted(json.loads(p.read_text())["spec"] for p in cache.glob("*.json"))


def _fetch_shape(source: object, spec: ImageSpec) -> tuple[int, ...]:
    return source.get(spec).train.x.shape  # type: ignore[attr-defined]


@pytest.mark.slow  # starts a local Ray instance (about 10 s)
def test_two_trials_asking_for_one_undecoded_spec_share_one_decode_and_no_other_spec_is_made(tmp_path: Path) -> None:
    import ray

    from trainables.spec_store import ShardedDecoder, start_spec_store

    data = make_slice(tmp_path / "chest_xray")
    cache = tmp_path / "cache"
    pythonpath = os.pathsep.join([str(ROOT / "tests"), str(ROOT), os.environ.get("PYTHONPATH", "")])
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": pythonpath}},
    )
    try:
        store = start_spec_store(DataCatalog(data, cache_directory=cache))
        check = store.check()
        assert (check.train + check.val, check.broken) == (210, [])
        assert _cached_specs(cache) == ["8x8-grey-stretch"]  # the start-up check decodes no trial's spec
        spec = ImageSpec(64, 64)
        # Two requests at once for a spec nobody decoded yet: one object, handed to both.
        first, second = ray.get([store.registry.ref.remote(spec), store.registry.ref.remote(spec)])
        assert first[0].hex() == second[0].hex()
        fetch = ray.remote(num_cpus=1)(_fetch_shape)
        shapes = ray.get([fetch.remote(store.source, spec), fetch.remote(store.source, spec)])
        assert shapes[0] == shapes[1] and shapes[0][1:] == (1, 64, 64) and shapes[0][0] == check.train
        # Only the spec asked for was decoded and cached, once; the registry holds that one object.
        assert _cached_specs(cache) == ["64x64-grey-stretch", "8x8-grey-stretch"]
        assert list(store.locations()) == ["64x64-grey-stretch"]
        shared = ray.get(first[0])
        train, val = np.array(shared.train.x), np.array(shared.val.x)  # copies that outlive Ray
        store.close()
        # A node without the data folder is sent the files' bytes: the same arrays.
        catalog = DataCatalog(data)
        sent, sent_ok = ShardedDecoder(ship_bytes=True)(catalog.index.paths, spec)
    finally:
        ray.shutdown()
    # Assembled from two shards decoded by two tasks, the arrays are the ones decoding here, in one process, gives.
    alone = DataCatalog(data, cache_directory=tmp_path / "cache-alone").prepare(spec)
    assert np.array_equal(train, alone.train.x) and np.array_equal(val, alone.val.x)
    assert sent_ok.all() and len(sent) == 210
    assert np.array_equal(sent, decode_files(catalog.index.paths, spec, workers=1)[0])


@pytest.mark.slow
def test_a_node_receives_only_the_image_specs_its_trials_train_on(tmp_path: Path) -> None:
    """Two nodes, one CPU each, two trials at once at different image sizes (64x64 and 96x112): each node fetches the
    spec of its own trial; the second node never holds the other spec; 2 of the profile's 6 specs are ever decoded."""
    data = make_slice(tmp_path / "chest_xray")
    with local_cluster(tmp_path) as cluster:
        second = cluster.add_node("second", num_cpus=1)
        args = [*SMALL, "--data", str(data), "--num-samples", "2", "--max-epochs", "1", "--scheduler", "fifo"]
        args += ["--max-concurrent", "2", "--storage", str(tmp_path / "runs"), "--name", "specs"]
        args += ["--address", cluster.address]
        code, output = run_search(args, driver_env(tmp_path / "cache-driver", plan="ok,slow"), cwd=tmp_path)
        second_id = second.node_id
    assert code == 0, output[-5000:]
    output += (tmp_path / "runs" / "specs" / "search.log").read_text()

    # Which spec each node's trial trained on, from the trials' own results.
    trained: dict[str, set[str]] = {}
    for rows in trial_results(tmp_path / "runs" / "specs").values():
        size = rows[0]["config"]["image_size"]
        trained.setdefault(rows[0]["node_id"], set()).add(f"{ImageSpec(*ImageSpec.parse_size(size)).label()}")
    assert len(trained) == 2 and second_id in trained, trained
    ours = trained[second_id]
    others = set().union(*trained.values()) - ours
    assert len(ours) == 1 and len(others) == 1, trained

    # What the trials fetched, per node (one line per trial), and where Ray's object directory has each spec.
    fetched: dict[str, set[str]] = {}
    for node, label in _FETCHED.findall(output):
        fetched.setdefault(node, set()).add(label)
    assert fetched[second_id] == ours, fetched
    where = {label: set(nodes.replace(",", " ").split()) for label, nodes in _ON_NODES.findall(output)}
    assert set(where) == ours | others, where
    assert second_id in where[next(iter(ours))]
    assert second_id not in where[next(iter(others))], where
    # Lazy: 2 of the profile's 6 specs decoded, each once, and only those (plus the 8x8 check) cached.
    assert "image specs decoded: 2 of 6 declared" in output
    decodes = re.findall(r"decoded (\d+) image\(s\) at (\S+) in", output)
    assert sorted(label for _, label in decodes) == sorted(["8x8-grey-stretch", *ours, *others])
    assert _cached_specs(tmp_path / "cache-driver") == sorted(["8x8-grey-stretch", *ours, *others])


@pytest.mark.slow
def test_data_scale_benchmark_quick_prints_its_ratios_last() -> None:
    proc = run_benchmark("data_scale.py", "--quick", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    m = re.fullmatch(r"startup_ratio=(\d+\.\d+) memory_ratio=(\d+\.\d+)", lines[-1])
    assert m, lines[-1]
    assert float(m.group(1)) > 0 and float(m.group(2)) > 0
    rates = re.findall(r"^N=60 decode cpus=(\d) images_per_s=(\d+)$", proc.stdout, re.M)
    assert [c for c, _ in rates] == ["1", "2"] and all(int(r) > 0 for _, r in rates)
    arms = re.findall(r"^N=60 declared=(\S+):(\d+) used=1 startup_s=[\d.]+ peak_node_mb=\d+", proc.stdout, re.M)
    assert [a for a, _ in arms] == ["one", "many", "eager-many"] and int(arms[1][1]) > 1
