"""`gendistiller superb-report RESULTS.csv [--out DIR] [--runs label=RUN_DIR ...]`: markdown tables and PNG plots.

Writes DIR/superb.md (measured scores with parameter counts, then the published SUPERB rows for context),
DIR/superb.png (a bar chart per task) and, for distillation runs given with --runs, DIR/distillation.md
(final loss, L1 and cosine per target layer) and DIR/distillation_loss.png (loss curves).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import yaml

from distill.superb_sweep import read_results

PUBLISHED = Path(__file__).resolve().parents[1] / "superb_recipes" / "published.yaml"


def _matplotlib():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _score(value: str, task: str) -> str:
    """s3prl's logged value in SUPERB's unit (percent for all tasks but QbE)."""
    from distill.recipes import load_tasks

    return f"{float(value) * load_tasks()[task].scale:.2f}"


def superb_markdown(rows: list[dict[str, str]]) -> str:
    tasks = list(dict.fromkeys(row["task"] for row in rows))
    upstreams = list(dict.fromkeys(row["upstream"] for row in rows))
    by_key = {(row["upstream"], row["task"]): row for row in rows}
    lines = ["## Measured (s3prl runner; best dev learning rate, test score)", "",
             "| upstream | params (M) | " + " | ".join(f"{t.upper()} {by_key_metric(rows, t)}" for t in tasks) + " |",
             "|---|---|" + "---|" * len(tasks)]
    for upstream in upstreams:
        params = next(int(row["params"]) for row in rows if row["upstream"] == upstream)
        cells = []
        for task in tasks:
            row = by_key.get((upstream, task))
            cells.append(f"{_score(row['test'], task)} (lr {float(row['lr']):g})" if row else "–")
        lines.append(f"| {upstream} | {params / 1e6:.2f} | " + " | ".join(cells) + " |")
    published = yaml.safe_load(PUBLISHED.read_text())
    columns = [t for t in ("pr", "ks", "ic", "sid", "er", "asr", "asv", "sd")]
    lines += ["", "## Published SUPERB rows (full corpora; not comparable with a local mini-SUPERB)", "",
              "| model | params (M) | " + " | ".join(c.upper() for c in columns) + " |", "|---|---|" + "---|" * len(columns)]
    for model, values in published.items():
        lines.append(f"| {model} | {values['params']:.2f} | " + " | ".join(f"{values[c]:.2f}" for c in columns) + " |")
    return "\n".join(lines) + "\n"


def by_key_metric(rows: list[dict[str, str]], task: str) -> str:
    row = next(r for r in rows if r["task"] == task)
    arrow = "↑" if row["higher_is_better"] in ("True", "true", "1") else "↓"
    return f"{row['metric']}{arrow}"


def superb_plot(rows: list[dict[str, str]], path: Path) -> None:
    plt = _matplotlib()
    tasks = list(dict.fromkeys(row["task"] for row in rows))
    upstreams = list(dict.fromkeys(row["upstream"] for row in rows))
    figure, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.2), squeeze=False)
    for axis, task in zip(axes[0], tasks):
        task_rows = {row["upstream"]: row for row in rows if row["task"] == task}
        values = [float(task_rows[u]["test"]) if u in task_rows else 0.0 for u in upstreams]
        axis.bar(range(len(upstreams)), values, color=[f"C{i}" for i in range(len(upstreams))])
        axis.set_xticks(range(len(upstreams)), upstreams, rotation=30, ha="right")
        axis.set_title(f"{task.upper()} ({by_key_metric(rows, task)})")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _metrics(run_dir: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]


def distillation_markdown(runs: dict[str, Path]) -> str:
    lines = ["## Distillation (last logged step; training history mode as configured)", "",
             "| student | step | loss | per layer: loss / L1 / cos |", "|---|---|---|---|"]
    for label, run_dir in runs.items():
        last = _metrics(run_dir)[-1]
        layers = sorted({int(k.rsplit("_", 1)[1]) for k in last if k.startswith("loss_layer_")})
        cells = "; ".join(f"L{l}: {last[f'loss_layer_{l}']:.3f} / {last[f'l1_layer_{l}']:.3f} / {last[f'cos_layer_{l}']:.3f}"
                          for l in layers)
        lines.append(f"| {label} | {int(last['step'])} | {last['loss']:.3f} | {cells} |")
    return "\n".join(lines) + "\n"


def distillation_plot(runs: dict[str, Path], path: Path) -> None:
    plt = _matplotlib()
    figure, axis = plt.subplots(figsize=(6, 3.5))
    for label, run_dir in runs.items():
        records = _metrics(run_dir)
        axis.plot([r["step"] for r in records], [r["loss"] for r in records], label=label)
    axis.set_xlabel("step")
    axis.set_ylabel("distillation loss (sum over target layers)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_report(results: Path, out: Path, runs: dict[str, Path] | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    rows = read_results(results)
    if rows:
        (out / "superb.md").write_text(superb_markdown(rows))
        superb_plot(rows, out / "superb.png")
        written += [out / "superb.md", out / "superb.png"]
    if runs:
        (out / "distillation.md").write_text(distillation_markdown(runs))
        distillation_plot(runs, out / "distillation_loss.png")
        written += [out / "distillation.md", out / "distillation_loss.png"]
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", type=Path, help="results CSV written by `gendistiller superb-sweep`")
    parser.add_argument("--out", type=Path, default=Path("report"))
    parser.add_argument("--runs", nargs="*", default=[], metavar="LABEL=RUN_DIR",
                        help="distillation output folders (with metrics.jsonl) to tabulate and plot")


def run(args: argparse.Namespace) -> int:
    runs = dict(_label_path(item) for item in args.runs)
    if not args.results.is_file() and not runs:
        raise FileNotFoundError(f"{args.results}: no results CSV (run `gendistiller superb-sweep` first)")
    for path in write_report(args.results, args.out, runs):
        print(f"[superb-report] wrote {path}")
    return 0


def _label_path(item: str) -> tuple[str, Path]:
    label, sep, path = item.partition("=")
    if not sep:
        raise ValueError(f"--runs item {item!r} must look like LABEL=RUN_DIR")
    return label, Path(path)
