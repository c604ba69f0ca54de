"""``python -m reports.model MODEL_DIR [--data DIR ...] [-o OUT]``: one HTML page about a final model.

What a person needs before trusting a model's number: the held-out validation figures beside the test figures (and
those of any other labelled folder given with ``--data``, scored now), per-class recall with 95% intervals, the
confusion matrices, and a reliability diagram (does "90% sure" come true 90% of the time?). When a test interval
falls below the validation one the page says so in plain words: it is the usual sign of a shift between the site the
model learnt from and the one it is scored on. Offline: ``plotly.min.js`` is written beside the page.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from reports.page import PLOTLY_JS, esc, script_json, write_plotly_js
from runstore.atomic import write_text
from runstore.errors import UserError, cli

__all__ = ["build_model_report", "main", "shift_warnings"]


def shift_warnings(splits: dict[str, dict[str, Any]], reference: str = "validation (held out)") -> list[str]:
    """A plain sentence for every split whose balanced-accuracy interval lies wholly below the reference's point
    estimate, or whose interval does not overlap the reference's."""
    ref = splits.get(reference)
    if not ref:
        return []
    r_val = ref["balanced_accuracy"]["value"]
    r_lo, _ = ref["balanced_accuracy"]["ci95"]
    out = []
    for name, s in splits.items():
        if name == reference:
            continue
        v, (lo, hi) = s["balanced_accuracy"]["value"], s["balanced_accuracy"]["ci95"]
        if hi < r_val:
            out.append(
                f"On {name}, balanced accuracy {v:.3f} [{lo:.3f}, {hi:.3f}] lies below the validation figure "
                f"{r_val:.3f}{' (the intervals do not even overlap)' if hi < r_lo else ''}. Validation images come "
                "from the same site and years as the training images; a drop like this is the usual sign of a shift "
                "between sites. Expect figures near this one, not the validation one, on new data."
            )
    return out


def _looks_scored(s: dict[str, Any]) -> bool:
    keys = ("n", "accuracy", "balanced_accuracy", "auroc", "recall", "confusion_matrix")
    return all(k in s for k in keys) and isinstance(s["recall"], dict)


def _recall_figure(splits: dict[str, dict[str, Any]]) -> go.Figure:
    fig = go.Figure()
    for name, s in splits.items():
        classes = list(s["recall"])
        vals = [s["recall"][c]["value"] for c in classes]
        lo = [v - s["recall"][c]["ci95"][0] for v, c in zip(vals, classes)]
        hi = [s["recall"][c]["ci95"][1] - v for v, c in zip(vals, classes)]
        fig.add_bar(name=name, x=classes, y=vals, error_y={"type": "data", "array": hi, "arrayminus": lo})
    fig.update_layout(
        barmode="group", yaxis={"range": [0, 1.05], "title": "recall (95% interval)"}, title="Per-class recall"
    )
    return fig


def _confusion_figure(name: str, s: dict[str, Any]) -> go.Figure:
    cm = s["confusion_matrix"]
    classes = cm["rows_true_columns_predicted"]
    fig = go.Figure(
        go.Heatmap(z=cm["counts"], x=classes, y=classes, text=cm["counts"], texttemplate="%{text}", colorscale="Blues")
    )
    fig.update_layout(
        title=f"Confusion matrix: {name}",
        xaxis={"title": "predicted"},
        yaxis={"title": "true", "autorange": "reversed"},
        height=380,
    )
    return fig


def _reliability_figure(splits: dict[str, dict[str, Any]]) -> go.Figure:
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration", line={"dash": "dot"})
    for name, s in splits.items():
        cal = s.get("calibration")
        if not cal:
            continue
        curve = cal["reliability"]
        fig.add_scatter(
            x=[b["confidence"] for b in curve],
            y=[b["accuracy"] for b in curve],
            mode="lines+markers",
            name=f"{name} (ECE {cal['ece']:.3f})",
            text=[f"{b['n']} images" for b in curve],
        )
    fig.update_layout(
        title="Reliability: confidence of the top class against how often it was right",
        xaxis={"title": "mean confidence in bin", "range": [0, 1]},
        yaxis={"title": "accuracy in bin", "range": [0, 1]},
    )
    return fig


