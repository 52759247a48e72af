"""SUPERB learning-rate sweeps through s3prl's own runner, and the results table + plots.

`gendistiller superb-sweep --upstreams gendistiller:CKPT,distilhubert:CKPT,wavlm:CKPT --tasks ks,ic,sid
 --lrs 1e-2,1e-3,1e-4 --results results.csv` trains each (upstream, task, lr) with s3prl's runner (a fresh
process each: the runner patches builtins), picks the lr with the best dev score, evaluates that run's
`dev-best.ckpt` on test and appends one row per (upstream, task) to the results CSV.

With `test_in_run` (the embedded demo) each training run also evaluates the test split whenever it evaluates dev,
and the test score at the best-dev step is taken: the same weights as `dev-best.ckpt`, without a second process.

Tasks whose expert writes per-item results (KS, IC, SID: tasks.yaml `item_files`) also keep the items of the test score
taken in the chosen run's `test_items/` folder, for `superb-report`'s confidence intervals (`distill.superb.intervals`).

`--seeds N` repeats the sweep with N s3prl seeds (1337, s3prl's own default, then 1338, ...), each in its own
`EXPDIR/seed_S/`, all rows in the one results CSV (its `seed` column); `superb-report` gives their mean and spread and an
interval over seeds and test items.

One sweep per results CSV at a time (a lock beside it). Resumable: a finished training run leaves `sweep.json` (its dev
scores) in its experiment folder and is never rerun; a finished (upstream, task) is a CSV row and is skipped. An
interrupted training run is started again.
"""
from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from distill.io.run_folder import RunLock
from distill.superb.intervals import TEST_ITEMS, read_correct
from distill.superb.tasks import Task, load_tasks, parse_scores

RESULT_FIELDS = ("upstream", "task", "seed", "metric", "higher_is_better", "lr", "dev", "test", "params", "ckpt", "expdir",
                 "finished_at")
S3PRL_SEED = 1337  # run_downstream.py's --seed default: the first of `--seeds N`


@dataclass(frozen=True)
class Upstream:
    """A name in the results and how s3prl's runner loads it."""

    label: str  # gendistiller, distilhubert, wavlm, hubert, ...
    s3prl_name: str  # -u
    ckpt: str  # -k
    feature: Optional[str] = None  # -s (None: weighted sum of hidden_states)
    model_config: Optional[str] = None  # -g: the upstream's options file (ours: inference options, see its expert)

    def runner_flags(self) -> list[str]:
        return (["-u", self.s3prl_name, "-k", self.ckpt] + (["-s", self.feature] if self.feature else [])
                + (["-g", self.model_config] if self.model_config else []))


def parse_upstream(spec: str) -> Upstream:
    """`gendistiller:CKPT` (or `gendistiller-NAME:CKPT`, a GenDistiller trained otherwise, e.g. an ablation),
    `distilhubert:CKPT` (ours, or an s3prl distiller file), `wavlm:CKPT`, `hubert:CKPT`, or `s3prl:NAME:CKPT` (any s3prl
    upstream). `distilhubert` is scored on its last layer (SUPERB's `-s paper`, as its
    authors benchmark it); `distilhubert-ws` on the learned weighted sum of all its hidden states, s3prl's default and
    what every other upstream here gets."""
    label, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise ValueError(f"upstream {spec!r} must look like LABEL:CKPT (e.g. gendistiller:runs/x/checkpoints/step_1.pt)")
    if label == "s3prl":
        name, _, ckpt = rest.partition(":")
        return Upstream(name, name, ckpt)
    if label == "gendistiller" or label.startswith("gendistiller-"):
        return Upstream(label, "gendistiller_local", rest)
    if label in ("distilhubert", "distilhubert-ws"):
        from distill.io.checkpoint_files import read_checkpoint
        from distill.models.student_checkpoint import CHECKPOINT_FORMAT

        ours = read_checkpoint(rest).get("format") == CHECKPOINT_FORMAT
        return Upstream(label, "gendistiller_local" if ours else "distiller_local", rest,
                        "paper" if label == "distilhubert" else None)
    if label in ("wavlm", "hubert", "wav2vec2"):
        return Upstream(label, f"{label}_local", rest)
    raise ValueError(f"unknown upstream label {label!r} in {spec!r}; use gendistiller, gendistiller-NAME, distilhubert, "
                     "distilhubert-ws, wavlm, hubert, wav2vec2 or s3prl:NAME:CKPT")


