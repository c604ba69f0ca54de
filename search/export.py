"""``python -m search.export RUN_DIR [-o FILE]``: the best config of a run, with its metrics and provenance.

The file is what ``search.retrain`` reads. It records the trial's config (with ``epochs`` set to the epoch where its
validation metric peaked, which is how long the final model trains), that epoch's validation metrics, and where it
came from: the run, the data fingerprint, the code version and the package versions.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from runstore.atomic import write_text
from runstore.errors import UserError, cli
from runstore.layout import BEST_FILE, load_run_info
from runstore.metrics import EPOCH_SECONDS
from runstore.ranking import top_trials
from runstore.trials import load_trials
from search.final import CALIBRATIONS, DECISIONS, FinalRecipe
from trainables.ensemble import TTA_MODES

__all__ = ["FORMAT", "export_best", "load_best_config", "main", "provenance"]

#: Identifies files written by this module; ``search.retrain`` refuses anything else.
FORMAT = "cxr-search/best-config/v1"
_PACKAGES = ("cxr-search", "torch", "torchvision", "ray", "optuna", "torchmetrics", "numpy", "pandas", "pillow")


def _git_version() -> str | None:
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--tags"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def provenance() -> dict[str, Any]:
    """Code version, package versions and platform: enough to tell later what produced a result."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "code_version": _git_version(),
        "packages": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def export_best(
    run_dir: str | Path,
    out: str | Path | None = None,
    metric: str | None = None,
    *,
    members: int = FinalRecipe.DEFAULT_MEMBERS,
    tta: str | None = None,
    calibration: str | None = None,
    decision: str | None = None,
    member_budget: float = FinalRecipe.MEMBER_BUDGET,
    force: bool = False,
) -> Path:
    """Write the best trial of ``run_dir`` and the recipe of its final model to ``out`` (default
    ``RUN_DIR/best_config.json``): the ``members`` best distinct configs that share the best one's resize policy and
    whose training, at the pace their trials trained in the search, adds up to at most ``member_budget`` seconds
    (the best trial is always a member), and how to combine them.

    The file is replaced atomically; an existing file that is not a best_config.json of ours is refused unless
    ``force``, so ``-o`` cannot overwrite another run's run.json or anything else by mistake.
    """
    run_dir = Path(run_dir)
    target = Path(out) if out else run_dir / BEST_FILE
    if target.is_dir():
        raise UserError(f"-o: {target} is a directory; give the file to write, e.g. {target / BEST_FILE}")
    if target.exists() and not force and not _is_ours(target):
        raise UserError(
            f"-o: {target} exists and is not a best_config.json written by search.export; pass --force to replace it"
        )
    info = load_run_info(run_dir)
    if members < 1:
        raise UserError(f"--members must be >= 1, got {members}")
    ranked = top_trials(run_dir, 4 * members + 4, metric=metric)
    if not ranked:
        raise UserError(f"{run_dir}: no trial has reported {metric or info.get('metric')} yet; nothing to export")
    best = ranked[0]
    resize = best.config.get("resize", "stretch")
    seconds = _epoch_seconds(run_dir)
    chosen, cost = [], 0.0
    for t in ranked:
        estimate = seconds.get(t.trial_id, 0.0) * max(1, t.best_epoch)
        if t.config.get("resize", "stretch") != resize or (chosen and cost + estimate > member_budget):
            continue
        chosen.append(t)
        cost += estimate
        if len(chosen) == members:
            break
    config = dict(best.config)
    config["epochs"] = max(1, best.best_epoch)
    try:
        recipe = FinalRecipe(
            members=[{**t.config, "epochs": max(1, t.best_epoch)} for t in chosen],
            tta=tta or FinalRecipe.tta,
            calibration=calibration or FinalRecipe.calibration,
            decision=decision or FinalRecipe.decision,
        )
    except ValueError as exc:
        raise UserError(f"export: {exc}") from exc
    final = recipe.to_doc()
    final["members"] = [
        {"trial": t.trial_id, "validation": {"epoch": t.best_epoch, **t.metrics}, "config": m}
        for t, m in zip(chosen, recipe.members)
    ]
    doc = {
        "format": FORMAT,
        "config": config,
        "task": info.get("task"),
        "space": info.get("space"),
        "metric": metric or info.get("metric"),
        "validation": {"epoch": best.best_epoch, **best.metrics},
        "final": final,
        "trial": {"id": best.trial_id, "dir": best.trial_dir, "epochs_trained_in_search": info.get("max_epochs")},
        "data": {
            "root": (info.get("data") or {}).get("root"),
            "fingerprint": (info.get("data") or {}).get("fingerprint"),
            "val_fraction": (info.get("settings") or {}).get("val_fraction"),
            "split_seed": (info.get("settings") or {}).get("seed"),
        },
        "run": {"dir": str(run_dir.resolve()), "name": info.get("name"), "started": info.get("started")},
        "provenance": provenance(),
        "exported": datetime.now(timezone.utc).isoformat(),
    }
    return write_text(target, json.dumps(doc, indent=2, sort_keys=False) + "\n")


