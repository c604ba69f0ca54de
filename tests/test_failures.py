"""What a search survives, each failure made for real on a real local Ray cluster (tests/clusterlib.py), none mocked.

1. A trial's worker process is SIGKILLed mid-epoch: Tune retries the trial from its last checkpoint
   (``FailureConfig(max_failures=1)``), its epochs continue where they stopped, the search finishes.
2. The driver is SIGKILLed mid-search: ``--resume`` finishes the run, every trial finished before is kept as it
   was, no epoch is reported twice.
3. A node leaves the cluster mid-search (its raylet and workers killed): its trial is rescheduled on the remaining
   node from its checkpoint.
4. A trial whose loss becomes NaN and a trial that runs out of memory end as ERROR; the others finish, the exit code
   is 0 and trials.csv, run.json and the leaderboard show the two as failed.
5. The disk holding the run fills up while a trial writes its checkpoint (a small tmpfs, filled for real): one
   ``error:`` line naming the run folder, exit code 1, nothing finished lost, and ``trials.csv`` written on the full
   disk keeps its old contents; ``--resume`` once there is space finishes the run with no epoch run twice.
6. The run folder becomes read-only mid-search (``chmod -R a-w``, with root's CAP_DAC_OVERRIDE dropped by ``setpriv``
   so that permissions bite), as ``--storage DIR`` and as ``--storage file:///DIR``: the same, and ``--resume`` after
   write access is restored. The same for a study (``python -m search.study``), whose line says ``search.study``.
7. A trial's checkpoint is truncated while the search is interrupted: on ``--resume`` that trial trains again from
   scratch and says so in one line of ``search.log``; the search finishes with exit code 0.
8. Ctrl+C lands at an epoch boundary, at the two moments where Tune's saved state and the trial's checkpoints can
   disagree (tests/interrupt_at.py sends it there for certain): ``--resume`` trains no epoch twice and reports each
   once.

Tests 1-4 run against a cluster the test starts (tests/clusterlib.py); 5-8 let the driver start its own Ray, as a
user's search does, so that a limit put on the driver (dropped capabilities) holds for every Ray process too. The
trials are the test-only ``smoke`` space's (tests/smoke_space.py): a plan names each trial's kind by number; the
study's base config is the smoke space's slow kind.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pandas as pd
import pytest
from clusterlib import (
    SMALL,
    STUDY,
    Search,
    address_space_limit,
    driver_env,
    local_cluster,
    make_slice,
    run_search,
    trial_results,
    wait_for,
)
from smoke_space import kind_config

from runstore.trials import load_trials, trial_order, write_trials_csv
from search.export import FORMAT
from trainables.train import CHECKPOINT_FILE, load_checkpoint_state

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


# -- faults of the run folder and of a checkpoint: the driver starts its own Ray ------------------------------------

#: Two trials one after the other: a quick one that finishes, then a slow one (the one the fault hits mid-run).
FAULT_PLAN = "ok,slow"


def _fault_search(data: Path, storage: Path | str, name: str) -> list[str]:
    args = [*SMALL, "--data", str(data), "--num-samples", "2", "--max-epochs", "3", "--scheduler", "fifo"]
    return args + ["--max-concurrent", "1", "--storage", str(storage), "--name", name]


@pytest.fixture()
def own_ray_env(tmp_path: Path) -> Iterator[Callable[[str], dict[str, str]]]:
    """The driver's environment with a private Ray temp folder (short: Unix socket paths), removed afterwards."""
    ray_tmp = tempfile.mkdtemp(prefix="cxr-ray-", dir="/tmp")
    yield lambda plan: {**driver_env(tmp_path / "cache-driver", plan=plan), "RAY_TMPDIR": ray_tmp}
    shutil.rmtree(ray_tmp, ignore_errors=True)


