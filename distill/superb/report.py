"""`gendistiller superb-report RESULTS.csv [--out DIR] [--runs LABEL=RUN_DIR ...] [--teacher LABEL] [--control LABEL]
[--corpus ROOT] [--fidelity JSON]`: markdown tables and PNG plots.

Writes DIR/superb.md (measured scores with parameter counts: over several downstream seeds (`superb-sweep --seeds N`)
their mean and standard deviation, and the seeds run; a 95% interval where the sweep kept the per-item test results
(KS, IC, SID), from a bootstrap over seeds and then test items; tasks whose s3prl expert writes no per-item results are
marked so in the header; with --corpus a chance row; with --teacher and --control the share of the teacher's margin
over the untrained control that each student keeps; each student against the other upstreams, paired on the test
items; then the published SUPERB rows for context), DIR/superb.png (a bar chart per task in SUPERB's unit, with the
intervals as error bars, chance and the control marked)
and, for distillation runs given with --runs, DIR/distillation.md (final training loss, L1 and cosine per target
layer; with --fidelity the same measured on held-out audio) and DIR/distillation_loss.png (loss curves).
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from distill.superb.intervals import kept_correct, margin_interval, paired_runs_difference, runs_interval
from distill.superb.sweep import read_results
from distill.superb.tasks import RECIPES_DIR, load_tasks

PUBLISHED = RECIPES_DIR / "published.yaml"


def _matplotlib():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass
class Reference:
    """Rows the students are read against: chance per task, and which upstreams are the teacher and the
    random-weight control (the teacher's architecture, untrained)."""

    chance: dict[str, float] = field(default_factory=dict)  # task -> score in s3prl's unit
    teacher: Optional[str] = None  # upstream label of the teacher
    control: Optional[str] = None  # upstream label of the control


def _scaled(value: float, task: str) -> float:
    """s3prl's logged value in SUPERB's unit (percent for all tasks but QbE)."""
    return value * load_tasks()[task].scale


def _task_order(rows: list[dict[str, str]]) -> list[str]:
    """The measured tasks in the order of the task table (SUPERB's), whatever order they finished in."""
    measured = {row["task"] for row in rows}
    return [task for task in load_tasks() if task in measured]


def _ordered_upstreams(rows: list[dict[str, str]], reference: Reference) -> list[str]:
    """Control, then teacher, then the rest in the order of the results file."""
    upstreams = list(dict.fromkeys(row["upstream"] for row in rows))
    first = [label for label in (reference.control, reference.teacher) if label in upstreams]
    return first + [u for u in upstreams if u not in first]


def _role(upstream: str, reference: Reference) -> str:
    return {reference.teacher: f"{upstream} (teacher)", reference.control: f"{upstream} (control: untrained)"}.get(upstream, upstream)


Items = dict[str, dict[str, bool]]  # seed -> item id -> whether the prediction was right


def _seed(row: dict[str, str]) -> str:
    """The row's s3prl seed; "default" for results written before the sweep recorded it."""
    return row.get("seed") or "default"


def _runs(rows: list[dict[str, str]]) -> dict[tuple[str, str], list[dict[str, str]]]:
    """(upstream, task) -> its rows, one per seed."""
    runs: dict[tuple[str, str], list[dict[str, str]]] = {}
    for row in rows:
        runs.setdefault((row["upstream"], row["task"]), []).append(row)
    return runs


def _kept_items(rows: list[dict[str, str]]) -> dict[tuple[str, str], Items]:
    """(upstream, task) -> its per-item test results by seed, where superb-sweep kept them for every seed it ran."""
    tasks = load_tasks()
    found = {}
    for key, runs in _runs(rows).items():
        kept = {_seed(row): kept_correct(tasks[row["task"]], row["expdir"]) for row in runs}
        if all(kept.values()):
            found[key] = kept
    return found


@dataclass(frozen=True)
class Score:
    """One upstream on one task over the downstream seeds it ran, in SUPERB's unit."""

    tests: tuple[float, ...]  # test score per seed
    lrs: tuple[str, ...]  # learning rate chosen on dev, per seed ("" where nothing trains: QbE)
    interval: Optional[tuple[float, float]]  # 95%: seeds, then test items resampled; None without per-item results

    @property
    def mean(self) -> float:
        return statistics.fmean(self.tests)

    @property
    def spread(self) -> float:
        """Standard deviation over seeds (0 for one)."""
        return statistics.stdev(self.tests) if len(self.tests) > 1 else 0.0

    def cell(self, without_interval: str = "") -> str:
        """"mean ± spread [low, high] (lr ...)"; `without_interval` stands in for the interval where there is none."""
        spread = f" ± {self.spread:.2f}" if len(self.tests) > 1 else ""
        bounds = f" [{self.interval[0]:.1f}, {self.interval[1]:.1f}]" if self.interval else without_interval
        lrs = "/".join(dict.fromkeys(f"{float(lr):g}" for lr in self.lrs if lr))
        return f"{self.mean:.2f}{spread}{bounds}" + (f" (lr {lrs})" if lrs else "")


def _scores(rows: list[dict[str, str]], items: dict[tuple[str, str], Items]) -> dict[tuple[str, str], Score]:
    """(upstream, task) -> its Score over the seeds in the results; `items`: `_kept_items(rows)`."""
    scores = {}
    for (upstream, task), runs in _runs(rows).items():
        kept = items.get((upstream, task))
        interval = None
        if kept:
            low, high = runs_interval([list(correct.values()) for correct in kept.values()])
            interval = (_scaled(low, task), _scaled(high, task))
        scores[(upstream, task)] = Score(tuple(_scaled(float(row["test"]), task) for row in runs),
                                         tuple(row["lr"] for row in runs), interval)
    return scores


def _seeds_line(rows: list[dict[str, str]]) -> str:
    seeds = list(dict.fromkeys(_seed(row) for row in rows))
    return (f"Downstream seeds (s3prl --seed): {', '.join(seeds)}" + ("; score: mean ± standard deviation over seeds"
                                                                         if len(seeds) > 1 else " (one run each)"))


def margin_kept(student: float, teacher: float, control: float) -> Optional[float]:
    """Share of the teacher's margin over the control that a student keeps: (student - control) / (teacher - control).
    Holds for either metric direction; None when the teacher has no margin."""
    if teacher == control:
        return None
    return (student - control) / (teacher - control)


def _column(rows: list[dict[str, str]], task: str) -> str:
    """A task's header: its metric, and whether its s3prl expert writes per-item results (no interval without)."""
    per_item = "" if load_tasks()[task].item_files else " (no per-item results: no interval)"
    return f"{task.upper()} {by_key_metric(rows, task)}{per_item}"


def superb_markdown(rows: list[dict[str, str]], reference: Reference = Reference()) -> str:
    tasks = _task_order(rows)
    upstreams = _ordered_upstreams(rows, reference)
    items = _kept_items(rows)  # read once: the per-item files behind every interval below
    scores = _scores(rows, items)
    lines = ["## Measured (s3prl runner; best dev learning rate, test score)", "", _seeds_line(rows), "",
             "| upstream | params (M) | " + " | ".join(_column(rows, t) for t in tasks) + " |",
             "|---|---|" + "---|" * len(tasks)]
    if reference.chance:
        cells = [f"{_scaled(reference.chance[t], t):.2f}" if t in reference.chance else "–" for t in tasks]
        lines.append("| chance (majority class) | – | " + " | ".join(cells) + " |")
    for upstream in upstreams:
        params = next(int(row["params"]) for row in rows if row["upstream"] == upstream)
        cells = [_cell(scores.get((upstream, task)), task) for task in tasks]
        lines.append(f"| {_role(upstream, reference)} | {params / 1e6:.2f} | " + " | ".join(cells) + " |")
    if any(score.interval for score in scores.values()):
        lines += ["", "[low, high]: 95% percentile bootstrap interval (1000 resamples: the seeds, then the test items of "
                  "each drawn seed); [not kept]: the sweep kept no per-item results for this run"]
    lines += _margin_lines(reference, tasks, upstreams, scores, items)
    lines += _paired_lines(reference, tasks, upstreams, scores, items)
    published = yaml.safe_load(PUBLISHED.read_text())
    columns = [t for t in ("pr", "ks", "ic", "sid", "er", "asr", "asv", "sd")]
    lines += ["", "## Published SUPERB rows (full corpora; not comparable with a local mini-SUPERB)", "",
              "| model | params (M) | " + " | ".join(c.upper() for c in columns) + " |", "|---|---|" + "---|" * len(columns)]
    for model, values in published.items():
        lines.append(f"| {model} | {values['params']:.2f} | " + " | ".join(f"{values[c]:.2f}" for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _cell(score: Optional[Score], task: str) -> str:
    if score is None:
        return "–"
    return score.cell(" [not kept]" if load_tasks()[task].item_files else "")


def _margin_lines(reference: Reference, tasks: list[str], upstreams: list[str], scores: dict[tuple[str, str], Score],
                  items: dict[tuple[str, str], Items]) -> list[str]:
    if reference.teacher is None or reference.control is None:
        return []
    lines = ["", "## Share of the teacher's margin over the control that each student keeps",
             "", "(student - control) / (teacher - control), test scores (means over seeds); 100% = as good as the teacher, 0% = no better "
             "than the untrained control; [low, high]: its 95% bootstrap interval, the three resampled on the same seeds and "
             "items", "", "| upstream | " + " | ".join(t.upper() for t in tasks) + " |",
             "|---|" + "---|" * len(tasks)]
    for upstream in upstreams:
        if upstream in (reference.teacher, reference.control):
            continue
        cells = []
        for task in tasks:
            keys = [(label, task) for label in (upstream, reference.teacher, reference.control)]
            kept = margin_kept(*(scores[key].mean for key in keys)) if all(key in scores for key in keys) else None
            interval = margin_interval(*(items[key] for key in keys)) if all(key in items for key in keys) else None
            bounds = f" [{round(100 * interval[0])}, {round(100 * interval[1])}]" if interval else ""
            cells.append("–" if kept is None else f"{round(100 * kept)}%{bounds}")  # ints: no "-0%"
        lines.append(f"| {upstream} | " + " | ".join(cells) + " |")
    return lines


def _paired_lines(reference: Reference, tasks: list[str], upstreams: list[str], scores: dict[tuple[str, str], Score],
                  items: dict[tuple[str, str], Items]) -> list[str]:
    """Each student against every other upstream measured on the task (teacher, control, the students after it)."""
    students = [u for u in upstreams if u not in (reference.teacher, reference.control)]
    pairs = [(a, b) for i, a in enumerate(students) for b in upstreams if b != a and b not in students[:i]]
    if not pairs:
        return []
    all_tasks = load_tasks()
    lines = ["", "## Paired comparisons on the test items", "",
             "A − B in points on the test items both scored (over seeds: the mean of the per-seed differences, items "
             "summed over the seeds both ran), with its 95% bootstrap interval (the same seeds, then the same items, "
             "resampled for both); better: the one ahead when the interval excludes 0, ~ when it includes 0 (a tie)", "",
             "| task | A | B | items | A − B | 95% interval | better |", "|---|---|---|---|---|---|---|"]
    for task in tasks:
        if not all_tasks[task].item_files:
            lines.append(f"| {task.upper()} | – | – | – | – | no interval | – |")
            continue
        scale = all_tasks[task].scale
        for a, b in pairs:
            if (a, task) in items and (b, task) in items:
                c = paired_runs_difference(items[(a, task)], items[(b, task)])
                better = {"A": a, "B": b, "~": "~"}[c.verdict]
                lines.append(f"| {task.upper()} | {a} | {b} | {c.items} | {scale * c.difference:+.2f} | "
                             f"[{scale * c.low:.1f}, {scale * c.high:.1f}] | {better} |")
            elif (a, task) in scores and (b, task) in scores:
                lines.append(f"| {task.upper()} | {a} | {b} | – | – | no interval | – |")
    return lines


def by_key_metric(rows: list[dict[str, str]], task: str) -> str:
    row = next(r for r in rows if r["task"] == task)
    arrow = "↑" if row["higher_is_better"] in ("True", "true", "1") else "↓"
    return f"{row['metric']}{arrow}"


def superb_plot(rows: list[dict[str, str]], path: Path, reference: Reference = Reference()) -> None:
    """One panel per task, bars in SUPERB's unit with their 95% intervals where known; chance as a dashed line, the
    control's score as a dotted line."""
    plt = _matplotlib()
    tasks = _task_order(rows)
    upstreams = _ordered_upstreams(rows, reference)
    scores = _scores(rows, _kept_items(rows))
    figure, axes = plt.subplots(1, len(tasks), figsize=(3.4 * len(tasks), 3.6), squeeze=False)
    for axis, task in zip(axes[0], tasks):
        task_scores = {u: scores[(u, task)] for u in upstreams if (u, task) in scores}
        values = [task_scores[u].mean if u in task_scores else 0.0 for u in upstreams]
        bounds = [task_scores[u].interval if u in task_scores and task_scores[u].interval else (v, v)
                  for u, v in zip(upstreams, values)]
        errors = [[max(0.0, v - low) for v, (low, _) in zip(values, bounds)],
                  [max(0.0, high - v) for v, (_, high) in zip(values, bounds)]]
        axis.bar(range(len(upstreams)), values, color=[f"C{i}" for i in range(len(upstreams))],
                 hatch=["//" if u == reference.control else "" for u in upstreams],
                 yerr=errors if any(score.interval for score in task_scores.values()) else None, capsize=3)
        axis.set_xticks(range(len(upstreams)), upstreams, rotation=30, ha="right")
        if task in reference.chance:
            axis.axhline(_scaled(reference.chance[task], task), color="gray", linestyle="--", label="chance")
        if reference.control in task_scores:
            axis.axhline(task_scores[reference.control].mean, color="black", linestyle=":",
                         label="untrained control")
        unit = "%" if load_tasks()[task].scale == 100 else ""
        axis.set_title(f"{task.upper()} ({by_key_metric(rows, task)}{', ' + unit if unit else ''})")
        if task in reference.chance or reference.control in task_scores:
            axis.legend(fontsize=7)
    figure.suptitle(_seeds_line(rows) + "; error bars: 95% intervals", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def fidelity_markdown(fidelity: dict[str, Any]) -> str:
    """`fidelity`: {student: {"files": N, "layers": {layer: {"l1", "cosine"}}}} (what `heldout_fidelity` measures)."""
    lines = ["## Fidelity to the teacher on held-out audio (student free running, as at inference)", "",
             "| student | files | per teacher layer: L1 ↓ / cosine ↑ |", "|---|---|---|"]
    for label, entry in fidelity.items():
        cells = "; ".join(f"L{layer}: {m['l1']:.3f} / {m['cosine']:.3f}" for layer, m in entry["layers"].items())
        lines.append(f"| {label} | {entry['files']} | {cells} |")
    return "\n".join(lines) + "\n"


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


REPORT_COLUMNS = ("upstream", "task", "metric", "higher_is_better", "lr", "test", "params", "expdir")  # what it reads


def read_report_results(path: Path) -> list[dict[str, str]]:
    """A sweep's results CSV, checked for what the report reads: those columns, at least one row, tasks of the task
    table, numbers where numbers are read; ValueError naming the file and the problem. No file: no rows."""
    if not path.exists():
        return []
    rows = read_results(path)
    if not rows:
        raise ValueError(f"{path}: no results (an empty CSV); run `gendistiller superb-sweep --results {path}` first")
    missing = [column for column in REPORT_COLUMNS if column not in rows[0]]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; a results CSV of `gendistiller "
                         f"superb-sweep` has {', '.join(REPORT_COLUMNS)}")
    tasks = load_tasks()
    for number, row in enumerate(rows, start=2):
        if row["task"] not in tasks:
            raise ValueError(f"{path}:{number}: unknown task {row['task']!r}; known: {', '.join(tasks)}")
        for column, kind in (("test", float), ("params", int)):
            try:
                kind(row[column])
            except (TypeError, ValueError):
                raise ValueError(f"{path}:{number}: {column} {row[column]!r} is not a number") from None
    return rows


def write_report(results: Path, out: Path, runs: dict[str, Path] | None = None, reference: Reference = Reference(),
                 fidelity: dict[str, Any] | None = None) -> list[Path]:
    rows = read_report_results(results)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if rows:
        (out / "superb.md").write_text(superb_markdown(rows, reference))
        superb_plot(rows, out / "superb.png", reference)
        written += [out / "superb.md", out / "superb.png"]
    if runs:
        (out / "distillation.md").write_text(distillation_markdown(runs) + ("\n" + fidelity_markdown(fidelity) if fidelity else ""))
        distillation_plot(runs, out / "distillation_loss.png")
        written += [out / "distillation.md", out / "distillation_loss.png"]
    return written


def chance_scores(tasks: set[str] | list[str], corpus_root: Path) -> dict[str, float]:
    """Chance (majority class) of each task with a local stand-in under `corpus_root`."""
    from distill.superb.chance import chance_score

    all_tasks = load_tasks()
    scores = {task: chance_score(all_tasks[task], corpus_root) for task in tasks}
    return {task: score for task, score in scores.items() if score is not None}