def _summary_table(splits: dict[str, dict[str, Any]]) -> str:
    def cell(m: dict[str, Any]) -> str:
        lo, hi = m["ci95"]
        return f"{m['value']:.3f} <small>[{lo:.3f}, {hi:.3f}]</small>"

    rows = []
    for name, s in splits.items():
        ece = s.get("calibration", {}).get("ece")
        rows.append(
            f"<tr><td>{esc(name)}</td><td>{s['n']}</td><td>{cell(s['accuracy'])}</td>"
            f"<td>{cell(s['balanced_accuracy'])}</td><td>{cell(s['auroc'])}</td>"
            f"<td>{'' if ece is None else f'{ece:.3f}'}</td></tr>"
        )
    head = "<tr><th>split</th><th>images</th><th>accuracy</th><th>balanced accuracy</th><th>AUROC</th><th>ECE</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _div(fig: go.Figure, i: int) -> str:
    """A ``div.plot`` drawn by an inline script; the figure's JSON is ``script_json``, safe inside ``<script>``."""
    spec = script_json(fig)
    return (
        f'<div class="plot" id="plot{i}"></div><script>(function(){{const f = {spec};'
        f'Plotly.newPlot("plot{i}", f.data, f.layout, {{displaylogo: false, responsive: true}});}})();</script>'
    )


def build_model_report(model_dir: str | Path, data: list[str] | None = None, out: str | Path | None = None) -> Path:
    """Write the model page (default ``MODEL_DIR/report.html``) and return its path."""
    model_dir = Path(model_dir)
    metrics_file = model_dir / "metrics.json"
    if not (model_dir / "config.json").is_file() or not metrics_file.is_file():
        raise UserError(f"{model_dir}: not a model directory written by search.retrain (no config.json/metrics.json)")
    try:
        metrics = json.loads(metrics_file.read_text())
        meta = json.loads((model_dir / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{model_dir}: metrics.json or config.json is not valid JSON ({exc})") from exc
    if not isinstance(metrics, dict) or not isinstance(meta, dict):
        raise UserError(f"{model_dir}: metrics.json and config.json must be JSON objects written by search.retrain")
    for key in ("held_out", "test"):
        split = metrics.get(key)
        if split is not None and not (isinstance(split, dict) and _looks_scored(split)):
            raise UserError(f"{metrics_file}: {key} is not a scores object written by search.retrain")
    splits: dict[str, dict[str, Any]] = {}
    if metrics.get("held_out"):
        splits["validation (held out)"] = metrics["held_out"]
    if metrics.get("test"):
        splits["test split"] = metrics["test"]
    for folder in data or []:
        from search.evaluate import evaluate_model_dir  # torch only when a folder is scored now

        splits[f"--data {folder}"] = evaluate_model_dir(model_dir, folder, n_boot=1000)
    if not splits:
        raise UserError(f"{model_dir}: no held-out or test figures in metrics.json; give a labelled folder with --data")

    out = Path(out) if out else model_dir / "report.html"
    if out.is_dir():
        raise UserError(f"-o: {out} is a directory; give the page to write, e.g. {out / 'report.html'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_plotly_js(out.parent)
    members = meta.get("members") or [meta.get("config", {})]
    recipe = (
        f"{len(members)} member(s): {', '.join(esc(m.get('model', '?')) for m in members)}; "
        f"test-time augmentation {esc(meta.get('tta', 'none'))}; "
        f"temperature {float(meta.get('temperature', 1.0)):.2f}; "
        f"decisions {esc((meta.get('decision') or {}).get('rule', 'argmax'))}"
    )
    warnings = "".join(f'<p class="warn">{esc(w)}</p>' for w in shift_warnings(splits))
    figs = [_recall_figure(splits), _reliability_figure(splits)] + [_confusion_figure(n, s) for n, s in splits.items()]
    body = "\n".join(_div(f, i) for i, f in enumerate(figs))
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Model report: {esc(model_dir.name)}</title>
<script src="{PLOTLY_JS}"></script>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
.warn{{background:#fff3cd;border:1px solid #e0b84c;padding:8px}}</style></head>
<body><h1>Model report: {esc(model_dir.name)}</h1>
<p>{recipe}. Figures with 95% bootstrap intervals; validation is a patient-level slice of the training folder that
the model did not train on (its temperature was fitted there, so its calibration is in-sample).</p>
{warnings}
{_summary_table(splits)}
{body}
</body></html>
"""
    write_text(out, page)
    return out


@cli
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reports.model", description=__doc__.splitlines()[0])
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a model directory written by search.retrain")
    p.add_argument("--data", action="append", help="a labelled folder to score now and show beside the others")
    p.add_argument("-o", "--out", help="the page to write (default: MODEL_DIR/report.html)")
    args = p.parse_args(argv)
    print(build_model_report(args.model_dir, args.data, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