def _one_done_slow_one_running(run_dir: Path) -> Callable[[], tuple[str, str, int] | None]:
    """A condition for ``wait_for``: the first trial finished and a later slow one reported epoch 1 or 2 (the first
    may be slow too, as a study's are).

    Returns (finished trial folder, slow trial folder, the slow trial's last epoch)."""

    def condition() -> tuple[str, str, int] | None:
        results = trial_results(run_dir)
        done = [n for n, rows in results.items() if len(rows) == 3]
        slow = [(n, rows[-1]["epoch"]) for n, rows in results.items() if _kind(rows, "96x112") and n not in done[:1]]
        if done and slow:
            assert slow[0][1] < 3, "the slow trial finished before the fault; make the slow kind slower"
            return done[0], slow[0][0], int(slow[0][1])
        return None

    return condition


def _folder_digest(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _assert_stopped_by_storage(
    code: int, output: str, run_dir: Path | str, reason: str, command: str = "search.run"
) -> None:
    """Exit 1, no traceback, and one last line: the error naming the run folder, the reason and the way back."""
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert code == 1, output[-5000:]
    assert "Traceback" not in output, output[-5000:]
    assert sum(ln.startswith("error:") for ln in lines) == 1, output[-3000:]
    assert lines[-1].startswith(f"error: the run folder {run_dir} could not be written ({reason})"), lines[-1]
    assert lines[-1].endswith(f"continue it with: python -m {command} --resume {run_dir}"), lines[-1]


def _assert_resumed_whole(
    run_dir: Path, finished: str, finished_files: dict[str, bytes], study_db: bool = True
) -> None:
    """Every trial has epochs 1-3 exactly once; the trial finished before the fault is byte for byte as it was; a
    search's Optuna study (``study_db``) has both trials finished."""
    for name, rows in trial_results(run_dir).items():
        assert _epochs(rows) == [1, 2, 3], (name, _epochs(rows))
    assert _folder_digest(run_dir / finished) == finished_files, f"{finished} was finished before and changed"
    trials = load_trials(run_dir)
    assert trials["trial_id"].nunique() == 2 and set(trials["status"]) == {"COMPLETED"}
    assert not trials.duplicated(["trial_id", "epoch"]).any()
    if study_db:
        study = optuna.load_study(study_name=run_dir.name, storage=f"sqlite:///{run_dir / 'study.db'}")
        assert len([t for t in study.trials if t.state.is_finished()]) == 2


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MB tmpfs: a disk that fills up for real (ENOSPC), in seconds, without touching the machine's disks."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], capture_output=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (root with CAP_SYS_ADMIN needed): {mount.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(filler: Path) -> Path:
    """Write zeros to the file ``filler`` until the kernel says its disk is full; return it."""
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def test_a_disk_that_fills_up_mid_search_stops_it_and_resume_finishes_it(
    data: Path, tmp_path: Path, small_disk: Path, own_ray_env
) -> None:
    run_dir = small_disk / "runs" / "full"
    env = own_ray_env(FAULT_PLAN)
    search = Search(_fault_search(data, small_disk / "runs", "full"), env, cwd=tmp_path)
    try:
        finished, slow, epoch = wait_for(
            _one_done_slow_one_running(run_dir), "a finished and a running trial", search=search
        )
        finished_files = _folder_digest(run_dir / finished)
        run_json = (run_dir / "run.json").read_bytes()
        trials_csv = write_trials_csv(run_dir).read_bytes()  # as an earlier Ctrl+C would have left it
        filler = _fill(small_disk / "filler")  # the slow trial's next checkpoint finds the disk full
        code = search.wait(timeout=300)
    finally:
        search.kill()
    _assert_stopped_by_storage(code, search.output(), run_dir, "No space left on device")
    # Nothing finished is lost: the finished trial, run.json and the slow trial's last good checkpoint are intact.
    assert _folder_digest(run_dir / finished) == finished_files
    assert (run_dir / "run.json").read_bytes() == run_json
    reported = _epochs(trial_results(run_dir)[slow])
    assert reported and reported[-1] >= epoch
    state = load_checkpoint_state(run_dir / slow / f"checkpoint_{reported[-1] - 1:06d}")
    assert state["epoch"] == reported[-1]
    # trials.csv written on the full disk: the write fails, the old file stays whole, no temporary file is left.
    _fill(small_disk / "more")  # whatever the stopped search freed
    with pytest.raises(OSError) as full:
        write_trials_csv(run_dir)
    assert full.value.errno == errno.ENOSPC
    assert (run_dir / "trials.csv").read_bytes() == trials_csv and not list(run_dir.glob(".trials.csv.*"))
    (small_disk / "more").unlink()

    filler.unlink()  # space again
    resumed = Search(["--resume", str(run_dir)], env, cwd=tmp_path, log_name="resume.log")
    try:
        code = resumed.wait(timeout=600)
    finally:
        resumed.kill()
    assert code == 0, resumed.output()[-5000:]
    _assert_resumed_whole(run_dir, finished, finished_files)


def _set_writable(root: Path, writable: bool) -> None:
    for p in [root, *root.rglob("*")]:
        mode = p.stat().st_mode
        p.chmod(mode | 0o200 if writable else mode & ~0o222)


def _without_dac_override() -> list[str]:
    """The command prefix under which permissions bite, root included (``setpriv`` drops CAP_DAC_OVERRIDE)."""
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is needed to drop CAP_DAC_OVERRIDE, without which root writes anywhere")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}"] if os.geteuid() == 0 else []