def _is_ours(path: Path) -> bool:
    try:
        load_best_config(path)
    except UserError:
        return False
    return True


def _epoch_seconds(run_dir: Path) -> dict[str, float]:
    """Median seconds an epoch per trial, as the search measured them."""
    trials = load_trials(run_dir)
    if trials.empty or EPOCH_SECONDS not in trials.columns:
        return {}
    return {str(k): float(v) for k, v in trials.groupby("trial_id")[EPOCH_SECONDS].median().dropna().items()}


def load_best_config(path: str | Path) -> dict[str, Any]:
    """Read a best_config.json; anything that is not one of ours is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; expected a best_config.json written by search.export")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a best_config.json (not valid JSON: {exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("config"), dict):
        raise UserError(f'{path}: not a best_config.json written by search.export (expected "format": "{FORMAT}")')
    from search.filechecks import check_best_config  # imports torch: only when a file is read for retraining

    check_best_config(doc, path)
    return doc


@cli
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m search.export", description=__doc__.splitlines()[0])
    p.add_argument("run_dir", help="a run directory written by search.run")
    p.add_argument("-o", "--output", help="where to write (default: RUN_DIR/best_config.json)")
    p.add_argument("--metric", help="select by this metric instead of the run's")
    p.add_argument("--force", action="store_true", help="replace an existing -o file that is not a best_config.json")
    p.add_argument(
        "--members",
        type=int,
        default=FinalRecipe.DEFAULT_MEMBERS,
        help="distinct configs averaged in the final model (default: %(default)s; 1: the best trial alone)",
    )
    p.add_argument(
        "--member-budget",
        type=float,
        default=FinalRecipe.MEMBER_BUDGET,
        help="most seconds of member training, at the search's pace, the final model may take (default: %(default)s)",
    )
    p.add_argument("--tta", choices=TTA_MODES, help=f"test-time augmentation (default: {FinalRecipe.tta})")
    p.add_argument("--calibration", choices=CALIBRATIONS, help=f"default: {FinalRecipe.calibration}")
    p.add_argument("--decision", choices=DECISIONS, help=f"default: {FinalRecipe.decision}")
    args = p.parse_args(argv)
    path = export_best(
        args.run_dir,
        args.output,
        args.metric,
        members=args.members,
        tta=args.tta,
        calibration=args.calibration,
        decision=args.decision,
        member_budget=args.member_budget,
        force=args.force,
    )
    doc = json.loads(path.read_text())
    v = doc["validation"]
    print(
        f"{path}: {doc['config']['model']} trial {doc['trial']['id']}, "
        f"{doc['metric']} {v.get(doc['metric'], float('nan')):.4f} at epoch {v['epoch']}; final model: "
        f"{len(doc['final']['members'])} member(s), tta {doc['final']['tta']}, "
        f"calibration {doc['final']['calibration']}, decision {doc['final']['decision']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
