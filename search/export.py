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
from search.errors import UserError, cli
from search.rundir import BEST_FILE, best_trial, load_run_info

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
    run_dir: str | Path, out: str | Path | None = None, metric: str | None = None, *, force: bool = False
) -> Path:
    """Write the best trial of ``run_dir`` to ``out`` (default ``RUN_DIR/best_config.json``) and return its path.

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
    best = best_trial(run_dir, metric=metric)
    config = dict(best.config)
    config["epochs"] = max(1, best.best_epoch)
    doc = {
        "format": FORMAT,
        "config": config,
        "task": info.get("task"),
        "space": info.get("space"),
        "metric": metric or info.get("metric"),
        "validation": {"epoch": best.best_epoch, **best.metrics},
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
    args = p.parse_args(argv)
    path = export_best(args.run_dir, args.output, args.metric, force=args.force)
    doc = json.loads(path.read_text())
    v = doc["validation"]
    print(
        f"{path}: {doc['config']['model']} trial {doc['trial']['id']}, "
        f"{doc['metric']} {v.get(doc['metric'], float('nan')):.4f} at epoch {v['epoch']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