@pytest.mark.parametrize("uri", [False, True], ids=["directory", "file-uri"])
def test_a_run_folder_made_read_only_mid_search_stops_it_and_resume_finishes_it(
    uri: bool, data: Path, tmp_path: Path, own_ray_env
) -> None:
    """``--storage DIR`` and ``--storage file:///DIR`` (Tune writes there; the driver keeps a mirror in ./runs)."""
    drop = _without_dac_override()
    storage = tmp_path / ("shared" if uri else "runs")
    run_dir = storage / "readonly"
    where = f"file://{run_dir}" if uri else str(run_dir)
    env = own_ray_env(FAULT_PLAN)
    args = _fault_search(data, f"file://{storage}" if uri else storage, "readonly")
    search = Search(args, env, cwd=tmp_path, prefix=drop)
    try:
        finished, slow, _ = wait_for(
            _one_done_slow_one_running(run_dir), "a finished and a running trial", search=search
        )
        finished_files = _folder_digest(run_dir / finished)
        run_json = (run_dir / "run.json").read_bytes()
        _set_writable(run_dir, False)  # as a file system remounted read-only, or a storage admin's chmod
        code = search.wait(timeout=300)
    finally:
        search.kill()
        _set_writable(run_dir, True)
    _assert_stopped_by_storage(code, search.output(), where, "Permission denied")
    assert _folder_digest(run_dir / finished) == finished_files
    assert (run_dir / "run.json").read_bytes() == run_json

    resumed = Search(["--resume", where], env, cwd=tmp_path, log_name="resume.log", prefix=drop)
    try:
        code = resumed.wait(timeout=600)
    finally:
        resumed.kill()
    assert code == 0, resumed.output()[-5000:]
    _assert_resumed_whole(run_dir, finished, finished_files)


def _slow_study(tmp_path: Path, data: Path, storage: Path | str, name: str) -> list[str]:
    """``search.study`` flags of a study of two trials in a row (augmentation none, then seed; one seed; 3 epochs),
    both on the smoke space's slow kind as the base: the first finishes, the fault hits the second mid-run."""
    base = tmp_path / "slow_base.json"
    base.write_text(json.dumps({"format": FORMAT, "task": "pneumonia3class", "config": kind_config("slow", 1e-3)}))
    args = ["augmentation", "--base", str(base), "--levels", "none,seed", "--seeds", "1", "--epochs", "3"]
    args += ["--max-concurrent", "1", "--no-report", "--data", str(data)]
    return args + ["--storage", str(storage), "--name", name]


