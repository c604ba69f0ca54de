"""Broken and hostile input (issue 11): every mistake is one ``error:`` line and exit code 2, nothing is written or
lost, and no code runs from a run folder.

Most cases call a command's ``main(argv)`` in this process (the same ``cli`` wrapper a shell call goes through) and
fail before Ray starts or an image is decoded; a few go through a real subprocess where the process itself matters
(a file size limit, dropped file permissions, a planted pickle). Two session fixtures hold the only real work: one
tiny search whose every trial fails (a one-class folder with the four-class space) and one tiny retrained model.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, _copy_slice, write_run_json, write_trial

from search.export import FORMAT as BEST_FORMAT
from search.export import export_best
from trainables.config import TrialConfig
from trainables.data import DEMO_DATA

PY = sys.executable
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1", "RAY_DEDUP_LOGS": "0"}


# -- helpers ----------------------------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with a hash of its bytes: equal snapshots mean nothing was written."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() and not p.is_symlink() else _digest(p)
    return out


def _digest(p: Path) -> str:
    try:
        return hashlib.sha256(p.read_bytes()).hexdigest()
    except OSError as exc:
        return f"unreadable {exc.errno}"


def call(module: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``python -m module argv`` in this process; any exception but SystemExit is a traceback the user would see."""
    mod = importlib.import_module(module)
    capsys.readouterr()
    start_ray = getattr(mod, "_start_ray", None)
    if start_ray is not None:  # a command that should be refused must not start a search in the test process

        def refuse(*args: object, **kwargs: object) -> None:
            raise AssertionError(f"{module} {argv} got as far as starting Ray")

        mod._start_ray = refuse
    try:
        code = mod.main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    except AssertionError:
        raise
    except BaseException as exc:  # noqa: BLE001 - the point is to report it as the traceback a user would get
        pytest.fail(f"{module} {argv} raised {type(exc).__name__}: {exc} (a traceback for the user)")
    finally:
        if start_ray is not None:
            mod._start_ray = start_ray
    return code, capsys.readouterr().err


def assert_refused(code: int, err: str, *words: str) -> None:
    """Exit 2, no traceback, exactly one ``error:`` line, last, naming every word given."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert "Traceback" not in err, err
    assert lines and lines[-1].startswith("error: "), err
    assert sum(ln.startswith("error:") for ln in lines) == 1, err
    for w in words:
        assert w in lines[-1], (w, lines[-1])


def run_cli(args: list[str], cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PY, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env or ENV, check=False
    )


class _Planted:
    """A pickle that, when loaded, creates a marker file: what an attacker would put in a shared run folder."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def plant_pickle(run_dir: Path, marker: Path) -> None:
    for name in ("tuner.pkl", *(p.name for p in run_dir.glob("searcher-state-*.pkl"))):
        (run_dir / name).write_bytes(pickle.dumps(_Planted(marker)))


# -- fixtures -----------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _own_log_handlers():
    """Commands call ``logging.basicConfig``, which binds a handler to this test's captured stderr; drop it after."""
    saved = list(logging.root.handlers)
    yield
    logging.root.handlers[:] = saved


@pytest.fixture()
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working folder to run in; tests assert it holds the same files afterwards."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _copy_slice(
        tmp_path_factory.mktemp("hostile-data") / "chest_xray",
        {"train/NORMAL": 10, "train/PNEUMONIA": 20, "test/NORMAL": 4, "test/PNEUMONIA": 8},
    )


@pytest.fixture(scope="session")
def failed_search(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """The one real search: a one-class folder under the four-class space, so every trial ends as ERROR."""
    base = tmp_path_factory.mktemp("hostile-search")
    only = base / "data" / "ONLY"
    only.mkdir(parents=True)
    for f in sorted((DEMO_DATA / "train" / "NORMAL").iterdir())[:12]:
        shutil.copy(f, only / f.name)
    args = ["-m", "search.run", "--space", "cxr4class", "--data", str(base / "data"), "--num-samples", "2"]
    args += ["--max-epochs", "1", "--no-recipes", "--no-report", "--storage", str(base / "runs"), "--name", "onecls"]
    proc = run_cli(args, cwd=base, timeout=900)
    return base / "runs" / "onecls", proc


def _best_doc(config: dict | None = None, **top: object) -> dict:
    return {
        "format": BEST_FORMAT,
        "config": {
            "model": "tinyvgg",
            "width": 0.25,
            "image_size": "32",
            "batch_size": 8,
            "epochs": 1,
            **(config or {}),
        },
        "task": "pneumonia3class",
        "space": "pneumonia3class",
        "metric": "val_balanced_acc",
        "validation": {"epoch": 1, "val_balanced_acc": 0.5},
        "data": {"val_fraction": 0.2, "split_seed": 0},
        **top,
    }


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory, small_data: Path) -> Path:
    """A real model folder from search.retrain: TinyVGG at quarter width, 32x32, one epoch."""
    base = tmp_path_factory.mktemp("hostile-model")
    best = base / "best_config.json"
    best.write_text(json.dumps(_best_doc()))
    proc = run_cli(["-m", "search.retrain", str(best), "--data", str(small_data), "--out", str(base / "model")], base)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return base / "model"


