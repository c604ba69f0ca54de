"""Smoke-size runs of the benchmarks: they run and print their ratio line last."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import run_benchmark, write_trial


@pytest.mark.slow
def test_pipeline_benchmark_quick_on_scanner_size_images_prints_decode_times_and_its_ratios_last() -> None:
    """The default data is the full-resolution sample beside the repository; the one-off decode is timed per image
    spec (the benchmark's own, then the cpu profile's), and the ratio line comes last."""
    from spaces.profiles import CPU

    proc = run_benchmark("pipeline.py", "--quick", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    m = re.fullmatch(r"ratio_vs_seed_pipeline=(\d+\.\d+) ratio_vs_compute_limit=(\d+\.\d+)", lines[-1])
    assert m, lines[-1]
    assert float(m.group(1)) > 0 and float(m.group(2)) > 0
    data = next(ln for ln in lines if ln.startswith("data "))
    assert "fullres_sample pool_images=133 " in data and "broken=0" in data
    assert re.search(r"train_images=128 \(train files=\d+, cycled\)", proc.stdout)
    decoded = {}
    for ln in lines:
        if ln.startswith("decode_once "):
            d = re.fullmatch(
                r"decode_once spec=(\S+) images=133 cold_s_per_1000=(\d+\.\d+) cached_s_per_1000=(\d+\.\d+)", ln
            )
            assert d, ln
            decoded[d.group(1)] = float(d.group(2)), float(d.group(3))
    assert list(decoded) == ["128x128-rgb-stretch"] + [s.label() for s in CPU.image_specs()]
    assert all(cold > cached > 0 for cold, cached in decoded.values())
    assert re.search(r"^seed_pipeline images_per_s=", proc.stdout, re.M)
    assert re.search(r"^ours images_per_s=", proc.stdout, re.M)


@pytest.mark.slow
def test_prefetch_benchmark_times_both_arms_each_round_and_prints_the_ratio_with_its_interval_last() -> None:
    proc = run_benchmark("prefetch.py", "--rounds", "2", "--epoch-images", "128", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    rounds = [ln for ln in lines if ln.startswith("round ")]
    assert [ln.split()[2] for ln in rounds] == ["prefetch=on", "prefetch=off", "prefetch=off", "prefetch=on"]
    m = re.fullmatch(r"ratio_prefetch_on_off=(\d+\.\d+) mean=(\d+\.\d+) ci95=\[(-?\d+\.\d+), (\d+\.\d+)\]", lines[-1])
    assert m, lines[-1]
    assert float(m.group(3)) <= float(m.group(2)) <= float(m.group(4))


def test_pipeline_benchmark_without_its_data_says_so_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "fullres_sample"
    proc = run_benchmark("pipeline.py", "--data", str(missing))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"pipeline.py: error: no data folder at {missing} (clone beside ../shared, or pass --data DIR)"
    ]


def test_asha_replay_shows_what_each_rung_signal_would_have_stopped(tmp_path: Path) -> None:
    """Ray's own ASHA bracket over recorded curves: a slow starter (balanced accuracy at chance after one epoch, but
    the better ranking) is stopped when rungs compare balanced accuracy and kept when they compare AUROC."""
    curves = {
        "aaaa0001": [(0.50, 0.70), (0.55, 0.72), (0.60, 0.74)],  # steady
        "aaaa0002": [(0.34, 0.80), (0.65, 0.85), (0.75, 0.88)],  # slow starter, ends best
        "aaaa0003": [(0.40, 0.60), (0.42, 0.61), (0.43, 0.62)],  # weak
    }
    for index, (tid, epochs) in enumerate(curves.items(), start=1):
        rows = [{"val_balanced_acc": b, "val_auroc": a, "val_loss": 1.0, "time_this_iter_s": 1.0} for b, a in epochs]
        write_trial(tmp_path, tid, index, {"epochs": 3}, rows)
    proc = run_benchmark(
        "asha_replay.py", str(tmp_path), "--concurrency", "1", "--signals", "val_balanced_acc,val_auroc"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "fifo trials=3 epochs_trained=9 best_val_balanced_acc=0.7500"
    assert lines[1].startswith("rank_corr epoch=1 val_balanced_acc=")
    by_signal = {m.group(1): ln for ln in lines if (m := re.match(r"asha signal=(\S+)", ln))}
    # Balanced accuracy: trial 2 (0.34 < 0.50) and trial 3 (0.40 < 0.45) stop at epoch 1; trial 1 runs all 3.
    assert "epochs_trained=  5 best_val_balanced_acc=0.6000" in by_signal["val_balanced_acc"]
    assert "best_metric_gap=0.1500" in by_signal["val_balanced_acc"]
    # AUROC: trial 2 (0.80 > 0.70) goes on to the end; trial 3 (0.60) stops.
    assert "epochs_trained=  7 best_val_balanced_acc=0.7500" in by_signal["val_auroc"]
    assert "best_metric_gap=0.0000" in by_signal["val_auroc"]


def test_selection_benchmark_scores_saved_curves(tmp_path: Path) -> None:
    """On curves where validation spikes once and test does not follow, the smoothed rule's pick holds up on test
    better than the best single epoch's (its optimism is lower), and the last line names the default rule."""
    import json

    def curve(val: list[float], test: list[float]) -> list[dict[str, float]]:
        return [
            {"epoch": i + 1, "val_balanced_acc": v, "val_loss": 1.0 - v, "train_acc": 0.9, "test_balanced_acc": t}
            for i, (v, t) in enumerate(zip(val, test))
        ]

    spike = curve([0.5, 0.8, 0.6, 0.7, 0.72, 0.71], [0.5, 0.6, 0.6, 0.7, 0.71, 0.7])
    steady = curve([0.4, 0.6, 0.65, 0.66, 0.67, 0.66], [0.4, 0.58, 0.63, 0.64, 0.66, 0.65])
    curves = [{"config": c, "seed": s, "curve": k} for s in (0, 1) for c, k in (("a", spike), ("b", steady))]
    path = tmp_path / "curves.json"
    path.write_text(json.dumps(curves))
    proc = run_benchmark("selection.py", "--curves", str(path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {
        line.split(" | ")[0]: [c.split()[0] for c in line.split(" | ")]
        for line in proc.stdout.splitlines()
        if " | " in line
    }
    assert float(rows["best"][2]) == pytest.approx((0.6 + 0.66) / 2)  # spike epoch 2 (test 0.6), steady epoch 5
    assert float(rows["smooth3"][2]) > float(rows["best"][2])
    assert float(rows["smooth3"][3]) < float(rows["best"][3])  # less optimistic
    assert re.fullmatch(
        r"selection default=\w+ test_at_pick=[\d.]+ \(best [\d.]+\) optimism=.+", proc.stdout.splitlines()[-1]
    )


def test_search_quality_replay_ranks_the_arms_and_prints_the_goal_line_last(tmp_path: Path) -> None:
    """Recorded curves through each arm's scheduler in simulated time: two slow recipes queued first, then six quick
    proposals, the better half of which rank above the recipes after one epoch. ASHA lets the recipes through the first
    rung before any proposal has a result there and spends the budget on them; fair rungs make them meet the
    proposals first, so the better proposals get the epochs."""

    def rows(seconds: float, aurocs: list[float], scores: list[float]) -> list[dict]:
        return [
            {"val_auroc": a, "val_balanced_acc": b, "val_loss": 1.0, "time_this_iter_s": seconds}
            for a, b in zip(aurocs, scores)
        ]

    ramp = [0.01 * e for e in range(12)]
    trials = [
        ("ec000001", "seed_a", rows(20.0, [0.76 + r for r in ramp], [0.60 + r for r in ramp])),
        ("ec000002", "seed_b", rows(20.0, [0.77 + r for r in ramp], [0.58 + r for r in ramp])),
    ] + [
        (f"a000000{i}", "", rows(4.0, [0.70 + 0.03 * i + 2 * r for r in ramp], [0.40 + 0.05 * i + 3 * r for r in ramp]))
        for i in range(6)
    ]
    for index, (tid, recipe, epochs) in enumerate(trials, start=1):
        write_trial(tmp_path, tid, index, {"epochs": 12, "recipe": recipe}, epochs)
    proc = run_benchmark("search_quality.py", "--replay", str(tmp_path), "--budget", "300", "--seeds", "0,1,2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    m = re.fullmatch(r"beats_recipes=(\d)/3 proposed_share=(\d\.\d\d) utilisation=(\d\.\d\d)", lines[-1])
    assert m, lines[-1]
    arms = {ln.split()[0]: ln for ln in lines[:-1]}
    assert set(arms) == {"today", "fair", "random_asha", "recipes"}
    share = {arm: float(re.search(r"proposed_share=(\S+)", ln).group(1)) for arm, ln in arms.items()}
    assert share["recipes"] == 0.0
    assert share["fair"] > share["today"], lines
    assert int(m.group(1)) == 3 and float(m.group(2)) == share["fair"], lines


def test_search_quality_summarise_rereads_kept_runs_and_scores_the_goals(tmp_path: Path) -> None:
    """``--summarise DIR`` re-reads the real runs a benchmark kept: a proposal that beats the recipes arm's best
    counts, the shares come from the epochs' own seconds, utilisation from the recorded wall time."""
    import json

    def epoch(t: float, seconds: float, score: float) -> dict:
        return {"val_balanced_acc": score, "val_auroc": score, "time_this_iter_s": seconds, "timestamp": t}

    fair, recipes = tmp_path / "quality-fair-0", tmp_path / "quality-recipes-0"
    write_trial(recipes, "r0000001", 1, {"recipe": "seed_a"}, [epoch(1010, 10, 0.60), epoch(1020, 10, 0.70)])
    write_trial(fair, "r0000001", 1, {"recipe": "seed_a"}, [epoch(1010, 10, 0.60)])
    write_trial(fair, "p0000002", 2, {}, [epoch(1015, 15, 0.65), epoch(1045, 30, 0.75)])
    for run in (fair, recipes):
        (run / "benchmark-timing.json").write_text(json.dumps({"started": 1000.0, "wall_s": 50.0, "cpus": 2.0}))
    proc = run_benchmark("search_quality.py", "--summarise", str(tmp_path), "--seeds", "0", "--arms", "fair,recipes")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert "time_to_beat_recipes_s=[45]" in next(ln for ln in lines if ln.startswith("fair"))
    assert lines[-1] == "beats_recipes=1/1 proposed_share=0.82 utilisation=0.55"  # 45 of 55 s; 55 / (50 x 2)
    missing = run_benchmark("search_quality.py", "--summarise", str(tmp_path), "--seeds", "1", "--arms", "fair,recipes")
    assert missing.returncode != 0 and "quality-fair-1 has no benchmark-timing.json" in missing.stderr