@pytest.mark.parametrize("uri", [False, True], ids=["directory", "file-uri"])
def test_a_study_whose_run_folder_is_made_read_only_stops_and_resume_finishes_it(
    uri: bool, data: Path, tmp_path: Path, own_ray_env
) -> None:
    """As the search above, for ``python -m search.study``: one line that says to resume it with search.study."""
    drop = _without_dac_override()
    storage = tmp_path / ("shared" if uri else "runs")
    run_dir = storage / "study"
    where = f"file://{run_dir}" if uri else str(run_dir)
    env = own_ray_env("")
    args = _slow_study(tmp_path, data, f"file://{storage}" if uri else storage, "study")
    study = Search(args, env, cwd=tmp_path, prefix=drop, command=STUDY)
    try:
        finished, slow, _ = wait_for(
            _one_done_slow_one_running(run_dir), "a finished and a running trial", search=study
        )
        finished_files = _folder_digest(run_dir / finished)
        run_json = (run_dir / "run.json").read_bytes()
        _set_writable(run_dir, False)
        code = study.wait(timeout=300)
        rows = trial_results(run_dir)
        # --max-concurrent 1: the second trial reported nothing before the first one ended.
        assert min(r["timestamp"] for r in rows[slow]) >= rows[finished][-1]["timestamp"], rows
    finally:
        study.kill()
        _set_writable(run_dir, True)
    _assert_stopped_by_storage(code, study.output(), where, "Permission denied", "search.study")
    assert _folder_digest(run_dir / finished) == finished_files
    assert (run_dir / "run.json").read_bytes() == run_json
    assert _epochs(trial_results(run_dir)[slow])[-1] < 3, "the fault stopped the second trial before its end"

    resumed = Search(["--resume", where], env, cwd=tmp_path, log_name="resume.log", prefix=drop, command=STUDY)
    try:
        code = resumed.wait(timeout=600)
    finally:
        resumed.kill()
    assert code == 0, resumed.output()[-5000:]
    _assert_resumed_whole(run_dir, finished, finished_files, study_db=False)
    assert json.loads((run_dir / "run.json").read_text())["finished"] is True


def test_a_truncated_checkpoint_found_on_resume_restarts_that_trial_from_scratch(
    data: Path, tmp_path: Path, own_ray_env
) -> None:
    run_dir = tmp_path / "runs" / "damaged"
    env = own_ray_env(FAULT_PLAN)
    search = Search(_fault_search(data, tmp_path / "runs", "damaged"), env, cwd=tmp_path)
    try:
        finished, slow, _ = wait_for(
            _one_done_slow_one_running(run_dir), "a finished and a running trial", search=search
        )
        search.proc.send_signal(signal.SIGINT)
        code = search.wait(timeout=300)
    finally:
        search.kill()
    assert code == 130 and "--resume" in search.output(), search.output()[-3000:]
    finished_files = _folder_digest(run_dir / finished)
    before = _epochs(trial_results(run_dir)[slow])
    # Tune keeps one checkpoint per trial (two for a moment, when it was stopped while replacing one): cut each short,
    # as a copy that did not finish would be, so the one Tune restores is damaged.
    checkpoints = sorted((run_dir / slow).glob(f"checkpoint_*/{CHECKPOINT_FILE}"))
    assert checkpoints
    for damaged in checkpoints:
        damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])

    resumed = Search(["--resume", str(run_dir)], env, cwd=tmp_path, log_name="resume.log")
    try:
        code = resumed.wait(timeout=600)
    finally:
        resumed.kill()
    assert code == 0, resumed.output()[-5000:]
    # One line says which trial and which file, and that it starts over.
    log = (run_dir / "search.log").read_text(errors="replace")
    said = [ln for ln in log.splitlines() if "could not be read" in ln and "from scratch" in ln]
    assert len(said) == 1, log[-5000:]
    assert slow.split("_")[2] in said[0], said[0]
    assert any(f"{c.parent.name}/{CHECKPOINT_FILE}" in said[0] for c in checkpoints), said[0]
    # Ray's result.json keeps what was reported before the restart; trials.csv keeps the trial's new run only.
    rows = trial_results(run_dir)[slow]
    assert _epochs(rows) == [*before, 1, 2, 3]
    trials = load_trials(run_dir)
    redone = trials[trials["trial_dir"] == slow]
    assert redone["epoch"].tolist() == [1, 2, 3] and set(redone["status"]) == {"COMPLETED"}
    assert redone["val_balanced_acc"].tolist() == [r["val_balanced_acc"] for r in rows[-3:]]
    assert not trials.duplicated(["trial_id", "epoch"]).any() and trials["trial_id"].nunique() == 2
    assert _folder_digest(run_dir / finished) == finished_files


