"""The report of an effect study (``python -m search.study``): collected means and intervals against values computed
by hand, the verdict rules on runs that should confirm, not confirm, or leave a claim unresolved, and every page in
headless Chromium.

The study runs here are written by hand as ``search.study`` writes them (run.json with ``kind: study`` and the study's
definition, trials.csv with one row per trial per epoch), with numbers chosen so every interval is known in advance.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from reports import rundata, studydata
from reports.build import build_report
from reports.studydata import CONFIRMED, NOT_CONFIRMED, NOT_TESTED, UNRESOLVED, collect_study, t_interval

CLASSES = ["normal", "bacterial", "viral"]
CHANCE = 1 / 3
N_TRAIN = 1050
SEEDS = [0, 1, 2]
#: t(0.975, 2): the 95% t multiplier for three seeds.
T2 = 4.302652729911275
#: Half-width of the 95% t interval of three values 0.02 apart (sd 0.02).
HALF_002 = T2 * 0.02 / math.sqrt(3)
BATCH_PAGES = ["index.html", "curves.html", "gap.html", "chance.html", "cost.html"]
AUGMENT_PAGES = ["index.html", "curves.html", "gap.html", "cost.html"]


def _trial_rows(trial_id: str, order: int, config: dict[str, Any], per_epoch: dict[str, list[float]]) -> list[dict]:
    """One trial's rows of trials.csv (runstore.trials columns): one per epoch, config as ``config/<key>``."""
    epochs = len(per_epoch["val_balanced_acc"])
    rows = []
    for i in range(epochs):
        row: dict[str, Any] = {"trial_id": trial_id, "order": order, "status": "COMPLETED", "epoch": i + 1}
        row |= {k: v[i] for k, v in per_epoch.items()}
        row |= {f"config/{k}": v for k, v in config.items()}
        row |= {"error": "", "trial_dir": f"train_fn_{trial_id}_{order}", "epochs_done": epochs}
        rows.append(row)
    return rows


def _write_study(run_dir: Path, name: str, factors: list[str], levels: dict[str, list], epochs: int, rows: list[dict]):
    run_dir.mkdir(parents=True)
    info = {
        "name": f"{name}-fixture",
        "kind": "study",
        "task": "pneumonia3class",
        "metric": "val_balanced_acc",
        "mode": "max",
        "max_epochs": epochs,
        "finished": True,
        "data": {"classes": CLASSES},
        "study": {
            "name": name,
            "factors": factors,
            "levels": levels,
            "seeds": SEEDS,
            "epochs": epochs,
            "base": {"model": "alexnet_gray", "lr": 0.001, "epochs": epochs},
            "base_source": "recipe seed_alexnet_gray@cpu",
            "classes": CLASSES,
            "train_images": N_TRAIN,
        },
    }
    (run_dir / "run.json").write_text(json.dumps(info, indent=2))
    pd.DataFrame(rows).to_csv(run_dir / "trials.csv", index=False)
    return run_dir


def _metrics(bal: list[float], steps_per_epoch: int, seconds: float, gap: float = 0.1) -> dict[str, list[float]]:
    """Per-epoch metrics from a balanced-accuracy curve: val_acc = it, train_acc = it + gap, losses 1 - accuracy."""
    n = len(bal)
    train_acc = [b + gap for b in bal]
    return {
        "val_balanced_acc": bal,
        "val_acc": bal,
        "train_acc": train_acc,
        "train_loss": [1 - a for a in train_acc],
        "val_loss": [1 - b for b in bal],
        "train_steps": [steps_per_epoch * (e + 1) for e in range(n)],
        "epoch_seconds": [seconds] * n,
        "train_images_per_s": [N_TRAIN / seconds] * n,
    }


#: Batch size -> optimiser steps per epoch on N_TRAIN images, and seconds per epoch.
_BATCH = {1: (1050, 60.0), 35: (30, 10.0), 300: (4, 8.0)}