def synthetic_run(root: Path, name: str = "run", scored: bool = True, **extra: object) -> Path:
    """A finished run folder as search.run leaves it (run.json + two trial folders), without running a search."""
    run = write_run_json(root / name, name, ["normal", "bacterial", "viral"], **extra)
    metric = (lambda v: {"val_balanced_acc": v, "val_acc": v}) if scored else (lambda v: {"train_loss": v})
    write_trial(run, "aaaa0001", 1, {"batch_size": 16}, [metric(0.5), metric(0.6)])
    write_trial(run, "bbbb0002", 2, {"batch_size": 32}, [metric(0.4)])
    return run


# -- search.run: flags ------------------------------------------------------------------------------------------

_SPACE = ["--space", "pneumonia3class", "--storage", "runs"]


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--name", "../../x"], ["--name", "'../../x'"]),
        (["--name", "a/b"], ["--name", "'a/b'"]),
        (["--name", ""], ["--name", "''"]),
        (["--name", "."], ["--name", "'.'"]),
        (["--name", ".."], ["--name", "'..'"]),
        (["--time-budget", "-5"], ["--time-budget", "-5"]),
        (["--time-budget", "nan"], ["--time-budget", "finite"]),
        (["--time-budget", "inf"], ["--time-budget", "finite"]),
        (["--rung-seconds", "-1"], ["--rung-seconds", ">= 0"]),
        (["--rung-seconds", "nan"], ["--rung-seconds", "finite"]),
        (["--local-share", "1.5"], ["--local-share", "0 to 1"]),
        (["--local-share", "nan"], ["--local-share", "0 to 1"]),
        (["--full-trainings", "-1"], ["--full-trainings", ">= 0"]),
        (["--cpus-per-trial", "nan"], ["--cpus-per-trial", "finite"]),
        (["--cpus-per-trial", "0"], ["--cpus-per-trial", "> 0"]),
        (["--cpus-per-trial", "4096"], ["--cpus-per-trial 4096", "CPU(s)"]),
        (["--gpus-per-trial", "-1"], ["--gpus-per-trial", ">= 0"]),
        (["--val-fraction", "nan"], ["--val-fraction"]),
        (["--val-fraction", "1.5"], ["--val-fraction", "between 0 and 1"]),
        (["--num-samples", "0"], ["--num-samples", ">= 1"]),
        (["--max-epochs", "0"], ["--max-epochs", ">= 1"]),
        (["--reduction-factor", "1"], ["--reduction-factor", ">= 2"]),
        (["--metric", "val_accuracy"], ["--metric", "val_accuracy"]),
        (["--space", "nope"], ["--space", "'nope'"]),
        (["--data", "/no/such/folder"], ["--data", "/no/such/folder"]),
        (["--data", str(ROOT / "pyproject.toml")], ["--data", "not a directory"]),
    ],
)
def test_search_run_refuses_bad_flags_before_ray(
    flags: list[str], words: list[str], work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(work)
    code, err = call("search.run", [*_SPACE, *flags], capsys)
    assert_refused(code, err, *words)
    assert snapshot(work) == before


def test_more_gpus_than_the_machine_has_is_refused_on_a_local_run(work: Path, capsys: pytest.CaptureFixture[str]):
    import torch

    wanted = torch.cuda.device_count() + 4
    code, err = call("search.run", [*_SPACE, "--gpus-per-trial", str(wanted)], capsys)
    assert_refused(code, err, f"--gpus-per-trial {wanted}", "GPU(s)", "--address")
    assert snapshot(work) == {}


@pytest.fixture()
def ray_running():
    """A real local Ray instance in this process (2 CPUs, no GPU), shut down after the test."""
    import ray

    ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.cluster_resources()
    finally:
        ray.shutdown()


def test_on_a_cluster_more_gpus_than_present_is_a_warning_not_an_error(ray_running, caplog) -> None:
    """With --address an autoscaler may add GPU nodes later: the search warns and waits; a local run refuses."""
    from runstore.errors import UserError
    from search.run import _check_cluster_resources

    assert ray_running.get("GPU", 0) == 0 and ray_running["CPU"] == 2
    with caplog.at_level(logging.WARNING, logger="search.run"):
        _check_cluster_resources("auto", 1.0, 2.0)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "2 GPU(s) per trial but the cluster has 0: no trial can start until the cluster grows (an "
        "autoscaler may add nodes)"
    ]
    caplog.clear()
    with pytest.raises(UserError, match="this machine cannot run a trial: 2 GPU"):
        _check_cluster_resources(None, 1.0, 2.0)
    with caplog.at_level(logging.WARNING, logger="search.run"):
        _check_cluster_resources("auto", 2.0, 0.0)  # exactly what the cluster has: silent
    assert not caplog.records


