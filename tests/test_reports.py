"""The report: collected numbers against run directories whose values are known, edge cases, escaping, the CLI,
and one real small search whose report is built by ``search.run`` itself.

Synthetic runs are written here the way Ray Tune and ``search.run`` write them (run.json, params.json, result.json
lines, error.txt, an Optuna study), so every number a page shows is known in advance.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
from conftest import ROOT, write_run_json, write_trial

from reports import batch_size, overfitting, overview, per_class, resolution, rundata
from reports.build import build_report
from runstore.layout import PAGES_MANIFEST
from runstore.ranking import rank_trials
from runstore.trials import load_trials

CLASSES = ["normal", "bacterial", "viral"]
PAGES = ["index.html", "batch_size.html", "overfitting.html", "resolution.html", "per_class.html"]


def _epochs(bal: list[float], ts: list[int], **per_epoch: list[float]) -> list[dict]:
    """Result rows: val_balanced_acc per epoch, the timestamp each was reported, and any other metric lists."""
    rows = []
    for i, (b, t) in enumerate(zip(bal, ts)):
        row = {"val_balanced_acc": b, "val_acc": b, "timestamp": t, "num_params": 1000, "val_majority_rate": 0.5}
        row |= {"train_acc": 0.5, "train_loss": 1.0, "val_loss": 1.0}
        row |= {"val_recall_normal": 1.0, "val_recall_bacterial": 0.5, "val_recall_viral": 0.0}
        row |= {"val_confusion": "[[4, 0, 0], [2, 2, 0], [4, 0, 0]]"}
        for key, values in per_epoch.items():
            row[key] = values[i]
        rows.append(row)
    return rows


@pytest.fixture
def synth(tmp_path: Path) -> Path:
    """Six trials with known numbers (see the comments); max 4 epochs, ASHA grace 1, reduction factor 2."""
    run = write_run_json(tmp_path / "synth", "synth", CLASSES)
    # 1: seed recipe, completed, best 0.60 at epoch 3; val loss turns up at epoch 3 while train loss still falls.
    write_trial(
        run,
        "aaaa0001",
        1,
        {"recipe": "seed_tinyvgg@cpu", "hflip": 0.5, "trivial_augment": True},
        _epochs(
            [0.40, 0.50, 0.60, 0.55],
            [100, 110, 120, 130],
            train_loss=[1.0, 0.8, 0.6, 0.4],
            val_loss=[1.0, 0.9, 0.95, 1.1],
            train_acc=[0.5, 0.6, 0.7, 0.9],
            val_acc=[0.4, 0.5, 0.6, 0.55],
        ),
    )
    # 2: batch 8, stopped after 2 epochs near chance (best 0.34 <= 1/3 + 0.02): stopped early, too short to stall.
    write_trial(run, "bbbb0002", 2, {"batch_size": 8, "lr": 0.01}, _epochs([1 / 3, 0.34], [105, 115]))
    # 3: batch 8, the best trial: 0.8333 at epoch 4, with its own confusion matrix and recalls there.
    c_epochs = _epochs([0.5, 0.7, 0.72, 0.8333], [112, 122, 132, 142], num_params=[5000] * 4)
    c_epochs[-1] |= {"val_confusion": "[[4, 0, 0], [0, 3, 1], [0, 1, 3]]", "val_recall_bacterial": 0.75}
    c_epochs[-1] |= {"val_recall_viral": 0.75, "train_acc": 0.95, "val_acc": 0.85}
    write_trial(
        run,
        "cccc0003",
        3,
        {"batch_size": 8, "lr": 0.005, "image_size": "96x112", "rotate": 10.0, "crop_scale": 0.8},
        c_epochs,
    )
    # 4: failed before its first epoch.
    write_trial(run, "dddd0004", 4, {"model": "resnet18"}, [], error="RuntimeError: CUDA out of memory")
    # 5: failed after two epochs.
    write_trial(run, "eeee0005", 5, {}, _epochs([0.45, 0.5], [125, 135]), error="NonFiniteLossError: loss is nan")
    # 6: batch 128 at 128 px, stopped at the first rung (one epoch) at chance: stopped early, not stalled.
    write_trial(run, "ffff0006", 6, {"batch_size": 128, "image_size": "128"}, _epochs([1 / 3], [140]))
    return run


def test_counts_and_statuses(synth: Path) -> None:
    run = rundata.load_run(synth)
    assert run.counts == rundata.TrialCounts(
        total=6, completed=2, stopped=2, failed=2, failed_before_first_epoch=1, running=0, scored=5, epochs=13
    )
    assert "6 trials (2 completed, 2 stopped early, 2 failed (1 before their first epoch))" in run.counts.describe()
    assert run.classes == CLASSES and run.max_epochs == 4 and run.finished


def test_leaderboard_ranks_by_best_epoch_and_keeps_every_recipe(synth: Path) -> None:
    lb = overview.collect_leaderboard(rundata.load_run(synth), top=1)
    # The best trial, then the seed recipe although it is outside the top 1.
    assert [r["trial"] for r in lb.rows] == ["cccc0003", "aaaa0001"]
    assert [r["rank"] for r in lb.rows] == [1, 2]
    assert lb.rows[0]["val_balanced_acc"] == pytest.approx(0.8333)
    assert lb.rows[0]["best epoch / epochs"] == "4 / 4" and lb.rows[0]["augmentation"] == "rotate, crop_scale"
    assert lb.rows[1]["recipe"] == "seed_tinyvgg@cpu" and lb.rows[1]["best epoch / epochs"] == "3 / 4"
    full = overview.collect_leaderboard(rundata.load_run(synth))
    assert [r["trial"] for r in full.rows] == ["cccc0003", "aaaa0001", "eeee0005", "bbbb0002", "ffff0006"]


def test_failures_table(synth: Path) -> None:
    failed = overview.collect_failures(rundata.load_run(synth))
    assert list(failed["trial_id"]) == ["dddd0004", "eeee0005"]
    assert list(failed["epochs_done"]) == [0, 2]
    assert failed["error"].iloc[0] == "RuntimeError: CUDA out of memory"


def test_best_so_far_by_trial_and_by_epochs(synth: Path) -> None:
    b = overview.collect_best_so_far(rundata.load_run(synth))
    assert b.trial_number == [1, 2, 3, 4, 5, 6]
    assert b.trial_value == pytest.approx([0.60, 0.34, 0.8333, None, 0.5, 1 / 3])
    assert b.trial_best == pytest.approx([0.60, 0.60, 0.8333, 0.8333, 0.8333, 0.8333])
    assert b.trial_is_recipe == [True, False, False, False, False, False]
    # Every epoch of every trial in the order reported (timestamps interleave the trials).
    assert b.epoch_cumulative == list(range(1, 14))
    assert b.epoch_trial_id[:5] == ["aaaa0001", "bbbb0002", "aaaa0001", "cccc0003", "bbbb0002"]
    expected = [0.40, 0.40, 0.5, 0.5, 0.5, 0.6, 0.7, 0.7, 0.7, 0.72, 0.72, 0.72, 0.8333]
    assert b.epoch_best == pytest.approx(expected)


def test_asha_rungs_and_epochs_saved(synth: Path) -> None:
    a = overview.collect_asha(rundata.load_run(synth))
    assert a.rungs == [1, 2, 4]
    assert a.rung_metric == "val_balanced_acc"  # a run.json from before --rung-metric: the run's metric
    # Ended trials: 4, 2, 4, 1 epochs; the two failed ones are left out.
    assert a.reached == [4, 3, 2] and a.started == 4 and a.left_out == 2
    assert (a.epochs_trained, a.epochs_without_stopping, a.epochs_saved) == (11, 16, 5)
    assert overview.asha_rungs(1, 3, 8) == [1, 3, 8] and overview.asha_rungs(2, 3, 30) == [2, 6, 18, 30]
    with pytest.raises(ValueError, match="reduction_factor >= 2"):
        overview.asha_rungs(1, 1, 8)


def test_batch_size_stalls_and_lr_scaling(synth: Path) -> None:
    bs = batch_size.collect_batch_size(rundata.load_run(synth))
    assert "1/3 + 0.02 = 0.353" in bs.stall_rule and "first 5 epochs" in bs.stall_rule
    per = bs.per_trial.set_index("trial_id")
    # Stopped by ASHA after 1 and 2 epochs near chance: "stopped early", never "stalled" (the rule needs 5 epochs).
    assert per.loc["bbbb0002", "outcome"] == per.loc["ffff0006", "outcome"] == "stopped early"
    assert not per["stalled"].any()
    assert per.loc["aaaa0001", "outcome"] == per.loc["cccc0003", "outcome"] == "trained"
    assert per.loc["cccc0003", "lr_per_sample"] == pytest.approx(0.005 / 8)
    # Equal training: epoch 1, the furthest every scored trial reached (ffff0006 stopped there).
    assert bs.equal_epoch == 1
    assert per["score_equal"].to_dict() == pytest.approx(
        {"aaaa0001": 0.40, "bbbb0002": 1 / 3, "cccc0003": 0.5, "eeee0005": 0.45, "ffff0006": 1 / 3}
    )
    sizes = bs.per_size.set_index("batch_size")
    assert list(sizes.index) == [8, 32, 128]
    assert list(sizes["trials"]) == [2, 2, 1] and list(sizes["stalled"]) == [0, 0, 0]
    assert list(sizes["stopped_early"]) == [1, 0, 1] and list(sizes["judged"]) == [0, 0, 0]
    assert sizes["stalled_share"].isna().all()  # no trial trained long enough to be judged
    assert sizes.loc[8, "median_equal"] == pytest.approx((1 / 3 + 0.5) / 2)
    assert sizes.loc[8, "median_score"] == pytest.approx((0.34 + 0.8333) / 2)
    assert sizes.loc[32, "best_score"] == pytest.approx(0.60)
    curves = batch_size.collect_learning_curves(rundata.load_run(synth))
    assert [(cv.group, cv.trial_id) for cv in curves] == [
        ("8", "bbbb0002"),
        ("8", "cccc0003"),
        ("32", "aaaa0001"),
        ("32", "eeee0005"),
        ("128", "ffff0006"),
    ]
    assert curves[1].values == pytest.approx([0.5, 0.7, 0.72, 0.8333])


def test_stopped_early_is_not_stalled_and_stalled_needs_five_epochs(tmp_path: Path) -> None:
    """A search of up to 6 epochs: near chance for 6 epochs is "stalled"; stopped by ASHA at the first rung near
    chance is "stopped early"; near chance for 4 epochs, then above, is neither."""
    run = write_run_json(tmp_path / "stall", "stall", CLASSES, max_epochs=6)
    flat = [1 / 3, 0.34, 1 / 3, 0.35, 0.34, 0.34]
    write_trial(run, "aaaa0001", 1, {"batch_size": 300, "epochs": 6}, _epochs(flat, list(range(1, 7))))
    write_trial(run, "bbbb0002", 2, {"batch_size": 300, "epochs": 6}, _epochs([1 / 3], [7]))
    late = [1 / 3, 1 / 3, 0.34, 0.35, 0.5, 0.6]  # leaves chance at epoch 5: not stalled
    write_trial(run, "cccc0003", 3, {"batch_size": 35, "epochs": 6}, _epochs(late, list(range(8, 14))))
    bs = batch_size.collect_batch_size(rundata.load_run(run))
    per = bs.per_trial.set_index("trial_id")
    assert per["outcome"].to_dict() == {"aaaa0001": "stalled", "bbbb0002": "stopped early", "cccc0003": "trained"}
    sizes = bs.per_size.set_index("batch_size")
    assert sizes.loc[300, "judged"] == 1 and sizes.loc[300, "stalled_share"] == 1.0
    assert sizes.loc[35, "stalled_share"] == 0.0
    assert bs.equal_epoch == 1 and per.loc["cccc0003", "score_equal"] == pytest.approx(1 / 3)
    assert rundata.epochs_near_chance(late, 1 / 3) == 4 and rundata.stalled(late, 1 / 3) is False
    assert rundata.stalled(flat[:4], 1 / 3) is None  # too short to judge
    html = (build_report(run).parent / "batch_size.html").read_text()
    assert "trial, stalled" in html and "trial, stopped early" in html  # each outcome its own marker and legend
    assert "2 trial(s) trained long enough to be judged" in html


def test_turn_epoch_rule() -> None:
    assert overfitting.turn_epoch([1.0, 0.8, 0.6, 0.4], [1.0, 0.9, 0.95, 1.1]) == 3
    assert overfitting.turn_epoch([1.0, 0.8, 0.6], [1.0, 0.9, 0.8]) is None  # both still falling
    assert overfitting.turn_epoch([1.0, 1.1, 0.9], [1.0, 1.2, 1.1]) == 3  # epoch 2 rises in both: not a turn
    assert overfitting.turn_epoch([1.0], [1.0]) is None


def test_overfitting_curves_and_gap(synth: Path) -> None:
    run = rundata.load_run(synth)
    curves = overfitting.collect_fit_curves(run)
    assert [(cv.trial_id, cv.role) for cv in curves] == [
        ("cccc0003", "best"),
        ("bbbb0002", "worst"),
        ("aaaa0001", "seed_tinyvgg@cpu"),
    ]
    recipe = curves[2]
    assert recipe.turn_epoch == 3 and recipe.val_loss == [1.0, 0.9, 0.95, 1.1]
    gap = overfitting.collect_gap(run).set_index("trial_id")
    assert gap.loc["aaaa0001", "gap"] == pytest.approx(0.9 - 0.55)
    assert gap.loc["aaaa0001", "augment_ops"] == 2 and gap.loc["aaaa0001", "turn_epoch"] == 3
    assert gap.loc["cccc0003", "gap"] == pytest.approx(0.95 - 0.85)
    assert gap.loc["cccc0003", "num_params"] == 5000 and gap.loc["cccc0003", "epochs"] == 4
    assert gap.loc["bbbb0002", "augment_ops"] == 0 and pd.isna(gap.loc["bbbb0002", "turn_epoch"])
    # At equal training (epoch 1, the furthest every trial reached): train 0.5 - val 0.4 for the recipe.
    assert (gap["equal_epoch"] == 1).all() and gap.loc["aaaa0001", "gap_equal"] == pytest.approx(0.5 - 0.4)
    assert gap["stopped_early"].to_dict() == {
        "aaaa0001": False,
        "bbbb0002": True,
        "cccc0003": False,
        "eeee0005": False,
        "ffff0006": True,
    }
    assert len(gap) == 5  # the trial that failed before epoch 1 has nothing to show


def test_resolution_groups_by_pixels_and_augmentation_on_off(synth: Path) -> None:
    run = rundata.load_run(synth)
    size, channels, resize = resolution.collect_resolution(run)
    # Ordered by pixel count (64x64 < 96x112 < 128x128), not alphabetically.
    assert size.groups == ["64", "96x112", "128"]
    assert sorted(size.trials[0]) == ["aaaa0001", "bbbb0002", "eeee0005"]
    assert size.scores[1] == pytest.approx([0.8333]) and channels.groups == ["1"] and resize.groups == ["stretch"]
    at_equal = {e.op: e for e in resolution.collect_augmentation(run, epoch=1)}
    assert at_equal["hflip"].on == pytest.approx([0.40]) and at_equal["rotate"].on == pytest.approx([0.5])
    effects = {e.op: e for e in resolution.collect_augmentation(run)}
    assert effects["hflip"].on == pytest.approx([0.60]) and len(effects["hflip"].off) == 4
    assert effects["crop_scale"].on == pytest.approx([0.8333])
    assert effects["rotate"].difference == pytest.approx(0.8333 - (0.60 + 0.5 + 0.34 + 1 / 3) / 4)
    assert effects["vflip"].on == [] and effects["vflip"].difference is None


def test_per_class_recall_and_confusion_of_the_best_epoch(synth: Path) -> None:
    run = rundata.load_run(synth)
    cr = per_class.collect_class_recall(run, top=2)
    assert cr.classes == CLASSES and cr.trial_id == ["cccc0003", "aaaa0001"]
    assert cr.recall[0] == pytest.approx([1.0, 0.75, 0.75])
    conf = per_class.collect_confusion(run)
    assert conf is not None and (conf.trial_id, conf.epoch) == ("cccc0003", 4)
    assert conf.counts == [[4, 0, 0], [0, 3, 1], [0, 1, 3]]
    assert conf.row_share[1] == pytest.approx([0, 0.75, 0.25])


def test_parallel_coordinates_axes(synth: Path) -> None:
    par = overview.collect_parallel(rundata.load_run(synth))
    axes = {d.label: d for d in par.dimensions}
    assert par.trial_id == ["aaaa0001", "bbbb0002", "cccc0003", "eeee0005", "ffff0006"]
    assert axes["batch_size"].values == [32, 8, 8, 32, 128]
    assert axes["log10 lr"].values == pytest.approx([-3, -2, pytest.approx(-2.30103), -3, -3])
    assert axes["image_size"].ticktext == ["64", "96x112", "128"]
    assert axes["image_size"].values == [0, 0, 1, 0, 2]
    assert "model" not in axes  # only resnet18 differed, and that trial reported nothing
    assert par.dimensions[-1].label == "val_balanced_acc" and par.color == pytest.approx(
        [0.6, 0.34, 0.8333, 0.5, 1 / 3]
    )


def _study(run_dir: Path, name: str, trials: list[tuple[str, float, int, float]]) -> None:
    """An Optuna study like OptunaSearch's: lr's range depends on the optimizer, as in spaces/cxr.py."""
    storage = f"sqlite:///{run_dir / 'study.db'}"
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    ranges = {"sgd": (1e-3, 0.3), "adam": (1e-4, 1e-2)}
    for optimizer, lr, batch, value in trials:
        dists = {
            "optimizer": optuna.distributions.CategoricalDistribution(["sgd", "adam"]),
            "lr": optuna.distributions.FloatDistribution(*ranges[optimizer], log=True),
            "batch_size": optuna.distributions.CategoricalDistribution([8, 32]),
        }
        study.add_trial(
            optuna.trial.create_trial(
                params={"optimizer": optimizer, "lr": lr, "batch_size": batch}, distributions=dists, value=value
            )
        )


def test_importance_keeps_lr_whose_range_depends_on_the_optimizer(synth: Path) -> None:
    # The value depends on lr only; batch size and optimizer are noise.
    rows = [("sgd" if i % 2 else "adam", 10 ** (-3 + i / 9), [8, 32][i % 3 == 0], 0.3 + 0.05 * i) for i in range(10)]
    _study(synth, "synth", rows)
    imp = overview.collect_importance(rundata.load_run(synth))
    assert imp.reason is None and imp.n_trials == 10
    assert set(imp.params) == {"lr", "optimizer", "batch_size"} and imp.params[0] == "lr"
    assert sum(imp.importances) == pytest.approx(1.0)


def test_importance_says_why_when_it_cannot_be_computed(synth: Path) -> None:
    imp = overview.collect_importance(rundata.load_run(synth))
    assert imp.reason == "no Optuna study in this run (study.db is missing)" and imp.params == []
    assert not (synth / "study.db").exists()  # reading the report must not create a study
    _study(synth, "synth", [("adam", 1e-3, 8, 0.5)])
    imp = overview.collect_importance(rundata.load_run(synth))
    assert imp.reason == "needs at least 2 finished trials in the Optuna study; it has 1"
    html = (build_report(synth).parent / "index.html").read_text()
    assert "Importance not available: needs at least 2 finished trials" in html


def test_report_of_the_synthetic_run(synth: Path, tmp_path: Path) -> None:
    index = build_report(synth, tmp_path / "out")
    assert index == tmp_path / "out" / "index.html"
    for name in PAGES:
        text = (tmp_path / "out" / name).read_text()
        # Every page: the nav to all others, the run name, its question, and the small print on the trials.
        assert all(f'href="{p}"' in text for p in PAGES)
        assert "Run <b>synth</b>" in text and 'class="question"' in text
        assert "6 trials (2 completed, 2 stopped early, 2 failed (1 before their first epoch))" in text
        assert "cdn.plot.ly" not in text and "https://" not in text  # nothing fetched from the network
    assert (tmp_path / "out" / "plotly.min.js").stat().st_size > 1_000_000
    index_text = index.read_text()
    assert "NonFiniteLossError: loss is nan" in index_text  # the failed-trials table
    assert "ASHA saved 5 epochs (31%)" in index_text
    bs_page = (tmp_path / "out" / "batch_size.html").read_text()
    assert "stalled = val_balanced_acc still ≤ 1/3 + 0.02 = 0.353 at every one of the first 5 epochs" in bs_page
    assert "0 trial(s) trained long enough to be judged" in bs_page
    assert "python -m search.study batch-size" in bs_page and "Score at equal training" in bs_page
    for name in ("overfitting.html", "resolution.html"):
        assert "python -m search.study augmentation" in (tmp_path / "out" / name).read_text()


def test_one_trial_run(tmp_path: Path) -> None:
    run = write_run_json(tmp_path / "one", "one", CLASSES)
    write_trial(run, "aaaa0001", 1, {}, _epochs([0.5, 0.6, 0.55, 0.58], [1, 2, 3, 4]))
    _study(run, "one", [("adam", 1e-3, 8, 0.58)])
    data = rundata.load_run(run)
    assert overview.collect_best_so_far(data).trial_best == [0.6]
    assert overview.collect_asha(data).reached == [1, 1, 1]
    assert overview.collect_importance(data).reason == "needs at least 2 finished trials in the Optuna study; it has 1"
    par = overview.collect_parallel(data)
    assert [d.label for d in par.dimensions] == ["val_balanced_acc"]  # nothing varied
    index = build_report(run)
    assert index == run / "report" / "index.html"
    assert all((run / "report" / p).is_file() for p in PAGES)


def test_run_still_going(tmp_path: Path) -> None:
    """finished=false, a trial mid-epoch (half a JSON line at the end of result.json), one that has not reported."""
    run = write_run_json(tmp_path / "going", "going", CLASSES, finished=False)
    write_trial(run, "aaaa0001", 1, {}, _epochs([0.5, 0.6, 0.55, 0.58], [1, 2, 3, 4]))
    write_trial(run, "bbbb0002", 2, {}, _epochs([0.4, 0.45], [5, 6]), truncated=True)
    write_trial(run, "cccc0003", 3, {}, [])
    data = rundata.load_run(run)
    assert (data.counts.total, data.counts.completed, data.counts.running, data.counts.scored) == (3, 1, 2, 2)
    assert overview.collect_best_so_far(data).epoch_cumulative == [1, 2, 3, 4, 5, 6]
    a = overview.collect_asha(data)
    assert a.started == 1 and a.left_out == 2  # running trials are not counted as saved epochs
    index = build_report(run)
    text = index.read_text()
    assert "This run has not finished" in text and "2 trial(s) still running" in text


def test_run_with_no_trials(tmp_path: Path) -> None:
    run = write_run_json(tmp_path / "empty", "empty", CLASSES, finished=False)
    index = build_report(run)
    for name in PAGES:
        text = (index.parent / name).read_text()
        assert "No trial has started yet" in text
        assert 'class="plot"' not in text  # no empty figures, a sentence instead


def test_escaping_of_names_config_values_and_errors(tmp_path: Path) -> None:
    evil_class = "<img src=x onerror=alert(1)>"
    evil = "<script>alert(1)</script>"
    run = write_run_json(tmp_path / "evil", f"evil {evil}", ["normal", evil_class, "viral"])
    recalls = {f"val_recall_{evil_class}": 0.5, "val_recall_normal": 1.0, "val_recall_viral": 0.25}
    rows = [r | recalls for r in _epochs([0.5, 0.6], [1, 2])]
    write_trial(run, "aaaa0001", 1, {"recipe": evil, "resize": evil}, rows)
    write_trial(run, "bbbb0002", 2, {"batch_size": 8}, _epochs([0.4], [3]), error=f"ValueError: {evil}</script>")
    index = build_report(run)
    for name in PAGES:
        text = (index.parent / name).read_text()
        assert evil not in text and evil_class not in text
        # Every <script> block closes where it should: the count of openings and closings agree.
        assert text.count("<script") == text.count("</script>")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in index.read_text()  # shown as text in the tables
    per_class = (index.parent / "per_class.html").read_text()
    assert "&lt;img src=x onerror=alert(1)&gt;" in per_class


def test_cli_bad_input_is_one_line_and_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "reports.build", str(tmp_path / "nope")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    err = proc.stderr.strip()
    assert proc.returncode == 2 and err == f"error: {tmp_path / 'nope'}: no such run directory", err
    # The same wrapper in-process (no second interpreter start-up): a folder with no run.json.
    from reports.build import main

    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds no run (no run.json)" in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_cli_writes_the_report_and_prints_the_index(synth: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    proc = subprocess.run(
        [sys.executable, "-m", "reports.build", str(synth), "-o", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out / "index.html")
    assert sorted(p.name for p in out.iterdir()) == sorted([*PAGES, "plotly.min.js", PAGES_MANIFEST])


# -- one real small search ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_search_run_builds_the_report_and_its_numbers_match_trials_csv(reported_run: tuple[Path, str]) -> None:
    run_dir, stdout = reported_run
    m = re.search(r"^report:\s+(\S+)$", stdout, re.M)
    assert m, stdout[-2000:]
    index = Path(m.group(1))
    assert index == run_dir / "report" / "index.html"
    assert all((index.parent / p).is_file() for p in PAGES)

    csv = pd.read_csv(run_dir / "trials.csv")
    data = rundata.load_run(run_dir)
    assert data.counts.total == csv["trial_id"].nunique() == 6
    assert data.counts.epochs == int(csv.groupby("trial_id")["epochs_done"].max().sum())
    summary = rank_trials(load_trials(run_dir), "val_balanced_acc", "max")
    lb = overview.collect_leaderboard(data)
    assert lb.rows[0]["trial"] == str(summary.iloc[0]["trial_id"])
    assert lb.rows[0]["val_balanced_acc"] == pytest.approx(csv["val_balanced_acc"].max())
    assert {r["recipe"] for r in lb.rows if r["recipe"]} == set(csv["config/recipe"].dropna())
    b = overview.collect_best_so_far(data)
    assert b.epoch_cumulative[-1] == csv["val_balanced_acc"].notna().sum()
    assert b.epoch_best[-1] == pytest.approx(csv["val_balanced_acc"].max())
    a = overview.collect_asha(data)
    per_trial = csv.groupby("trial_id")["epochs_done"].max()
    assert a.rungs == [1, 2, 3] and a.reached[0] == (per_trial >= 1).sum() and a.reached[-1] == (per_trial == 3).sum()
    assert a.epochs_saved == 6 * 3 - per_trial.sum()
    conf = per_class.collect_confusion(data)
    best = csv[csv["trial_id"] == lb.rows[0]["trial"]]
    best_row = best.loc[best["val_balanced_acc"].idxmax()]
    assert conf is not None and conf.counts == json.loads(best_row["val_confusion"])
    assert sum(map(sum, conf.counts)) == 42  # the slice's validation split
    imp = overview.collect_importance(data)
    assert imp.reason is None and "lr" in imp.params and sum(imp.importances) == pytest.approx(1.0)
    bs = batch_size.collect_batch_size(data)
    assert bs.per_size["trials"].sum() == data.counts.scored
