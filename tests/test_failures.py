"""What a search survives, each failure made for real on a real local Ray cluster (tests/clusterlib.py), none mocked.

1. A trial's worker process is SIGKILLed mid-epoch: Tune retries the trial from its last checkpoint
   (``FailureConfig(max_failures=1)``), its epochs continue where they stopped, the search finishes.
2. The driver is SIGKILLed mid-search: ``--resume`` finishes the run, every trial finished before is kept as it
   was, no epoch is reported twice.
3. A node leaves the cluster mid-search (its raylet and workers killed): its trial is rescheduled on the remaining
   node from its checkpoint.
4. A trial whose loss becomes NaN and a trial that runs out of memory end as ERROR; the others finish, the exit code
   is 0 and trials.csv, run.json and the leaderboard show the two as failed.

The trials are the test-only ``smoke`` space's (tests/smoke_space.py): a plan names each trial's kind by number.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import optuna
import pandas as pd
import pytest
from clusterlib import (
    SMALL,
    Search,
    address_space_limit,
    driver_env,
    local_cluster,
    make_slice,
    run_search,
    trial_results,
    wait_for,
)

from runstore.trials import load_trials

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_slice(tmp_path_factory.mktemp("data") / "chest_xray")


def _epochs(rows: list[dict]) -> list[int]:
    return [int(r["epoch"]) for r in rows]


def _kind(rows: list[dict], image_size: str) -> bool:
    return bool(rows) and rows[0]["config"]["image_size"] == image_size


def test_a_trial_whose_worker_is_killed_mid_epoch_resumes_from_its_checkpoint(data: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "kill"
    with local_cluster(tmp_path, head_cpus=2) as cluster:
        args = [*SMALL, "--data", str(data), "--num-samples", "2", "--max-epochs", "3", "--scheduler", "fifo"]
        args += ["--storage", str(tmp_path / "runs"), "--name", "kill", "--address", cluster.address]
        search = Search(args, driver_env(tmp_path / "cache-driver", plan="slow,ok"), cwd=tmp_path)
        try:
            # The slow trial has reported epoch 1 (with its checkpoint): its worker is now training epoch 2.
            def slow_trial_mid_run() -> tuple[str, dict] | None:
                for name, rows in trial_results(run_dir).items():
                    if _kind(rows, "96x112"):
                        return name, rows[-1]
                return None

            name, last = wait_for(slow_trial_mid_run, "the slow trial's first epoch", search=search)
            assert last["epoch"] < 3, "the trial finished before it could be killed; make the slow kind slower"
            os.kill(int(last["pid"]), signal.SIGKILL)
            code = search.wait(timeout=600)
        finally:
            search.kill()
    output = search.output()
    assert code == 0, output[-5000:]

    rows = trial_results(run_dir)[name]
    assert _epochs(rows) == [1, 2, 3], "every epoch once, none repeated, none skipped"
    before = [r for r in rows if r["pid"] == last["pid"]]
    after = [r for r in rows if r["pid"] != last["pid"]]
    assert before and after and _epochs(before + after) == [1, 2, 3]
    # The new worker started from the checkpoint of the last epoch the old one reported, not from epoch 1.
    assert after[0]["epoch"] == before[-1]["epoch"] + 1 > 1
    assert "Failure # 1" in (run_dir / name / "error.txt").read_text()
    trials = load_trials(run_dir)
    assert set(trials["status"]) == {"COMPLETED"}, trials[["trial_id", "status", "error"]]
    assert json.loads((run_dir / "run.json").read_text())["failed_trials"] == []


def test_a_killed_driver_resumes_keeping_finished_trials_and_repeating_no_epoch(data: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "driver"
    with local_cluster(tmp_path, head_cpus=1) as cluster:
        args = [*SMALL, "--data", str(data), "--num-samples", "3", "--max-epochs", "3", "--scheduler", "fifo"]
        args += ["--max-concurrent", "1", "--storage", str(tmp_path / "runs"), "--name", "driver"]
        args += ["--address", cluster.address]
        env = driver_env(tmp_path / "cache-driver", plan="ok,slow,ok")
        search = Search(args, env, cwd=tmp_path)
        try:
            # One trial finished, the next one (slow) part-way: kill the driver as the OOM killer or a crash would.
            def one_done_one_running() -> bool:
                epochs = [len(rows) for rows in trial_results(run_dir).values()]
                return 3 in epochs and any(0 < n < 3 for n in epochs)

            wait_for(one_done_one_running, "one finished trial and one part-way", search=search)
            search.proc.send_signal(signal.SIGKILL)
            assert search.wait(timeout=60) == -signal.SIGKILL
        finally:
            search.kill()
        before = trial_results(run_dir)
        finished = {n: (run_dir / n / "result.json").read_text() for n, rows in before.items() if len(rows) == 3}
        assert finished and any(len(rows) < 3 for rows in before.values())

        resume = ["--resume", str(run_dir), "--address", cluster.address]
        resumed = Search(resume, env, cwd=tmp_path, log_name="resume.log")
        try:
            code = resumed.wait(timeout=600)
        finally:
            resumed.kill()
    assert code == 0, resumed.output()[-5000:]

    after = trial_results(run_dir)
    assert len(after) == 3
    for name, rows in after.items():
        assert _epochs(rows) == [1, 2, 3], (name, _epochs(rows))
    for name, text in finished.items():
        assert (run_dir / name / "result.json").read_text() == text, f"{name} was finished before and ran again"
    trials = load_trials(run_dir)
    assert not trials.duplicated(["trial_id", "epoch"]).any()
    assert set(trials["status"]) == {"COMPLETED"}
    study = optuna.load_study(study_name="driver", storage=f"sqlite:///{run_dir / 'study.db'}")
    assert len([t for t in study.trials if t.state.is_finished()]) == 3


def test_a_node_that_leaves_mid_search_has_its_trial_rescheduled_on_the_other(data: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "node"
    with local_cluster(tmp_path, head_cpus=1) as cluster:
        second = cluster.add_node("second", num_cpus=1)
        head_id, second_id = cluster.head.node_id, second.node_id
        args = [*SMALL, "--data", str(data), "--num-samples", "2", "--max-epochs", "3", "--scheduler", "fifo"]
        args += ["--max-concurrent", "2", "--storage", str(tmp_path / "runs"), "--name", "node"]
        args += ["--address", cluster.address]
        search = Search(args, driver_env(tmp_path / "cache-driver", plan="slow,slow"), cwd=tmp_path)
        try:

            def trial_on_second_node() -> tuple[str, int] | None:
                for name, rows in trial_results(run_dir).items():
                    if rows and rows[-1]["node_id"] == second_id:
                        return name, int(rows[-1]["epoch"])
                return None

            name, epoch = wait_for(trial_on_second_node, "a trial's first epoch on the second node", search=search)
            assert epoch < 3, "the trial finished before its node could be removed; make the slow kind slower"
            cluster.remove_node(second)
            code = search.wait(timeout=600)
        finally:
            search.kill()
    output = search.output()
    assert code == 0, output[-5000:]

    rows = trial_results(run_dir)[name]
    assert _epochs(rows) == [1, 2, 3]
    assert {r["node_id"] for r in rows if r["epoch"] <= epoch} == {second_id}
    # Rescheduled on the head, from the checkpoint of the last epoch the lost node reported.
    moved = [r for r in rows if r["node_id"] != second_id]
    assert moved and {r["node_id"] for r in moved} == {head_id} and moved[0]["epoch"] > 1
    trials = load_trials(run_dir)
    assert set(trials["status"]) == {"COMPLETED"} and trials["trial_id"].nunique() == 2


#: Address-space limit of every process of the NaN/OOM cluster: far above what a Ray worker with torch maps (a few
#: GB), far below the 3.2 TB the ``oom`` trial asks for. The allocation is refused by the kernel (ENOMEM), so
#: nothing is ever committed, on any machine, whatever its overcommit policy.
ADDRESS_SPACE_LIMIT = 256 << 30


def test_nan_and_out_of_memory_trials_end_as_failed_and_the_search_goes_on(data: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "failing"
    with address_space_limit(ADDRESS_SPACE_LIMIT), local_cluster(tmp_path, head_cpus=2) as cluster:
        args = [*SMALL, "--data", str(data), "--num-samples", "3", "--max-epochs", "2", "--scheduler", "fifo"]
        args += ["--storage", str(tmp_path / "runs"), "--name", "failing", "--address", cluster.address]
        code, output = run_search(args, driver_env(tmp_path / "cache-driver", plan="nan,oom,ok"), cwd=tmp_path)
    assert code == 0, output[-5000:]

    trials = load_trials(run_dir)
    by_kind = {
        "nan": trials[trials["config/optimizer"] == "sgd"],
        "oom": trials[trials["config/width"] == 30000.0],
        "ok": trials[(trials["config/optimizer"] == "adam") & (trials["config/width"] == 0.5)],
    }
    assert set(by_kind["nan"]["status"]) == {"ERROR"} and "NonFiniteLossError" in by_kind["nan"]["error"].iloc[0]
    assert set(by_kind["oom"]["status"]) == {"ERROR"} and "can't allocate memory" in by_kind["oom"]["error"].iloc[0]
    assert set(by_kind["ok"]["status"]) == {"COMPLETED"} and len(by_kind["ok"]) == 2
    # Both failures are deterministic; FailureConfig(max_failures=1) retries every error once, so each failed twice.
    for kind in ("nan", "oom"):
        error_txt = (run_dir / by_kind[kind]["trial_dir"].iloc[0] / "error.txt").read_text()
        assert "Failure # 2" in error_txt, error_txt[-2000:]
    failed = json.loads((run_dir / "run.json").read_text())["failed_trials"]
    assert sorted(failed) == sorted({*by_kind["nan"]["trial_dir"], *by_kind["oom"]["trial_dir"]})
    csv = pd.read_csv(run_dir / "trials.csv")
    assert sorted(csv["status"].tolist()) == ["COMPLETED", "COMPLETED", "ERROR", "ERROR"]
    leaderboard = output[output.rindex("rank  trial") :]
    assert leaderboard.count("ERROR") == 2 and leaderboard.count("COMPLETED") == 1
    study = optuna.load_study(study_name="failing", storage=f"sqlite:///{run_dir / 'study.db'}")
    states = sorted(t.state.name for t in study.trials)
    assert states == ["COMPLETE", "FAIL", "FAIL"]