def count_parameters(upstream: Upstream) -> int:
    """Parameters of the upstream as its own checkpoint holds them."""
    from distill.io.checkpoint_files import read_checkpoint

    checkpoint = read_checkpoint(upstream.ckpt)
    if "student" in checkpoint:
        return sum(v.numel() for v in checkpoint["student"].values())
    if "Distiller" in checkpoint:
        return sum(v.numel() for v in checkpoint["Distiller"].values())
    if "model" in checkpoint and isinstance(checkpoint["model"], dict):
        return sum(v.numel() for v in checkpoint["model"].values() if hasattr(v, "numel"))
    return 0


def read_results(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _upgrade_header(path: Path) -> None:
    """Rewrites a results CSV written before a field was added (`seed`) with today's fields, the new ones empty."""
    with open(path, newline="") as handle:
        header = next(csv.reader(handle), None)
    if header is None or tuple(header) == RESULT_FIELDS:
        return
    rows = read_results(path)
    partial = path.with_suffix(".partial")
    with open(partial, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=RESULT_FIELDS)
        writer.writeheader()
        writer.writerows({key: row.get(key, "") for key in RESULT_FIELDS} for row in rows)
    partial.replace(path)


def append_result(path: Path, row: dict[str, object]) -> None:
    """Appends one row and flushes it to disk, so an interruption never loses a finished combination."""
    new = not path.is_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not new:
        _upgrade_header(path)
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=RESULT_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow({key: row.get(key, "") for key in RESULT_FIELDS})
        handle.flush()
        os.fsync(handle.fileno())


def _superb(args: Sequence[str], run_dir: Path) -> str:
    """`gendistiller superb ARGS` in a fresh process. Its stderr (progress, logs) is appended to run_dir/sweep.log;
    its stdout, where several s3prl experts print their scores, is returned (and appended to run_dir/stdout.log)."""
    command = [sys.executable, "-m", "distill.cli", "superb", *args]
    with open(run_dir / "sweep.log", "a") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        result = subprocess.run(command, stdout=subprocess.PIPE, stderr=log, text=True)
    with open(run_dir / "stdout.log", "a") as out:
        out.write(result.stdout)
    if result.returncode != 0:
        tail = "".join((run_dir / "sweep.log").read_text().splitlines(keepends=True)[-30:])
        raise RuntimeError(f"s3prl runner failed (exit {result.returncode}); see {run_dir / 'sweep.log'}:\n{tail}")
    return result.stdout


def _scores(task: Task, run_dir: Path, stdout: str, split: str, log_offset: int = 0) -> dict[int, float]:
    text = (run_dir / "log.log").read_text()[log_offset:] if task.score_source == "log.log" else stdout
    scores = parse_scores(text, task, split)
    if not scores:
        raise RuntimeError(f"no {split} {task.metric} found in {run_dir} ({task.score_source}); check the runner's eval_step")
    return scores


def evaluate_only(upstream: Upstream, task: Task, run_dir: Path, overrides: Sequence[str]) -> dict[str, float]:
    """Tasks without training (QbE): the expert on the dev and test queries, each scored by our MTWV (once; kept in
    run_dir/SPLIT/score.json)."""
    from distill.superb.qbe_scoring import dataset_root_from, score_experiment

    scores = {}
    for split in (task.dev_split, task.test_split):
        split_dir = run_dir / str(split)
        done = split_dir / "score.json"
        if not done.is_file():
            if split_dir.exists():
                shutil.rmtree(split_dir)
            split_dir.mkdir(parents=True)
            _superb(["-m", "evaluate", "-t", str(split), *upstream.runner_flags(), "-d", task.downstream, "-c",
                     str(task.config), "-p", str(split_dir), *task.extra_args, "-o", ",,".join([*task.overrides, *overrides])],
                    split_dir)
            done.write_text(json.dumps({"score": score_experiment(split_dir, dataset_root_from(list(overrides)), str(split))}))
        scores[str(split)] = float(json.loads(done.read_text())["score"])
    return scores


def train_one(upstream: Upstream, task: Task, lr: float, run_dir: Path, overrides: Sequence[str],
              test_in_run: bool = False, seed: int = S3PRL_SEED) -> float:
    """Trains one (upstream, task, lr, fold) unless already done; returns its best dev score. With `test_in_run`
    the run evaluates test beside dev and sweep.json keeps the test score at the best-dev step."""
    done = run_dir / "sweep.json"
    if done.is_file():
        best = json.loads(done.read_text())["best_dev"]
        return float("nan") if best is None else float(best)
    if run_dir.exists():  # an interrupted run: start it again from scratch
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    for cache in task.cache_paths():  # s3prl file-list caches ignore a changed data root
        if cache.is_dir():
            shutil.rmtree(cache)
        else:
            cache.unlink(missing_ok=True)
    splits = [task.dev_split, task.test_split] if test_in_run else [task.dev_split]
    if task.dev_split is None:  # nothing to evaluate while training: its last checkpoint is scored on test
        splits = []
    options = [*task.overrides, *overrides, f"config.optimizer.lr={lr}", f"config.runner.eval_dataloaders={splits}"]
    stdout = _superb(["-m", "train", *upstream.runner_flags(), "-d", task.downstream, "-c", str(task.config),
                      "-p", str(run_dir), *task.extra_args, "--seed", str(seed), "-o", ",,".join(options)], run_dir)
    if task.dev_split is None:
        done.write_text(json.dumps({"lr": lr, "best_dev": None}))
        return float("nan")
    scores = _scores(task, run_dir, stdout, task.dev_split)
    best_step = task.best_key(scores)
    record = {"lr": lr, "dev_scores": scores, "best_dev": scores[best_step], "best_step": best_step}
    if test_in_run:
        test_scores = _scores(task, run_dir, stdout, task.test_split)
        if test_scores.keys() != scores.keys():
            raise RuntimeError(f"{run_dir}: test was evaluated at {sorted(test_scores)}, dev at {sorted(scores)}")
        record["test_at_best_dev"] = test_scores[best_step]
    done.write_text(json.dumps(record))
    return scores[best_step]


def _best_checkpoint(task: Task, run_dir: Path) -> Path:
    """The expert's best-dev checkpoint; s3prl saves one only when a dev score beats 0 (accuracy tasks), so a run
    that never did falls back to its last checkpoint, as does a task without a dev split (ASV)."""
    if task.best_checkpoint is not None and (run_dir / task.best_checkpoint).is_file():
        return run_dir / task.best_checkpoint
    states = sorted(run_dir.glob("states-*.ckpt"), key=lambda p: int(p.stem.split("-")[1]))
    if not states:
        raise FileNotFoundError(f"{run_dir}: neither {task.best_checkpoint} nor states-*.ckpt to evaluate")
    return states[-1]


def _evaluate_best_checkpoint(task: Task, run_dir: Path) -> float:
    """`-m evaluate` of the run's best-dev weights on test; the expert rewrites its per-item test files."""
    log_offset = len((run_dir / "log.log").read_text()) if (run_dir / "log.log").is_file() else 0
    stdout = _superb(["-m", "evaluate", "-e", str(_best_checkpoint(task, run_dir)), "-t", task.test_split], run_dir)
    return list(_scores(task, run_dir, stdout, task.test_split, log_offset).values())[-1]


def _keep_test_items(task: Task, run_dir: Path, test: float) -> None:
    """Copies the expert's per-item test files, which must hold the items of the score `test`, to run_dir/test_items/
    (once; tasks without item_files have none). Files whose accuracy is not `test` are not kept: no interval then."""
    kept = run_dir / TEST_ITEMS
    if not task.item_files or kept.is_dir():
        return
    try:  # a side result: a long sweep never stops over it
        correct = read_correct(task, run_dir, task.test_split)
    except (OSError, ValueError) as error:
        print(f"[superb-sweep] {run_dir}: per-item test results not kept (no interval): {error}", flush=True)
        return
    accuracy = sum(correct.values()) / len(correct)
    if not math.isclose(accuracy, test, abs_tol=1e-5):  # IC and SID average in float32
        print(f"[superb-sweep] {run_dir}: the per-item test files give {accuracy:.6f}, the score taken is {test:.6f}; "
              "not kept (no interval)", flush=True)
        return
    partial = run_dir / f"{TEST_ITEMS}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    for path in task.item_paths(run_dir, task.test_split):
        shutil.copy2(path, partial)
    partial.rename(kept)


def evaluate_test(task: Task, run_dir: Path) -> float:
    """The test score of the run's best-dev weights: recorded during training (`test_in_run`), or evaluated from
    its best-dev checkpoint (once; the score is kept in test.json). The expert's per-item results of that score are
    kept in run_dir/test_items/. The expert rewrites them at every evaluation, so after a `test_in_run` whose best dev
    step was not its last evaluation they hold a later step's items: the best-dev checkpoint is then evaluated once
    more for them (the same weights, so the same score; checked against the recorded one)."""
    record = json.loads((run_dir / "sweep.json").read_text())
    recorded = record.get("test_at_best_dev")
    if recorded is not None:
        last_step = max(int(step) for step in record["dev_scores"])
        if task.item_files and not (run_dir / TEST_ITEMS).is_dir() and record["best_step"] != last_step:
            _evaluate_best_checkpoint(task, run_dir)
        _keep_test_items(task, run_dir, float(recorded))
        return float(recorded)
    done = run_dir / "test.json"
    if done.is_file():
        test = float(json.loads(done.read_text())["test"])
    else:
        test = _evaluate_best_checkpoint(task, run_dir)
        done.write_text(json.dumps({"test": test}))
    _keep_test_items(task, run_dir, test)  # the files of the one `-m evaluate`: training never evaluates test here
    return test


def sweep(upstreams: Sequence[Upstream], task_names: Sequence[str], lrs: Sequence[float], results: Path, expdir: Path,
          overrides: Sequence[str] = (), corpus: Optional[Path] = None, test_in_run: bool = False,
          task_overrides: Optional[Mapping[str, Sequence[str]]] = None, jobs: int = 1,
          seed: int = S3PRL_SEED, chosen_lrs: Optional[Mapping[tuple[str, str], float]] = None) -> list[dict[str, str]]:
    """Runs every missing (upstream, task) with `seed`; returns the results CSV's rows of that seed. Cross-validated
    tasks (ER) run every fold per learning rate and average the fold scores. Scores are in s3prl's units (see tasks.yaml `scale`).
    `test_in_run` saves one runner process per (upstream, task) and costs a test evaluation at every dev evaluation:
    worth it for short runs with few evaluations (the embedded demo), not for SUPERB's schedules.
    `task_overrides`: extra -o items per task. `jobs`: (upstream, task) pairs run at the same time, each in its own
    runner process; runs of a task whose expert caches inside the s3prl package never overlap. `seed`: the runner's
    --seed for every training run (a `seed` column of the results; several seeds: `sweep_seeds`). `chosen_lrs`:
    {(upstream label, task): lr} trained alone instead of `lrs` (the rate an earlier seed chose)."""
    tasks = load_tasks()
    unknown = [name for name in task_names if name not in tasks]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; known: {sorted(tasks)}")
    finished = {(row["upstream"], row["task"]) for row in read_results(results) if row.get("seed") == str(seed)}
    todo = [(u, t) for u in upstreams for t in task_names if (u.label, t) not in finished]
    cache_locks = {name: threading.Lock() for name in task_names if tasks[name].s3prl_caches}

    def one(number: int, upstream: Upstream, task_name: str) -> dict[str, object]:
        task = tasks[task_name]
        base = [*(task.corpus_overrides(corpus) if corpus else []), *overrides, *(task_overrides or {}).get(task_name, ())]
        folds = list(task.folds) or [None]

        def run_dir(lr: float, fold: Optional[str]) -> Path:
            return expdir / upstream.label / task_name / f"lr_{lr:g}" / (fold or "")

        with cache_locks.get(task_name) or contextlib.nullcontext():
            if not task.trains:  # QbE: nothing to train or tune
                print(f"[superb-sweep] {number}/{len(todo)} {upstream.label} {task_name} (evaluation only)", flush=True)
                scores = evaluate_only(upstream, task, expdir / upstream.label / task_name, base)
                chosen, dev_by_lr, test = "", {"": scores[str(task.dev_split)]}, scores[str(task.test_split)]
            else:
                # Without a dev split there is nothing to choose a learning rate on: the first one alone is trained.
                task_lrs = lrs if task.dev_split is not None else lrs[:1]
                if chosen_lrs and (upstream.label, task_name) in chosen_lrs:
                    task_lrs = [chosen_lrs[upstream.label, task_name]]
                dev_by_lr = {}
                for lr in task_lrs:
                    print(f"[superb-sweep] {number}/{len(todo)} {upstream.label} {task_name} lr={lr:g}", flush=True)
                    dev_by_lr[lr] = sum(train_one(upstream, task, lr, run_dir(lr, fold),
                                                  base + (task.fold_overrides(fold) if fold else []), test_in_run, seed)
                                        for fold in folds) / len(folds)
                chosen = task.best_key(dev_by_lr) if task.dev_split is not None else task_lrs[0]
                test = sum(evaluate_test(task, run_dir(chosen, fold)) for fold in folds) / len(folds)
        print(f"[superb-sweep] {upstream.label} {task_name}: lr {chosen or '-'}, dev {dev_by_lr[chosen]:.4f}, "
              f"test {task.metric} {test:.4f}", flush=True)
        expdir_of_run = expdir / upstream.label / task_name if not task.trains else run_dir(chosen, None)  # type: ignore[arg-type]
        return {"upstream": upstream.label, "task": task_name, "seed": seed, "metric": task.metric,
                "higher_is_better": task.higher_is_better, "lr": chosen, "dev": dev_by_lr[chosen], "test": test,
                "params": count_parameters(upstream), "ckpt": upstream.ckpt, "expdir": str(expdir_of_run),
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:  # threads wait on runner processes
        futures = [pool.submit(one, number, upstream, task_name) for number, (upstream, task_name) in enumerate(todo, 1)]
        for future in as_completed(futures):
            append_result(results, future.result())  # this thread alone writes the CSV
    return [row for row in read_results(results) if row.get("seed") == str(seed)]


def seeds_of(count: int) -> list[int]:
    """The s3prl seeds of `--seeds count`: s3prl's default first, so that one seed is the runner's usual run."""
    if count < 1:
        raise ValueError(f"--seeds must be at least 1, got {count}")
    return [S3PRL_SEED + number for number in range(count)]


def sweep_seeds(upstreams: Sequence[Upstream], task_names: Sequence[str], lrs: Sequence[float], results: Path,
                expdir: Path, seeds: int = 1, lrs_every_seed: bool = False, **options: Any) -> list[dict[str, str]]:
    """`sweep` once per seed of `seeds_of(seeds)`, each in expdir/seed_S/, every row in the one `results` CSV;
    `options` are sweep's. SUPERB's protocol: the first seed sweeps `lrs` and the later seeds train the rate it chose
    on dev for each (upstream, task); `lrs_every_seed` sweeps them at every seed. Returns all rows. The results CSV is
    held for the sweep (one sweep per CSV: two would run the same combinations and append them twice)."""
    first, *later = seeds_of(seeds)
    with RunLock.file(results, "--results"):
        rows = sweep(upstreams, task_names, lrs, results, expdir / f"seed_{first}", seed=first, **options)
        chosen = None if lrs_every_seed else {(row["upstream"], row["task"]): float(row["lr"]) for row in rows if row["lr"]}
        for seed in later:
            sweep(upstreams, task_names, lrs, results, expdir / f"seed_{seed}", seed=seed, chosen_lrs=chosen, **options)
        return read_results(results)