def _batch_curve(batch: int, seed: int, rule: str, stall_1: bool) -> list[float]:
    d = 0.02 * seed
    if batch == 35 or (rule == "linear" and batch == 300) or (batch == 1 and not stall_1):
        return [0.5 + d, 0.6 + d, 0.65 + d, 0.68 + d, 0.69 + d, 0.70 + d]  # leaves chance at once, ends at 0.70 + d
    end = 0.40 if batch == 1 else 0.50
    return [CHANCE, CHANCE, CHANCE, CHANCE, 0.35, end + d]  # near chance for 5 epochs, leaves at epoch 6


def write_batch_study(
    run_dir: Path, epochs: int = 6, rules: tuple[str, ...] = (), stall_1: bool = True, levels: tuple = (1, 35, 300)
) -> Path:
    """Batch sizes 1, 35, 300 x seeds 0-2. Final val_balanced_acc: 35 -> 0.70/0.72/0.74; with the fixed rule
    1 -> 0.40/0.42/0.44 and 300 -> 0.50/0.52/0.54, both near chance for 5 epochs (unless ``stall_1`` is False);
    with the linear rule 300 learns like 35."""
    rows, order = [], 0
    for batch in levels:
        for rule in rules or ("fixed",):
            for seed in SEEDS:
                order += 1
                steps, seconds = _BATCH[batch]
                bal = _batch_curve(batch, seed, rule, stall_1)[:epochs]
                config: dict[str, Any] = {"batch_size": batch, "seed": seed, "epochs": epochs}
                if rules:
                    config["lr_rule"] = rule
                rows += _trial_rows(f"b{order:04d}", order, config, _metrics(bal, steps, seconds))
    factors = ["batch_size", "lr_rule"] if rules else ["batch_size"]
    level_def: dict[str, list] = {"batch_size": list(levels)} | ({"lr_rule": list(rules)} if rules else {})
    return _write_study(run_dir, "batch-size", factors, level_def, epochs, rows)


#: Augmentation level -> final val_balanced_acc per seed and final train - val accuracy gap per seed.
_AUGMENT = {
    "none": ([0.60, 0.70, 0.80], [0.20, 0.22, 0.24]),
    "seed": ([0.70, 0.70, 0.70], [0.10, 0.12, 0.14]),
    "all": ([0.70, 0.72, 0.74], [0.02, 0.03, 0.04]),
    "rotate": ([0.55, 0.65, 0.75], [0.10, 0.10, 0.10]),
}


def write_augment_study(run_dir: Path, epochs: int = 6) -> Path:
    """Levels none, seed, all, rotate x seeds 0-2: val_balanced_acc rises linearly from 0.4 to the final value, the
    gap grows linearly to the final gap (see :data:`_AUGMENT`)."""
    rows, order = [], 0
    for level, (finals, gaps) in _AUGMENT.items():
        for seed, final, gap in zip(SEEDS, finals, gaps):
            order += 1
            bal = [0.4 + (final - 0.4) * (e + 1) / epochs for e in range(epochs)]
            m = _metrics(bal, 30, 12.0 if level == "all" else 10.0)
            m["train_acc"] = [b + gap * (e + 1) / epochs for e, b in enumerate(bal)]
            m["train_loss"] = [1 - a for a in m["train_acc"]]
            config = {"augmentation": level, "seed": seed, "epochs": epochs, "batch_size": 32}
            rows += _trial_rows(f"a{order:04d}", order, config, m)
    return _write_study(run_dir, "augmentation", ["augmentation"], {"augmentation": list(_AUGMENT)}, epochs, rows)


# -- the numbers ---------------------------------------------------------------------------------------------------


def test_t_interval_by_hand() -> None:
    iv = t_interval([0.70, 0.72, 0.74])
    assert (iv.mean, iv.n) == (pytest.approx(0.72), 3)
    assert (iv.low, iv.high) == (pytest.approx(0.72 - HALF_002), pytest.approx(0.72 + HALF_002))
    assert studydata.t_quantile(2) == pytest.approx(T2) and studydata.t_quantile(30) == pytest.approx(2.042, abs=1e-3)
    one = t_interval([0.5])
    assert one.mean == 0.5 and math.isnan(one.low) and one.text() == "0.500 (n=1, no interval)"
    assert t_interval([]).text() == "no data"
    with pytest.raises(ValueError, match="at least 2 values"):
        studydata.t_quantile(0)


