"""Helpers for the multi-node and failure tests: a real Ray cluster on this machine, a search driver against it.

``LocalCluster`` wraps ``ray.cluster_utils.Cluster``: every node is a real raylet with its own worker processes
and object store, on this machine. The cluster lives under a private temp directory (``RAY_TMPDIR``), so it never
touches another Ray instance running here (no shared ``/tmp/ray/ray_current_cluster``), and is shut down by the
test that started it. Each node gets its own ``CXR_SEARCH_CACHE``: a trial that decoded images on a node would
leave files there.

The search itself runs as a user runs it: ``python tests/search_driver.py ... --address <cluster>`` (``search.run``
with the test-only ``smoke`` space registered) in a subprocess that the test can interrupt or kill. Trial workers
import the project from this checkout (``PYTHONPATH`` of every raylet), which is also the installed one in CI
(``pip install -e .``); the ``node_id`` they report exists only in this checkout's ``trainables.train``.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from trainables.data import DEMO_DATA

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
PY = sys.executable
DRIVER = TESTS / "search_driver.py"
#: ``Search(..., command=STUDY)`` runs ``python -m search.study ARGS`` instead of a search.
STUDY = ["-m", "search.study"]

#: The smallest search that still exercises Tune, Optuna and the data path: no recipes, no report, no time budget.
SMALL = ["--space", "smoke", "--no-recipes", "--no-report", "--time-budget", "0", "--seed", "0"]


def make_slice(dst: Path, per_folder: dict[str, int] | None = None) -> Path:
    """A Kaggle-layout slice of the demo set (first N files per folder; bacterial and viral interleaved): 210 images."""
    per_folder = per_folder or {"train/NORMAL": 70, "train/PNEUMONIA": 140}
    for rel, n in per_folder.items():
        files = sorted((DEMO_DATA / rel).iterdir())
        if rel.endswith("PNEUMONIA"):
            bac = [f for f in files if "bacteria" in f.name]
            vir = [f for f in files if "virus" in f.name]
            files = [f for pair in zip(bac, vir) for f in pair]
        out = dst / rel
        out.mkdir(parents=True, exist_ok=True)
        for f in files[:n]:
            shutil.copyfile(f, out / f.name)
    return dst


class LocalCluster:
    """A head node plus worker nodes, each a separate raylet on this machine; ``shutdown()`` stops every process."""

    def __init__(self, base: Path, head_cpus: int = 1, head_resources: dict[str, float] | None = None) -> None:
        # Unix socket paths must stay under ~107 characters, so the Ray temp dir is short, not under pytest's tmp.
        self.ray_tmp = tempfile.mkdtemp(prefix="cxr-ray-", dir="/tmp")
        self.base = base
        self._saved_tmpdir = os.environ.get("RAY_TMPDIR")
        os.environ["RAY_TMPDIR"] = self.ray_tmp
        from ray.cluster_utils import Cluster

        self.cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": head_cpus,
                "resources": head_resources or {},
                "env_vars": self.node_env("head"),
                "include_dashboard": False,
            },
        )
        self.head = self.cluster.head_node

    def node_env(self, name: str) -> dict[str, str]:
        """Environment of a node's raylet (its workers inherit it): this checkout first, a cache of its own."""
        return {
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "CXR_SEARCH_CACHE": str(self.cache_dir(name)),
            "OMP_NUM_THREADS": "1",
        }

    def cache_dir(self, name: str) -> Path:
        return self.base / f"cache-{name}"

    @property
    def address(self) -> str:
        return self.cluster.address

    def add_node(self, name: str, num_cpus: int = 1, resources: dict[str, float] | None = None) -> Any:
        return self.cluster.add_node(num_cpus=num_cpus, resources=resources or {}, env_vars=self.node_env(name))

    def remove_node(self, node: Any) -> None:
        self.cluster.remove_node(node, allow_graceful=False)

    def shutdown(self) -> None:
        try:
            self.cluster.shutdown()
        finally:
            if self._saved_tmpdir is None:
                os.environ.pop("RAY_TMPDIR", None)
            else:
                os.environ["RAY_TMPDIR"] = self._saved_tmpdir
            shutil.rmtree(self.ray_tmp, ignore_errors=True)


@contextmanager
def local_cluster(base: Path, **kwargs: Any) -> Iterator[LocalCluster]:
    cluster = LocalCluster(base, **kwargs)
    try:
        yield cluster
    finally:
        cluster.shutdown()


@contextmanager
def address_space_limit(limit_bytes: int) -> Iterator[None]:
    """Processes started inside this block (a cluster's raylets, hence its workers) get ``RLIMIT_AS = limit_bytes``.

    The soft limit of this process is lowered for the block and put back after it; children keep theirs.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    new = limit_bytes if hard == resource.RLIM_INFINITY else min(limit_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (new, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def driver_env(cache: Path, plan: str = "") -> dict[str, str]:
    """Environment of the search driver: this checkout importable, its own image cache, the smoke plan."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "CXR_SEARCH_CACHE": str(cache),
        "CXR_SMOKE_PLAN": plan,
        "RAY_DEDUP_LOGS": "0",
        "PYTHONUNBUFFERED": "1",
    }


class Search:
    """``search_driver.py ARGS`` in a subprocess; output goes to a file (a full pipe would block the driver).

    ``prefix``: a command the driver runs under, e.g. ``setpriv`` dropping capabilities. ``command``: what Python
    runs instead of the search driver, e.g. :data:`STUDY`."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        cwd: Path,
        log_name: str = "driver.log",
        prefix: list[str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.log = cwd / log_name
        self._out = self.log.open("w")
        self.proc = subprocess.Popen(
            [*(prefix or []), PY, *(command or [str(DRIVER)]), *args],
            cwd=cwd,
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float = 600) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._out.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=60)
        self._out.close()


def run_search(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 600) -> tuple[int, str]:
    """Run a search to its end; (exit code, output)."""
    search = Search(args, env, cwd)
    try:
        code = search.wait(timeout)
    except subprocess.TimeoutExpired:
        search.kill()
        raise
    return code, search.output()


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 300, search: Search | None = None) -> Any:
    """Poll ``condition`` every 0.1 s until it returns something truthy; fail with ``what`` on timeout or exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if search is not None and search.proc.poll() is not None:
            code = search.proc.returncode
            raise AssertionError(f"the search exited ({code}) before {what}:\n{search.output()[-4000:]}")
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def trial_results(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Per trial folder name, the results reported so far (one per epoch, in order); a partial last line is skipped."""
    out: dict[str, list[dict[str, Any]]] = {}
    for params in sorted(run_dir.glob("*/params.json")):
        rows = []
        result = params.parent / "result.json"
        if result.exists():
            for line in result.read_text().splitlines():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    break
        out[params.parent.name] = rows
    return out
