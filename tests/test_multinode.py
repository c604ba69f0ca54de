"""A search across a real two-node Ray cluster on this machine, driven as on a cloud cluster: ``--address``.

The head and the second node are separate raylets, each with one CPU, so the two trials must run one on each. Each
image spec is decoded once, by Ray tasks on both nodes, assembled and cached by the spec registry on the driver's node
(trainables.spec_store), and reaches both nodes through Ray's object store: each node's image cache stays empty, the
only decode log lines are the registry's. Everything lands in one storage path, given as a
``file://`` URI (the stand-in here for ``s3://``): Tune's trial folders and checkpoints, written by the workers of
both nodes, and the run's own files (run.json, study.db, trials.csv, best_config.json), copied up by the driver.
"""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from clusterlib import SMALL, driver_env, local_cluster, make_slice, run_search, trial_results

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_node_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("multinode")
    data = make_slice(base / "chest_xray")
    store = base / "store"
    with local_cluster(base) as cluster:
        second = cluster.add_node("second", num_cpus=1)
        args = [*SMALL, "--data", str(data), "--num-samples", "2", "--max-epochs", "4", "--scheduler", "fifo"]
        args += ["--max-concurrent", "2", "--storage", f"file://{store}", "--name", "multi"]
        args += ["--address", cluster.address]
        # Slow trials (several seconds an epoch): a trial that finished before the other's worker started on the
        # second node would hand it its own worker (Tune reuses trial workers), and both would run on the head.
        code, output = run_search(args, driver_env(base / "cache-driver", plan="slow,slow"), cwd=base)
        nodes = {"head": cluster.head.node_id, "second": second.node_id}
    assert code == 0, output[-5000:]
    # The console shows a status line; the driver's log and the workers' forwarded logs are in the run's search.log.
    output += (base / "runs" / "multi" / "search.log").read_text()
    return {"base": base, "store": store / "multi", "mirror": base / "runs" / "multi", "output": output, "nodes": nodes}


def test_trials_run_on_both_nodes(two_node_run: dict) -> None:
    results = trial_results(two_node_run["store"])
    assert len(results) == 2 and all(len(rows) == 4 for rows in results.values()), results
    ran_on = {row["node_id"] for rows in results.values() for row in rows}
    assert ran_on == set(two_node_run["nodes"].values())
    # Tune's own fields agree: two worker processes, one per node.
    assert len({row["pid"] for rows in results.values() for row in rows}) == 2


def test_each_spec_is_assembled_and_cached_once_on_the_driver_node_only(two_node_run: dict) -> None:
    base = two_node_run["base"]
    # The registry on the driver's node assembled each image spec it was asked for once, into the driver's cache ...
    assert list((base / "cache-driver").glob("*.npy"))
    output = two_node_run["output"]
    decodes = re.findall(r"decoded (\d+) image\(s\) at (\S+) in [\d.]+s \(pid (\d+)", output)
    assert decodes and {n for n, _, _ in decodes} == {"210"}
    assert len({pid for _, _, pid in decodes}) == 1, "every spec was assembled in one process, the registry"
    assert len({spec for _, spec, _ in decodes}) == len(decodes), "no image spec was decoded twice"
    # ... and no trial on either node decoded anything: their caches were never created, no fallback decode ran.
    # (The decode tasks on both nodes only decode their shard and hand it back.)
    assert not (base / "cache-head").exists() and not (base / "cache-second").exists()
    assert "was not prepared before the trial started" not in output


def test_results_land_in_the_one_storage_path(two_node_run: dict) -> None:
    store = two_node_run["store"]
    for name in ("run.json", "study.db", "trials.csv", "best_config.json"):
        assert (store / name).is_file(), name
    # Checkpoints of trials on both nodes, written by their workers, and Tune's experiment state for --resume.
    assert len(list(store.glob("*/checkpoint_*"))) == 2
    assert list(store.glob("experiment_state-*.json"))
    trials = pd.read_csv(store / "trials.csv")
    assert trials["trial_id"].nunique() == 2 and set(trials["status"]) == {"COMPLETED"}
    assert set(trials["node_id"]) == set(two_node_run["nodes"].values())
    assert json.loads((store / "run.json").read_text())["finished"] is True
    # The local mirror is the same run: identical trials.csv.
    assert (two_node_run["mirror"] / "trials.csv").read_text() == (store / "trials.csv").read_text()