def test_batch_study_means_intervals_curves_and_chance(tmp_path: Path) -> None:
    study = collect_study(rundata.load_run(write_batch_study(tmp_path / "bs")))
    assert (study.name, study.factor, study.levels, study.seeds, study.epochs) == (
        "batch-size",
        "batch_size",
        ["1", "35", "300"],
        SEEDS,
        6,
    )
    assert [g.label for g in study.groups] == ["1", "35", "300"] and study.stall_applies
    b1, b35, b300 = study.groups
    for g, mean in ((b1, 0.42), (b35, 0.72), (b300, 0.52)):
        assert g.final.mean == pytest.approx(mean) and g.final.n == 3
        assert (g.final.low, g.final.high) == (pytest.approx(mean - HALF_002), pytest.approx(mean + HALF_002))
        assert g.best.mean == pytest.approx(mean)  # every curve here peaks at its last epoch
    # The gap is 0.1 at every epoch of every seed: a band of zero width.
    assert b35.gap_acc_final.mean == pytest.approx(0.1) and b35.gap_acc_final.high == pytest.approx(0.1)
    assert b35.gap_loss.mean == pytest.approx([0.1] * 6)
    # Curves: per epoch the mean over seeds; against steps, the x axis is the cumulative steps.
    assert b35.curve.x == [1, 2, 3, 4, 5, 6]
    assert b35.curve.mean == pytest.approx([0.52, 0.62, 0.67, 0.70, 0.71, 0.72])
    assert b35.curve.low[0] == pytest.approx(0.52 - HALF_002)
    assert b300.curve_steps.x == [4, 8, 12, 16, 20, 24] and b1.curve_steps.x[-1] == 6300
    assert b300.curve.mean[:4] == pytest.approx([CHANCE] * 4) and b300.curve.low[0] == pytest.approx(CHANCE)
    # Near chance: 5 epochs at 1 and 300 (they leave at epoch 6, after 6300 and 24 steps), none at 35 (30 steps).
    assert b1.near_chance == b300.near_chance == [5, 5, 5] and b35.near_chance == [0, 0, 0]
    assert b1.steps_to_leave == [6300] * 3 and b300.steps_to_leave == [24] * 3 and b35.steps_to_leave == [30] * 3
    assert b1.stalled == b300.stalled == [True] * 3 and b35.stalled == [False] * 3
    assert b1.seconds_per_epoch.mean == 60 and b300.images_per_s.mean == pytest.approx(N_TRAIN / 8)


def test_a_seed_still_running_is_left_out_of_the_final_interval(tmp_path: Path) -> None:
    run = write_batch_study(tmp_path / "bs")
    csv = pd.read_csv(run / "trials.csv")
    seed2 = (csv["config/batch_size"] == 35) & (csv["config/seed"] == 2)
    csv = csv[~(seed2 & (csv["epoch"] > 4))]  # batch 35, seed 2 has reported 4 of 6 epochs
    csv.loc[seed2, "status"] = "RUNNING"
    csv.to_csv(run / "trials.csv", index=False)
    b35 = collect_study(rundata.load_run(run)).group("35")
    assert b35 is not None and b35.final.n == 2 and b35.final.mean == pytest.approx(0.71)  # seeds 0 and 1
    assert b35.curve.mean[:4] == pytest.approx([0.52, 0.62, 0.67, 0.70]) and b35.curve.mean[5] == pytest.approx(0.71)