# -- search.run --resume: run.json and the trust boundary --------------------------------------------------------


def _resume_run(work: Path, info: dict | str | list) -> Path:
    run = work / "runs" / "r"
    run.mkdir(parents=True)
    (run / "run.json").write_text(info if isinstance(info, str) else json.dumps(info))
    return run


_GOOD_INFO = {"name": "r", "settings": {"space": "pneumonia3class"}, "finished": False, "storage": "runs"}


@pytest.mark.parametrize(
    ("info", "words"),
    [
        ("{not json", ["run.json", "not valid JSON"]),
        ([1, 2], ["run.json", "JSON object"]),
        ({"name": "r"}, ["run.json", "settings"]),
        ({**_GOOD_INFO, "settings": {"space": "pneumonia3class", "turbo": True}}, ["run.json", "turbo"]),
        ({**_GOOD_INFO, "settings": {"space": "pneumonia3class", "time_budget_s": "soon"}}, ["time_budget_s"]),
        ({**_GOOD_INFO, "settings": {"space": "pneumonia3class", "num_samples": 0}}, ["run.json", "--num-samples"]),
        ({**_GOOD_INFO, "settings": {"space": "nope"}}, ["run.json", "'nope'"]),
        ({**_GOOD_INFO, "settings": {"seed": 1}}, ["run.json", "no space"]),
        ({**_GOOD_INFO, "name": "../../elsewhere"}, ["run.json", "--name", "../../elsewhere"]),
        ({**_GOOD_INFO, "settings": {"space": "pneumonia3class", "data": "/no/such/data"}}, ["/no/such/data"]),
        ({**_GOOD_INFO, "finished": "no"}, ["run.json", "finished"]),
        ({**_GOOD_INFO, "mode": "sideways"}, ["run.json", "sideways"]),
        ({**_GOOD_INFO, "finished": True, "ended": "2026-11-20T10:00:00"}, ["was finished", "2026-11-20T10:00:00"]),
        (_GOOD_INFO, ["not created on this machine", "--trust-run"]),
        ({**_GOOD_INFO, "run_id": "0123abcd"}, ["not created on this machine", "--trust-run"]),
    ],
)
def test_resume_refuses_a_bad_or_foreign_run_json(
    info: dict, words: list[str], work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _resume_run(work, info)
    before = snapshot(work)
    code, err = call("search.run", ["--resume", str(run)], capsys)
    assert_refused(code, err, *words)
    assert snapshot(work) == before


@pytest.mark.parametrize("target", ["/no/such/run", "."])
def test_resume_of_something_that_is_not_a_run(target: str, work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = call("search.run", ["--resume", target], capsys)
    assert_refused(code, err, "run")
    assert snapshot(work) == {}


def test_a_planted_pickle_in_a_foreign_run_folder_never_runs(work: Path) -> None:
    """The issue's finding 1, as a user would meet it: a shared folder with a harmful tuner.pkl and searcher state."""
    run = _resume_run(work, {**_GOOD_INFO, "run_id": "f" * 32})
    (run / "searcher-state-2026-11-20_10-00-00.pkl").write_bytes(b"")
    marker = work / "PWNED"
    plant_pickle(run, marker)
    before = snapshot(work)
    proc = run_cli(["-m", "search.run", "--resume", str(run)], cwd=work)
    assert_refused(proc.returncode, proc.stderr, "--trust-run")
    assert not marker.exists()
    assert snapshot(work) == before


# -- search.study: flags and --resume ----------------------------------------------------------------------------

_STUDY = ["--storage", "runs"]


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        ([], ["a study is required", "batch-size", "augmentation"]),
        (["nope"], ["unknown study 'nope'", "batch-size, augmentation"]),
        (["batch-size", "--levels", "0,35"], ["--levels", "'0'", "1 to 300"]),
        (["batch-size", "--levels", "35,301"], ["--levels", "'301'", "1 to 300"]),
        (["batch-size", "--levels", "eight"], ["--levels", "'eight'"]),
        (["batch-size", "--levels", "8,,35"], ["--levels", "comma-separated"]),
        (["batch-size", "--levels", ""], ["--levels", "comma-separated"]),
        (["batch-size", "--levels", "8,08"], ["--levels", "twice"]),
        (["augmentation", "--levels", "none,blur"], ["--levels", "'blur'", "none, seed"]),
        (["augmentation", "--levels", "35"], ["--levels", "'35'"]),
        (["batch-size", "--seeds", "0"], ["--seeds", "0"]),
        (["batch-size", "--seeds", "-2"], ["--seeds", "-2"]),
        (["batch-size", "--epochs", "0"], ["--epochs", ">= 1"]),
        (["augmentation", "--lr-rule", "linear"], ["--lr-rule", "batch-size study only"]),
        (["batch-size", "--lr-rule", "fixed,cubic"], ["--lr-rule", "'cubic'", "fixed, linear, sqrt"]),
        (["batch-size", "--lr-rule", "sqrt,sqrt"], ["--lr-rule", "twice"]),
        (["batch-size", "--recipe", "nope"], ["--recipe", "'nope'", "seed_tinyvgg"]),
        (["batch-size", "--recipe", "seed_tinyvgg", "--base", "b.json"], ["--base and --recipe"]),
        (["batch-size", "--base", "/no/such/best_config.json"], ["/no/such/best_config.json", "no such file"]),
        (["batch-size", "--task", "pneumonia9class"], ["--task", "'pneumonia9class'"]),
        (["batch-size", "--weights", "maybe"], ["--weights", "'maybe'"]),
        (["batch-size", "--name", "../../x"], ["--name", "'../../x'"]),
        (["batch-size", "--cpus-per-trial", "0"], ["--cpus-per-trial", "> 0"]),
        (["batch-size", "--cpus-per-trial", "4096"], ["--cpus-per-trial 4096", "CPU(s)"]),
        (["batch-size", "--max-concurrent", "0"], ["--max-concurrent", ">= 1"]),
        (["augmentation", "--data", "/no/such/folder"], ["--data", "/no/such/folder"]),
    ],
)
def test_search_study_refuses_bad_flags_before_ray(
    flags: list[str], words: list[str], work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(work)
    code, err = call("search.study", [*flags, *_STUDY], capsys)
    assert_refused(code, err, *words)
    assert snapshot(work) == before


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ("{not json", ["base.json", "not valid JSON"]),
        ({"config": {"model": "tinyvgg"}}, ["base.json", "not a best_config.json"]),
        (_best_doc({"model": "vgg99"}), ["base.json", "vgg99"]),
        (_best_doc({"batch_size": 0}), ["base.json", "batch_size"]),
    ],
)
def test_search_study_refuses_a_base_that_is_not_a_good_best_config(
    doc: dict | str, words: list[str], work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (work / "base.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    before = snapshot(work)
    code, err = call("search.study", ["augmentation", "--base", "base.json", *_STUDY], capsys)
    assert_refused(code, err, *words)
    assert snapshot(work) == before


_STUDY_INFO = {
    "name": "r",
    "kind": "study",
    "settings": {"study": "batch-size"},
    "study": {"name": "batch-size", "base": {"model": "tinyvgg"}, "levels": {"batch_size": [1, 35]}},
    "finished": False,
    "storage": "runs",
}


@pytest.mark.parametrize(
    ("command", "info", "words"),
    [
        ("search.study", _GOOD_INFO, ["run.json", "not a study", "search.run"]),
        ("search.run", _STUDY_INFO, ["run.json", "study run", "search.study"]),
        ("search.study", {**_STUDY_INFO, "kind": "sweep"}, ["run.json", "kind", "'sweep'"]),
        ("search.study", {**_STUDY_INFO, "study": "batch-size"}, ["run.json", "study", "expected dict"]),
        ("search.study", {k: v for k, v in _STUDY_INFO.items() if k != "study"}, ["run.json", '"study"']),
        ("search.study", {**_STUDY_INFO, "study": {"name": "batch-size"}}, ["run.json", "no base config"]),
        ("search.study", {**_STUDY_INFO, "settings": {"study": "nope"}}, ["run.json", "'nope'"]),
        ("search.study", {**_STUDY_INFO, "settings": {"study": "batch-size", "seeds": "3"}}, ["run.json", "seeds"]),
        ("search.study", {**_STUDY_INFO, "settings": {"study": "batch-size", "turbo": 1}}, ["run.json", "turbo"]),
        ("search.study", {**_STUDY_INFO, "finished": True}, ["was finished", "nothing to resume"]),
        ("search.study", {**_STUDY_INFO, "run_id": "0123abcd"}, ["not created on this machine", "--trust-run"]),
    ],
)
def test_resume_of_a_study_refuses_a_bad_foreign_or_wrong_kind_of_run(
    command: str, info: dict, words: list[str], work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _resume_run(work, info)
    before = snapshot(work)
    code, err = call(command, ["--resume", str(run)], capsys)
    assert_refused(code, err, *words)
    assert snapshot(work) == before


# -- the one real search: every trial fails ----------------------------------------------------------------------


@pytest.mark.slow
def test_a_search_where_every_trial_fails_exits_1_with_the_first_error_and_the_logs(failed_search) -> None:
    run, proc = failed_search
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-3000:]
    last = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1]
    assert last.startswith("error: no trial reported val_balanced_acc (2 trial(s)); first error"), last
    assert "num_classes must be >= 2, got 1" in last
    logs = Path(last.rsplit("logs: ", 1)[1])
    assert logs.is_file() and logs.is_relative_to(run) and "num_classes" in logs.read_text()
    assert json.loads((run / "run.json").read_text())["finished"] is True


@pytest.mark.slow
def test_resume_of_a_finished_run_says_it_was_finished(failed_search, capsys: pytest.CaptureFixture[str]) -> None:
    run, _ = failed_search
    before = snapshot(run)
    code, err = call("search.run", ["--resume", str(run)], capsys)
    assert_refused(code, err, str(run), "was finished", "nothing to resume")
    assert snapshot(run) == before


@pytest.mark.slow
def test_a_run_copied_from_elsewhere_with_a_planted_pickle_is_refused(failed_search, tmp_path: Path) -> None:
    """A real run folder, copied (as from a bucket or zip) and marked unfinished, with a harmful tuner.pkl."""
    run, _ = failed_search
    assert (run / "tuner.pkl").is_file() and json.loads((run / "run.json").read_text())["run_id"]
    copy = tmp_path / "runs" / "onecls"
    shutil.copytree(run, copy)
    info = json.loads((copy / "run.json").read_text())
    (copy / "run.json").write_text(json.dumps({**info, "finished": False}))
    marker = tmp_path / "PWNED"
    plant_pickle(copy, marker)
    before = snapshot(tmp_path)
    proc = run_cli(["-m", "search.run", "--resume", str(copy)], cwd=tmp_path)
    assert_refused(proc.returncode, proc.stderr, str(copy), "not created on this machine", "--trust-run")
    assert not marker.exists()
    assert snapshot(tmp_path) == before


@pytest.mark.slow
def test_export_and_report_of_a_run_with_no_scored_trial(failed_search, capsys: pytest.CaptureFixture[str]) -> None:
    run, _ = failed_search
    before = snapshot(run)
    code, err = call("search.export", [str(run)], capsys)
    assert_refused(code, err, "no trial has reported val_balanced_acc")
    assert snapshot(run) == before


# -- trainables.trial: key=value pairs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pairs", "words"),
    [
        (["freeze_backbone=maybe"], ["freeze_backbone", "'maybe'", "true or false"]),
        (["nesterov=2"], ["nesterov", "true or false"]),
        (["trivial_augment=on"], ["trivial_augment", "'on'"]),
        (["lr=NaN"], ["lr", "finite"]),
        (["lr=Infinity"], ["lr", "finite"]),
        (["lr=-1"], ["lr", "positive"]),
        (["weight_decay=nan"], ["weight_decay", "finite"]),
        (["dropout=1.5"], ["dropout", "[0, 1)"]),
        (["width=nan"], ["width", "finite"]),
        (["width=0"], ["width", "> 0"]),
        (["momentum=Infinity"], ["momentum", "finite"]),
        (["hflip=2"], ["hflip", "[0, 1]"]),
        (["rotate=NaN"], ["rotate", "finite"]),
        (["brightness=-Infinity"], ["brightness", "finite"]),
        (["batch_size=2.5"], ["batch_size", "integer"]),
        (["batch_size=abc"], ["batch_size", "integer"]),
        (["epochs=0"], ["epochs", ">= 1"]),
        (["image_size=7"], ["image size", "7x7"]),
        (["model=nope"], ["'nope'", "valid models"]),
        (["nokey=1"], ["nokey", "valid keys"]),
        (["lr"], ["key=value", "'lr'"]),
        (["lr=0.1", "lr=0.2"], ["lr", "twice"]),
        (["--val-fraction", "nan"], ["val_fraction"]),
        (["--split-seed", "-1"], ["--split-seed", ">= 0", "-1"]),
        (["--data", "/no/such/data"], ["/no/such/data"]),
    ],
)
def test_trial_refuses_bad_key_value_pairs_before_decoding(
    pairs: list[str], words: list[str], work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = call("trainables.trial", pairs, capsys)
    assert_refused(code, err, *words)
    assert snapshot(work) == {}


@pytest.mark.parametrize(
    ("pairs", "field", "expected"),
    [
        ({"model": "resnet18", "freeze_backbone": "False"}, "freeze_backbone", False),
        ({"trivial_augment": "False"}, "trivial_augment", False),
        ({"nesterov": "no"}, "nesterov", False),
        ({"nesterov": "YES"}, "nesterov", True),
        ({"trivial_augment": 1}, "trivial_augment", True),
        ({"trivial_augment": "0"}, "trivial_augment", False),
    ],
)
def test_booleans_from_strings_mean_what_they_say(pairs: dict, field: str, expected: bool) -> None:
    """The issue's finding 5: ``freeze_backbone=False`` used to freeze the backbone (``bool("False")`` is True)."""
    from trainables.trial import parse_assignments

    via_cli = parse_assignments([f"{k}={v}" for k, v in pairs.items()])
    assert getattr(TrialConfig.from_dict(via_cli), field) is expected
    assert getattr(TrialConfig.from_dict(pairs), field) is expected


# -- search.export: run folders and -o ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda run: (run / "run.json").write_text("{cut"), ["run.json", "not valid JSON"]),
        (lambda run: (run / "run.json").write_text("[]"), ["run.json", "JSON object"]),
        (lambda run: (run / "run.json").write_text('{"name": "run", "metric": 5}'), ["run.json", "metric"]),
        (lambda run: (run / "run.json").write_text('{"name": "run", "max_epochs": "x"}'), ["max_epochs"]),
        (lambda run: (run / "run.json").write_text('{"name": "run", "settings": []}'), ["run.json", "settings"]),
        (lambda run: next(run.glob("*/params.json")).write_text("{cut"), ["params.json"]),
        (lambda run: next(run.glob("*/params.json")).write_text("[1]"), ["params.json", "JSON object"]),
        (lambda run: (run / "run.json").unlink(), ["holds no run"]),
    ],
)
@pytest.mark.parametrize("command", ["search.export", "reports.build"])
def test_damaged_run_files_are_one_line_for_export_and_reports(
    command: str, damage, words: list[str], work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = synthetic_run(work)
    damage(run)
    before = snapshot(work)
    code, err = call(command, [str(run)], capsys)
    assert_refused(code, err, *words)
    assert snapshot(work) == before


def test_export_o_refuses_to_overwrite_another_runs_run_json(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, other = synthetic_run(work, "run"), synthetic_run(work, "other")
    before = snapshot(work)
    code, err = call("search.export", [str(run), "-o", str(other / "run.json")], capsys)
    assert_refused(code, err, str(other / "run.json"), "--force")
    assert snapshot(work) == before


def test_export_o_onto_a_folder_is_refused(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = synthetic_run(work)
    before = snapshot(work)
    code, err = call("search.export", [str(run), "-o", str(work)], capsys)
    assert_refused(code, err, "-o", "is a directory")
    assert snapshot(work) == before


def test_export_unknown_metric_is_one_line(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = synthetic_run(work)
    code, err = call("search.export", [str(run), "--metric", "val_nope"], capsys)
    assert_refused(code, err, "val_nope")
    assert not (run / "best_config.json").exists()


def test_export_o_replaces_its_own_file_and_a_foreign_one_only_with_force(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = synthetic_run(work)
    notes = work / "notes.json"
    notes.write_text('{"mine": true}')
    assert call("search.export", [str(run), "-o", str(work / "best.json")], capsys)[0] == 0
    assert call("search.export", [str(run), "-o", str(work / "best.json")], capsys)[0] == 0  # ours: replaced
    assert call("search.export", [str(run), "-o", str(notes), "--force"], capsys)[0] == 0
    assert json.loads(notes.read_text())["format"] == BEST_FORMAT


def test_a_damaged_trials_csv_is_not_read_and_is_rewritten_whole(work: Path, capsys: pytest.CaptureFixture[str]):
    """trials.csv is an output (export and reports read each trial's own files), so garbage in it costs nothing."""
    from runstore.trials import write_trials_csv

    run = synthetic_run(work)
    (run / "trials.csv").write_bytes(b'\xff\xfe garbage,\n"unclosed')
    assert call("search.export", [str(run)], capsys)[0] == 0
    write_trials_csv(run)
    assert (run / "trials.csv").read_text().startswith("trial_id,order,status,epoch")
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_a_write_cut_short_by_a_file_size_limit_keeps_the_old_best_config(work: Path) -> None:
    """The issue's finding 2: ``ulimit -f 1`` used to leave best_config.json cut at 1,024 bytes."""
    run = synthetic_run(work)
    good = export_best(run)
    text = good.read_text()
    assert len(text) > 1024
    proc = subprocess.run(
        ["bash", "-c", f"ulimit -f 1; exec {PY} -m search.export {run}"],
        cwd=work,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
        check=False,
    )
    assert proc.returncode != 0
    assert good.read_text() == text and json.loads(text)["format"] == BEST_FORMAT


# -- search.retrain: best_config.json ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ("{cut", ["not valid JSON"]),
        ({"format": "something/else", "config": {}}, ["not a best_config.json"]),
        (_best_doc({"lr": float("nan")}), ["lr", "finite"]),
        (_best_doc({"dropout": 5}), ["dropout", "[0, 1)"]),
        (_best_doc({"freeze_backbone": "maybe"}), ["freeze_backbone", "true or false"]),
        (_best_doc({"batch_size": "lots"}), ["batch_size", "integer"]),
        (_best_doc(task="pneumonia9class"), ["task", "'pneumonia9class'"]),
        (_best_doc(data={"val_fraction": "abc"}), ["data.val_fraction", "'abc'"]),
        (_best_doc(data={"val_fraction": 0.2, "split_seed": -1}), ["data.split_seed", "-1"]),
        (_best_doc(data=[1]), ["data must be an object"]),
    ],
)
def test_retrain_refuses_a_bad_best_config_before_decoding(
    doc: dict | str, words: list[str], work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = work / "best_config.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    before = snapshot(work)
    code, err = call("search.retrain", [str(path)], capsys)
    assert_refused(code, err, str(path), *words)
    assert snapshot(work) == before


@pytest.mark.parametrize(
    ("extra", "words"),
    [(["--epochs", "0"], ["--epochs", ">= 1"]), (["--data", "/no/such/data"], ["--data", "/no/such/data"])],
)
def test_retrain_refuses_bad_flags(extra, words, work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = work / "best_config.json"
    path.write_text(json.dumps(_best_doc()))
    before = snapshot(work)
    code, err = call("search.retrain", [str(path), *extra], capsys)
    assert_refused(code, err, *words)
    assert snapshot(work) == before


# -- search.evaluate: model folders and data ---------------------------------------------------------------------


#: The first member's state dict in a model folder (format v2).
_WEIGHTS = "members/0/weights.pt"


def _edit_json(name: str, edit):
    def apply(model: Path) -> None:
        path = model / name
        path.write_text(json.dumps(edit(json.loads(path.read_text()))))

    return apply


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda m: (m / "labels.json").write_text("{cut"), ["not valid JSON"]),
        (_edit_json("labels.json", lambda d: list(d.values())), ["labels.json", "two classes"]),
        (_edit_json("labels.json", lambda d: {"a": "x", "b": "y", "c": "z"}), ["labels.json", "0..2"]),
        (_edit_json("labels.json", lambda d: {"0": "x", "1": "x", "2": "z"}), ["labels.json", "distinct"]),
        (_edit_json("preprocessing.json", lambda d: {k: v for k, v in d.items() if k != "height"}), ["height"]),
        (_edit_json("preprocessing.json", lambda d: {**d, "channels": 2}), ["preprocessing.json", "channels"]),
        (_edit_json("preprocessing.json", lambda d: {**d, "height": "32"}), ["preprocessing.json", "height"]),
        (_edit_json("preprocessing.json", lambda d: {**d, "resize": "zoom"}), ["preprocessing.json", "'zoom'"]),
        (_edit_json("preprocessing.json", lambda d: {**d, "members": [{**d["members"][0], "std": [0.0]}]}), ["std"]),
        (lambda m: (m / "preprocessing.json").write_text('{"mean": [NaN]}'), ["preprocessing.json", "missing"]),
        (_edit_json("config.json", lambda d: {**d, "members": [{**d["members"][0], "dropout": 5}]}), ["dropout"]),
        (
            _edit_json("config.json", lambda d: {**d, "members": [{**d["members"][0], "lr": "x"}]}),
            ["config.json", "lr"],
        ),
        (_edit_json("config.json", lambda d: {**d, "format": "other"}), ["config.json", "not written by"]),
        (_edit_json("config.json", lambda d: {**d, "task": "nope"}), ["config.json", "'nope'"]),
        (lambda m: (m / _WEIGHTS).unlink(), ["weights.pt"]),
        (lambda m: (m / _WEIGHTS).write_bytes(b"\x80\x04not a pickle"), ["weights.pt", "state dict"]),
        (
            _edit_json("preprocessing.json", lambda d: {**d, "members": [{**d["members"][0], "height": 48}]}),
            ["weights.pt"],
        ),
    ],
)
def test_evaluate_refuses_a_damaged_model_folder(
    damage, words: list[str], model_dir: Path, small_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    damage(model)
    before = snapshot(tmp_path)
    code, err = call("search.evaluate", [str(model), "--data", str(small_data)], capsys)
    assert_refused(code, err, *words)
    assert snapshot(tmp_path) == before


def test_a_weights_file_carrying_a_harmful_pickle_is_refused_without_running_it(
    model_dir: Path, small_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """weights.pt is loaded with ``weights_only=True``: a pickle that would run code is an error, and runs nothing."""
    model, marker = tmp_path / "model", tmp_path / "PWNED"
    shutil.copytree(model_dir, model)
    (model / _WEIGHTS).write_bytes(pickle.dumps(_Planted(marker)))
    code, err = call("search.evaluate", [str(model), "--data", str(small_data)], capsys)
    assert_refused(code, err, "weights.pt")
    assert not marker.exists()


def test_evaluate_names_class_folders_the_model_does_not_know(
    model_dir: Path, small_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "other-hospital"
    for cls in ("NORMAL", "PNEUMONIA", "COVID19"):
        shutil.copytree(small_data / "test" / ("PNEUMONIA" if cls == "COVID19" else cls), data / cls)
    code, err = call("search.evaluate", [str(model_dir), "--data", str(data)], capsys)
    assert_refused(code, err, "COVID19", "does not know")


@pytest.mark.parametrize(
    ("extra", "words"),
    [(["--data", "/no/such/data"], ["--data", "/no/such/data"]), (["--bootstrap", "5"], ["--bootstrap", ">= 10"])],
)
def test_evaluate_refuses_bad_flags(extra, words, model_dir: Path, small_data: Path, capsys) -> None:
    args = [str(model_dir), *extra] + ([] if "--data" in extra else ["--data", str(small_data)])
    code, err = call("search.evaluate", args, capsys)
    assert_refused(code, err, *words)


# -- images that cannot be read ----------------------------------------------------------------------------------


def _slice_with(tmp_path: Path, breakage) -> tuple[Path, Path]:
    data = _copy_slice(tmp_path / "chest_xray", {"train/NORMAL": 6, "train/PNEUMONIA": 12})
    bad = data / "train" / "NORMAL" / "IM-9999-0001.jpeg"
    breakage(bad)
    return data, bad


_PREPARE = (
    "import sys, json; from trainables.data import DataCatalog; from trainables.cache import ImageSpec; "
    "c = DataCatalog(sys.argv[1]); p = c.prepare(ImageSpec(32, 32)); print(json.dumps(p.broken))"
)


def test_an_unreadable_image_is_skipped_and_named_not_a_traceback(tmp_path: Path) -> None:
    """The issue's finding 3, with root's permission override dropped so ``chmod 000`` bites."""
    if not shutil.which("setpriv"):
        pytest.fail("setpriv (util-linux) is needed to drop CAP_DAC_OVERRIDE")

    def unreadable(p: Path) -> None:
        shutil.copy(next((p.parent).iterdir()), p)
        p.chmod(0)

    data, bad = _slice_with(tmp_path, unreadable)
    caps = "-dac_override,-dac_read_search"
    drop = ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}"] if os.geteuid() == 0 else []
    env = {**ENV, "CXR_SEARCH_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [*drop, PY, "-c", _PREPARE, str(data)], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [str(bad)]
    assert "could not be read or decoded: IM-9999-0001.jpeg" in proc.stderr


@pytest.mark.slow  # starts Ray: the profile, hence the image sizes to decode, depends on the cluster
def test_a_data_folder_where_every_image_is_broken_is_one_error_line(tmp_path: Path) -> None:
    """Files named .jpeg that hold text: nothing decodes, so no trial could train; refused before any trial starts."""
    data = tmp_path / "chest_xray"
    names = {"NORMAL": ["IM-0001-0001", "IM-0002-0001", "IM-0003-0001", "IM-0004-0001"]}
    names["PNEUMONIA"] = [f"person{i}_{kind}_1" for i in range(1, 5) for kind in ("bacteria", "virus")]
    for folder, stems in names.items():
        (data / "train" / folder).mkdir(parents=True)
        for stem in stems:
            (data / "train" / folder / f"{stem}.jpeg").write_text(f"not an X-ray: {stem}\n")
    before = snapshot(data)
    args = ["-m", "search.run", "--space", "pneumonia3class", "--data", str(data), "--num-samples", "1"]
    args += ["--max-epochs", "1", "--storage", str(tmp_path / "runs"), "--name", "broken"]
    env = {**ENV, "CXR_SEARCH_CACHE": str(tmp_path / "cache")}
    proc = run_cli(args, cwd=tmp_path, env=env)
    assert_refused(proc.returncode, proc.stderr, "--data", str(data), "no image", "12 broken file(s)", "IM-0001-0001")
    assert snapshot(data) == before
    # Nothing in storage but the search's log: no run.json, no Tune state, no trial folder.
    assert sorted(p.name for p in (tmp_path / "runs").rglob("*")) == ["broken", "search.log"]


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param(lambda p: os.symlink(p.name, p), id="symlink-loop"),
        pytest.param(lambda p: os.symlink(p.parent / "gone.jpeg", p), id="dangling-symlink"),
    ],
)
def test_a_link_that_leads_nowhere_is_named_with_the_broken_files(breakage, tmp_path: Path) -> None:
    from trainables.data import DataCatalog

    data, bad = _slice_with(tmp_path, breakage)
    catalog = DataCatalog(data, cache_directory=tmp_path / "cache")
    assert catalog.index.unreadable == [str(bad)]
    with pytest.warns(UserWarning, match="IM-9999-0001.jpeg"):
        assert catalog.prepare(TrialConfig(image_size="32").image_spec).broken == [str(bad)]


# -- reports.model: a model folder's page ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "args", "words"),
    [
        (lambda m: None, lambda m: [str(m / "no-such")], ["no-such", "not a model directory"]),
        (lambda m: (m / "metrics.json").write_text("{cut"), lambda m: [str(m)], ["not valid JSON"]),
        (lambda m: (m / "metrics.json").write_text('{"test": [1, 2]}'), lambda m: [str(m)], ["test", "scores"]),
        (lambda m: (m / "metrics.json").write_text("{}"), lambda m: [str(m)], ["no held-out or test figures"]),
        (lambda m: (m / "page").mkdir(), lambda m: [str(m), "-o", str(m / "page")], ["-o", "is a directory"]),
    ],
)
def test_the_model_report_refuses_what_it_cannot_show(
    damage, args, words, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    damage(model)
    before = snapshot(model)
    code, err = call("reports.model", args(model), capsys)
    assert_refused(code, err, *words)
    assert snapshot(model) == before
