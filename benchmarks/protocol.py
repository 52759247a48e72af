"""The development protocol: students compared downstream as SUPERB compares upstreams, over distillation seeds.

    python -m benchmarks.protocol --corpus runs/cache/asterisk_speech --tasks sid ic \
        --students gendistiller@0=G0.pt distilhubert@0=D0.pt gendistiller@1=G1.pt distilhubert@1=D1.pt \
        --options gendistiller-std=states_in_teacher_units:false --out DIR

For each distillation seed (KIND@SEED=CHECKPOINT), every upstream runs s3prl's recipe of each task through the runner
(`superb-sweep`): the first s3prl seed sweeps the learning rates (--lrs), the chosen rate on dev is trained with the
later s3prl seeds (--seeds in all), as SUPERB tunes the downstream per upstream and task. Each student is scored the
ways a user runs it: GenDistiller on the weighted sum of its hidden states; DistilHuBERT on its last layer
(`distilhubert`, SUPERB's `-s paper`) and on the weighted sum of all its hidden states (`distilhubert-ws`, s3prl's
default); `--options LABEL=key:value,...` adds a GenDistiller whose exposed states are chosen by the upstream's `-g`
(no retraining), and a KIND `gendistiller-NAME` a GenDistiller trained otherwise (an ablation's checkpoint). The local
settings of the main job (`gendistiller demo`): 1000 downstream steps (`--steps`), dev and test taken at the end.
Reported per upstream and task: the test score's mean and standard deviation over every (distillation seed, s3prl
seed) run with a 95% interval (two-stage bootstrap: the runs, then the test items), the learning rates chosen, the
weights each run's weighted sum learned (mean over runs), and every pair of upstreams paired on the same runs and test
items. Finished runs are kept in DIR and reused; `--finished-only` reports them without starting any (a protocol cut
short: its table then says how many runs each score has).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import yaml

from benchmarks.common import machine_info, markdown_table, parse_options, pick_device, write_outputs
from distill.commands.demo import LOCAL_OVERRIDES
from distill.superb.intervals import kept_correct, paired_runs_difference, runs_interval
from distill.superb.sweep import Upstream, parse_upstream, read_results, sweep_seeds
from distill.superb.tasks import load_tasks

STEPS = 1000
LRS = (1e-2, 1e-3, 1e-4)  # SUPERB's sweep


BASELINE_READOUTS = ("distilhubert", "distilhubert-ws")  # DistilHuBERT's last layer (-s paper), its weighted sum


def upstreams_of_seed(students: dict[str, str], options: dict[str, dict[str, Any]], out: Path,
                      readouts: Sequence[str] = BASELINE_READOUTS) -> list[Upstream]:
    """The upstreams of one distillation seed: each student as users run it (DistilHuBERT as `readouts` say), and
    the option variants of its GenDistiller (none for a seed without one)."""
    found = []
    for kind, checkpoint in students.items():
        if kind == "distilhubert":
            found += [parse_upstream(f"{readout}:{checkpoint}") for readout in readouts]
        else:
            found.append(parse_upstream(f"{kind}:{checkpoint}"))
    for label, values in options.items() if "gendistiller" in students else ():
        path = out / f"{label}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(values))
        found.append(Upstream(label, "gendistiller_local", students["gendistiller"], model_config=str(path)))
    return found


def featurizer_weights(run_dir: Path) -> Optional[list[float]]:
    """The softmax weights of the weighted sum that the run's best-dev checkpoint learned (None without one)."""
    checkpoint = run_dir / "dev-best.ckpt"
    if not checkpoint.is_file():
        return None
    states = torch.load(checkpoint, map_location="cpu", weights_only=False).get("Featurizer")
    return torch.softmax(states["weights"], -1).tolist() if states else None


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (task, upstream): scores over runs with an interval; every pair of upstreams on the same runs and items."""
    tasks = load_tasks()
    runs: dict[tuple[str, str], dict[str, dict[str, bool]]] = {}
    summary: dict[str, Any] = {"scores": [], "pairs": []}
    for (task, upstream) in sorted({(row["task"], row["upstream"]) for row in rows}):
        mine = [row for row in rows if (row["task"], row["upstream"]) == (task, upstream)]
        correct = {row["run"]: kept_correct(tasks[task], Path(row["expdir"])) for row in mine}
        tests = [100 * float(row["test"]) for row in mine]
        low, high = runs_interval([list(c.values()) for c in correct.values() if c]) if all(correct.values()) else (
            float("nan"), float("nan"))
        weights = [w for w in (featurizer_weights(Path(row["expdir"])) for row in mine) if w]
        summary["scores"].append({
            "task": task, "upstream": upstream, "runs": len(mine), "mean": statistics.fmean(tests),
            "sd": statistics.stdev(tests) if len(tests) > 1 else 0.0, "low": 100 * low, "high": 100 * high,
            "lrs": sorted({row["lr"] for row in mine}), "weights": np.mean(weights, 0).tolist() if weights else None})
        if all(correct.values()):
            runs[task, upstream] = correct  # type: ignore[assignment]
    for task in sorted({task for task, _ in runs}):
        labels = [upstream for t, upstream in runs if t == task]
        for i, a in enumerate(labels):
            for b in labels[i + 1:]:
                comparison = paired_runs_difference(runs[task, a], runs[task, b])
                summary["pairs"].append({"task": task, "a": a, "b": b, "difference": 100 * comparison.difference,
                                         "low": 100 * comparison.low, "high": 100 * comparison.high,
                                         "runs": comparison.runs, "items": comparison.items,
                                         "better": {"A": a, "B": b, "~": "~ (tie)"}[comparison.verdict]})
    return summary


def render(summary: dict[str, Any], setup: dict[str, Any]) -> str:
    rows = [[s["task"], s["upstream"], s["runs"], f"{s['mean']:.2f} ± {s['sd']:.2f}", f"[{s['low']:.1f}, {s['high']:.1f}]",
             ", ".join(s["lrs"]), " / ".join(f"{w:.2f}" for w in s["weights"]) if s["weights"] else "-"]
            for s in summary["scores"]]
    text = (f"Downstream on {setup['corpus']} ({setup['machine']['cpu']}, {setup['machine']['date']}): test % over "
            f"{setup['distillation_seeds']} distillation seed(s) x {setup['s3prl_seeds']} s3prl seed(s), lrs "
            f"{setup['lrs']} swept on the first s3prl seed, {setup['steps']} downstream steps.\n\n"
            + markdown_table(["task", "upstream", "runs", "mean ± sd", "95% interval", "lr chosen", "weights"], rows))
    rows = [[p["task"], f"{p['a']} - {p['b']}", f"{p['difference']:+.2f}", f"[{p['low']:+.1f}, {p['high']:+.1f}]",
             p["runs"], p["items"], p["better"]] for p in summary["pairs"]]
    return text + "\nPaired on the same runs and test items:\n\n" + markdown_table(
        ["task", "A - B", "points", "95% interval", "runs", "items", "better"], rows)


def run(students_by_seed: dict[str, dict[str, str]], corpus: Path, tasks: Sequence[str], lrs: Sequence[float],
        seeds: int, out: Path, options: Optional[dict[str, dict[str, Any]]] = None, jobs: int = 2,
        readouts: Sequence[str] = BASELINE_READOUTS, finished_only: bool = False,
        steps: int = STEPS) -> list[dict[str, Any]]:
    """Every upstream of each distillation seed ({seed: {kind: checkpoint}}) through the tasks with SUPERB's
    protocol, in out/distill_seed_S/ (out/distill_seed_S_steps_N/ for other than the default downstream steps;
    finished runs reused); the results' rows, each with its "run" (seed:s3prl seed). `finished_only`: the rows of the
    runs already finished there, none started."""
    overrides = [f"config.runner.total_steps={steps}", f"config.runner.eval_step={steps}",
                 f"config.runner.save_step={steps}", f"config.runner.log_step={steps // 4}"]
    rows = []
    for seed, students in students_by_seed.items():
        folder = out / (f"distill_seed_{seed}" + (f"_steps_{steps}" if steps != STEPS else ""))
        if finished_only:
            rows += [{**row, "run": f"{seed}:{row['seed']}"} for row in read_results(folder / "results.csv")
                     if row["task"] in tasks]
            continue
        upstreams = upstreams_of_seed(students, options or {}, folder, readouts)
        found = sweep_seeds(upstreams, tasks, lrs, folder / "results.csv", folder / "superb", seeds, overrides=overrides,
                            corpus=corpus, test_in_run=True, task_overrides=LOCAL_OVERRIDES, jobs=jobs)
        rows += [{**row, "run": f"{seed}:{row['seed']}"} for row in found]
    return rows


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="a corpus root in the tasks' layouts")
    parser.add_argument("--tasks", nargs="+", default=["sid", "ic"])
    parser.add_argument("--students", nargs="+", required=True, metavar="KIND@SEED=CHECKPOINT")
    parser.add_argument("--options", nargs="*", default=[], metavar="gendistiller-NAME=key:value,...")
    parser.add_argument("--lrs", type=float, nargs="+", default=list(LRS))
    parser.add_argument("--seeds", type=int, default=3, help="s3prl seeds per upstream and task (default 3)")
    parser.add_argument("--steps", type=int, default=STEPS,
                        help=f"downstream training steps, dev and test taken at the end (default {STEPS})")
    parser.add_argument("--jobs", type=int, default=2, help="s3prl runs at the same time")
    parser.add_argument("--distilhubert-readouts", nargs="+", choices=BASELINE_READOUTS, default=list(BASELINE_READOUTS),
                        help="how DistilHuBERT is scored: its last layer, the weighted sum of its states (default both)")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/protocol"))
    parser.add_argument("--finished-only", action="store_true",
                        help="report the runs already finished in --out without starting any")
    args = parser.parse_args(argv)
    options = parse_options(args.options)
    by_seed: dict[str, dict[str, str]] = {}
    for item in args.students:
        label, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"--students item {item!r} must look like KIND@SEED=CHECKPOINT")
        kind, _, seed = label.partition("@")
        by_seed.setdefault(seed or "0", {})[kind] = path
    shared = set(options) & {kind for students in by_seed.values() for kind in students}
    if shared:  # one label would name two upstreams, and their runs would mix in one results file
        raise SystemExit(f"--options labels {sorted(shared)} are also --students kinds; give the variant another name")
    rows = run(by_seed, args.corpus, args.tasks, args.lrs, args.seeds, args.out, options, args.jobs,
               args.distilhubert_readouts, args.finished_only, args.steps)
    if not rows:
        raise SystemExit(f"no finished runs of {args.tasks} in {args.out}")
    setup = {"corpus": str(args.corpus), "tasks": args.tasks, "students": args.students, "options": options,
             "lrs": args.lrs, "steps": args.steps, "s3prl_seeds": args.seeds, "distillation_seeds": len(by_seed),
             "finished_only": args.finished_only,
             "machine": machine_info(pick_device("cpu")),
             "command": " ".join(["python -m benchmarks.protocol"] + (argv if argv is not None else sys.argv[1:]))}
    summary = summarize(rows)
    markdown = render(summary, setup)
    write_outputs(args.out, "protocol", {"setup": setup, **summary}, markdown)
    print(markdown)
    return summary


if __name__ == "__main__":
    main()