def test_augmentation_study_gap_intervals(tmp_path: Path) -> None:
    study = collect_study(rundata.load_run(write_augment_study(tmp_path / "aug")))
    assert study.factor == "augmentation" and [g.level for g in study.groups] == ["none", "seed", "all", "rotate"]
    none, seed, all_, rotate = study.groups
    assert seed.gap_acc_final.mean == pytest.approx(0.12)
    assert seed.gap_acc_final.low == pytest.approx(0.12 - HALF_002)
    half_001 = T2 * 0.01 / math.sqrt(3)
    assert (all_.gap_acc_final.low, all_.gap_acc_final.high) == (
        pytest.approx(0.03 - half_001),
        pytest.approx(0.03 + half_001),
    )
    half_01 = T2 * 0.1 / math.sqrt(3)
    assert (none.final.mean, none.final.low) == (pytest.approx(0.70), pytest.approx(0.70 - half_01))
    assert rotate.final.mean == pytest.approx(0.65)
    assert seed.gap_acc.mean == pytest.approx([0.12 * e / 6 for e in range(1, 7)])
    assert all_.seconds_per_epoch.mean == 12.0


# -- the verdicts --------------------------------------------------------------------------------------------------


def _verdicts(study: studydata.StudyData) -> dict[str, str]:
    return {v.claim: v.verdict for v in study.verdicts}


SWEET = "Batch size 35 is a sweet spot: better than 1 and 300."
STALL_300 = "At batch 300 accuracy stays near chance for a long time before it rises."
STALL_1 = "At batch 1 accuracy stays near chance for a long time before it rises."


def test_batch_verdicts_confirmed(tmp_path: Path) -> None:
    study = collect_study(rundata.load_run(write_batch_study(tmp_path / "bs")))
    assert _verdicts(study) == {SWEET: CONFIRMED, STALL_300: CONFIRMED, STALL_1: CONFIRMED}
    sweet = study.verdicts[0]
    assert "batch 35: 0.720 [0.670, 0.770]" in sweet.measured and "wholly above" in sweet.rule


def test_batch_verdicts_not_confirmed_and_unresolved(tmp_path: Path) -> None:
    # Batch 1 learns as 35 does: not a sweet spot (1 and 35 overlap, so not resolved), and 1 did not stall.
    study = collect_study(rundata.load_run(write_batch_study(tmp_path / "fast1", stall_1=False)))
    assert _verdicts(study) == {SWEET: UNRESOLVED, STALL_300: CONFIRMED, STALL_1: NOT_CONFIRMED}
    # Four epochs: the stall rule (5 epochs) cannot decide.
    short = collect_study(rundata.load_run(write_batch_study(tmp_path / "short", epochs=4)))
    assert not short.stall_applies and short.groups[0].stalled == [None] * 3
    verdicts = {v.claim: v for v in short.verdicts}
    assert verdicts[STALL_300].verdict == UNRESOLVED and "the stall rule needs 5" in verdicts[STALL_300].measured
    # A study without batch 1 cannot test the sweet-spot claim.
    missing = collect_study(rundata.load_run(write_batch_study(tmp_path / "no1", levels=(35, 300))))
    assert _verdicts(missing)[SWEET] == NOT_TESTED


def test_batch_verdicts_per_learning_rate_rule(tmp_path: Path) -> None:
    study = collect_study(rundata.load_run(write_batch_study(tmp_path / "rules", rules=("fixed", "linear"))))
    assert [g.label for g in study.groups] == [
        "1 · lr fixed",
        "1 · lr linear",
        "35 · lr fixed",
        "35 · lr linear",
        "300 · lr fixed",
        "300 · lr linear",
    ]
    v = _verdicts(study)
    assert v[SWEET.replace(".", " (lr rule fixed).")] == CONFIRMED
    assert v[STALL_300.replace(".", " (lr rule fixed).")] == CONFIRMED
    # With the linear rule batch 300 learns as 35 does: it does not stall, and 35 is no better than it.
    assert v[STALL_300.replace(".", " (lr rule linear).")] == NOT_CONFIRMED
    assert v[SWEET.replace(".", " (lr rule linear).")] == UNRESOLVED


def test_augmentation_verdicts(tmp_path: Path) -> None:
    study = collect_study(rundata.load_run(write_augment_study(tmp_path / "aug")))
    assert [v.verdict for v in study.verdicts] == [CONFIRMED, NOT_CONFIRMED, UNRESOLVED]
    still, heavy, rotate = study.verdicts
    assert "TrivialAugmentWide still overfits" in still.claim and still.measured.startswith("final gap 0.120 [")
    assert "lies wholly above 0" in still.rule
    assert "overfit more" in heavy.claim and "all 0.030" in heavy.measured and "none 0.220" in heavy.measured
    assert "Rotation" in rotate.claim