@pytest.mark.parametrize(("moment", "epoch"), [("result", 2), ("inflight", 1), ("inflight", 0)])
def test_ctrl_c_at_an_epoch_boundary_resumes_training_no_epoch_twice(
    moment: str, epoch: int, data: Path, tmp_path: Path, own_ray_env
) -> None:
    """``result``: Ctrl+C as Tune records the second trial's epoch 2, before it records that epoch's checkpoint (Tune
    takes them in two steps). ``inflight``: Ctrl+C once that trial has trained epoch E+1 and written its checkpoint,
    after Tune recorded epoch E (0: none) and before it takes epoch E+1's result in. Either way the resumed trial goes
    on after the last epoch it trained: every epoch is reported once, and each epoch trained before Ctrl+C is reported
    as it was trained then (a second training of it would not take the same seconds)."""
    run_dir = tmp_path / "runs" / "edge"
    env = {**own_ray_env("ok,ok"), "CXR_INTERRUPT_AT": f"2:{epoch}:{moment}"}
    code, output = run_search(_fault_search(data, tmp_path / "runs", "edge"), env, cwd=tmp_path)
    assert code == 130 and f"python -m search.run --resume {run_dir}" in output, output[-3000:]
    assert "interrupt_at: SIGINT" in (run_dir / "search.log").read_text(errors="replace")
    before = trial_results(run_dir)
    first, second = sorted(before, key=trial_order)
    assert _epochs(before[first]) == [1, 2, 3] and _epochs(before[second]) == list(range(1, epoch + 1)), before
    trained = {}
    for path in (run_dir / second).glob(f"checkpoint_*/{CHECKPOINT_FILE}"):
        state = load_checkpoint_state(path.parent)
        trained[int(state["epoch"])] = state["history"][-1]
    # That epoch's checkpoint is written (a fast trial may even have trained the next one while the driver stopped it).
    assert (epoch + 1 if moment == "inflight" else epoch) in trained, sorted(trained)
    finished_files = _folder_digest(run_dir / first)

    resumed = Search(["--resume", str(run_dir)], env | {"CXR_INTERRUPT_AT": ""}, cwd=tmp_path, log_name="resume.log")
    try:
        code = resumed.wait(timeout=600)
    finally:
        resumed.kill()
    assert code == 0, resumed.output()[-5000:]
    rows = trial_results(run_dir)[second]
    assert _epochs(rows) == [1, 2, 3], _epochs(rows)
    for done, figures in trained.items():  # each epoch trained before Ctrl+C is reported as it was trained then
        assert {k: rows[done - 1][k] for k in ("train_loss", "epoch_seconds")} == {
            k: figures[k] for k in ("train_loss", "epoch_seconds")
        }, done
    assert _folder_digest(run_dir / first) == finished_files
    trials = load_trials(run_dir)
    assert not trials.duplicated(["trial_id", "epoch"]).any() and set(trials["status"]) == {"COMPLETED"}


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (OSError(28, "No space left on device"), "No space left on device"),
        (
            OSError(
                "When uploading part for key 'run/trial/checkpoint.pt' in bucket 'b': AWS Error ACCESS_DENIED during "
                "UploadPart operation: Access Denied"
            ),
            "AWS Error ACCESS_DENIED",
        ),
        (RuntimeError("An error occurred (AccessDenied) when calling the PutObject operation"), "AccessDenied"),
        (
            OSError("google::cloud::Status(PERMISSION_DENIED: Permission 'storage.objects.create' denied)"),
            "PERMISSION_DENIED",
        ),
    ],
)
def test_storage_faults_are_recognised_through_a_chain_local_and_object_store(error: Exception, reason: str) -> None:
    """A refused write deep in a trial's traceback, on a disk or a bucket, is named; any other error is not."""
    from search.faults import storage_failure

    try:
        try:
            raise error
        except Exception as inner:
            raise RuntimeError("Trial raised while saving its checkpoint") from inner
    except RuntimeError as outer:
        assert storage_failure(outer) == reason
    assert storage_failure(RuntimeError("CUDA out of memory")) is None
    assert storage_failure(OSError(2, "No such file or directory")) is None