# -- the pages -----------------------------------------------------------------------------------------------------


def test_study_report_pages(tmp_path: Path) -> None:
    index = build_report(write_batch_study(tmp_path / "bs"))
    assert sorted(p.name for p in index.parent.glob("*.html")) == sorted(BATCH_PAGES)
    text = index.read_text()
    assert "Study: batch-size" in text and "study batch-size" in text and "space ?" not in text
    assert "95% t interval over seeds" in text and "0.720 [0.670, 0.770]" in text and CONFIRMED in text
    chance = (index.parent / "chance.html").read_text()
    assert "at every one of the first 5 epochs" in chance and "6300" in chance
    for name in BATCH_PAGES:
        page = (index.parent / name).read_text()
        assert all(f'href="{p}"' in page for p in BATCH_PAGES) and "https://" not in page
    aug = build_report(write_augment_study(tmp_path / "aug"))
    assert sorted(p.name for p in aug.parent.glob("*.html")) == sorted(AUGMENT_PAGES)  # no chance page
    assert NOT_CONFIRMED in aug.read_text() and UNRESOLVED in aug.read_text()


def test_a_report_built_into_a_folder_again_leaves_no_stale_page(tmp_path: Path) -> None:
    """The batch-size study's report, then the augmentation study's into the same folder: its chance page (which the
    augmentation study has not) is gone, a file the user put there is not."""
    out = tmp_path / "report"
    build_report(write_batch_study(tmp_path / "bs"), out)
    (out / "notes.html").write_text("mine")
    build_report(write_augment_study(tmp_path / "aug"), out)
    assert sorted(p.name for p in out.glob("*.html")) == sorted([*AUGMENT_PAGES, "notes.html"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from reports.screenshots import chrome, chromium_missing

    reason = chromium_missing()
    if reason:
        if os.environ.get("CXR_REQUIRE_BROWSER") == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    driver = chrome()
    yield driver
    driver.quit()


def test_every_study_page_in_a_browser(browser: Any, tmp_path: Path) -> None:
    from test_report_browser import _open

    for run, pages, name in (
        (write_batch_study(tmp_path / "bs", rules=("fixed", "linear")), BATCH_PAGES, "batch-size-fixture"),
        (write_augment_study(tmp_path / "aug"), AUGMENT_PAGES, "augmentation-fixture"),
    ):
        report = build_report(run).parent
        for page in pages:
            seen = _open(browser, report / page)
            assert seen["alert"] is None and seen["severe"] == [], (page, seen["severe"])
            assert seen["plots"], f"{page}: no plots"
            for plot in seen["plots"]:
                assert plot["traces"] >= 1 and plot["empty"] == [], (page, plot)
            assert name in seen["title"] and f"study {name.removesuffix('-fixture')}" in seen["text"]
            hrefs = browser.execute_script("return Array.from(document.querySelectorAll('nav a')).map(a => a.href)")
            assert [h.rsplit("/", 1)[-1] for h in hrefs] == pages
        index = _open(browser, report / "index.html")
        assert "The seed projects' claims, measured" in index["text"] and "verdict" in index["text"]


def test_study_pages_escape_level_names_and_classes(tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    rows, order = [], 0
    for level in ("none", evil):
        for seed in SEEDS:
            order += 1
            bal = [0.4, 0.5 + 0.01 * seed]
            config = {"augmentation": level, "seed": seed, "epochs": 2}
            rows += _trial_rows(f"e{order:04d}", order, config, _metrics(bal, 30, 10.0))
    run = _write_study(tmp_path / "evil", "augmentation", ["augmentation"], {"augmentation": ["none", evil]}, 2, rows)
    index = build_report(run)
    for name in AUGMENT_PAGES:
        text = (index.parent / name).read_text()
        assert evil not in text and text.count("<script") == text.count("</script>"), name
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in (index.parent / "gap.html").read_text()
