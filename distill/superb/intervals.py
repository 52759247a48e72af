"""95% confidence intervals from per-item test results, and paired comparisons between upstreams.

s3prl 0.4.18's KS, IC and SID experts write one line per item whenever they evaluate a split (`Task.item_files` in
superb_recipes/tasks.yaml: KS `test_predict.txt` + `test_truth.txt`, lines "FILE_ID CLASS"), overwriting the previous
evaluation's. `superb-sweep` keeps those of the test score it takes in the chosen run's `test_items/` folder (see
`distill.superb.sweep.evaluate_test`), where `superb-report` reads them:

    correct = kept_correct(task, Path(row["expdir"]))       # {"yes-0a7c2a8d_nohash_0.wav": True, ...} or None
    low, high = bootstrap_interval(list(correct.values()))  # accuracy's 95% percentile bootstrap interval (fractions)
    comparison = paired_difference(correct, other)          # A - B on the items both scored; verdict "A", "B" or "~"

Over several downstream seeds (`superb-sweep --seeds N`), the runs' items are kept by seed and the bootstrap has two
stages, so that the interval holds both sources of spread (which seed, which test items):

    low, high = runs_interval([list(c.values()) for c in by_seed.values()])   # mean over seeds of each seed's accuracy
    comparison = paired_runs_difference(a_by_seed, b_by_seed)                 # the same seeds and items for A and B
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from distill.superb.tasks import Task

TEST_ITEMS = "test_items"  # in a run folder: the expert's per-item files of the test score superb-sweep took


def _labels(path: Path, separator: str) -> dict[str, str]:
    """{item id: label(s)} of one per-item file, whose lines are the id, the separator, then the label(s)."""
    labels: dict[str, str] = {}
    for line in path.read_text().splitlines():
        item, _, label = line.partition(separator)
        if item in labels:  # KS samples its dev split with replacement: only test lists each item once
            raise ValueError(f"{path}: item {item!r} appears twice; per-item results need each item once")
        labels[item] = label
    return labels


def read_correct(task: Task, folder: Union[str, Path], split: str) -> dict[str, bool]:
    """Item id -> whether the expert's prediction was right, from the per-item files it wrote in `folder` for `split`
    (an experiment folder, or a kept `test_items/`). Right means every label matches (IC: action, object and location),
    as the expert's accuracy counts it."""
    if not task.item_files:
        raise ValueError(f"task {task.name!r} has no per-item files to read (tasks.yaml item_files)")
    predictions, truth = (_labels(path, task.item_separator) for path in task.item_paths(folder, split))
    if predictions.keys() != truth.keys():
        raise ValueError(f"{folder}: the {split} predictions and truth list different items "
                         f"({len(predictions)} and {len(truth)}, {len(predictions.keys() ^ truth.keys())} not in both)")
    return {item: predictions[item] == label for item, label in truth.items()}


def kept_correct(task: Task, expdir: Union[str, Path]) -> Optional[dict[str, bool]]:
    """The per-item test results superb-sweep kept for a chosen run (a results row's `expdir`); None without them."""
    folder = Path(expdir) / TEST_ITEMS
    return read_correct(task, folder, task.test_split) if task.item_files and folder.is_dir() else None


def _resampled_means(runs: Sequence[np.ndarray], resamples: int, generator: np.random.Generator) -> np.ndarray:
    """`resamples` bootstrap means over `runs` (seeds), each an array of per-item values (items first; (items, k) for k
    upstreams on the same items, resampled together): every resample draws as many runs as there are with
    replacement, then, for each drawn run, as many of its items with replacement, and averages the drawn runs' item
    means. With one run this is the plain bootstrap over its items. Returns (resamples,) or (resamples, k)."""
    slot_means = np.stack([  # (slot, run, resample): an independent draw of every run's items for each slot
        np.stack([run[generator.integers(0, len(run), size=(resamples, len(run)))].mean(axis=1) for run in runs])
        for _ in runs])
    drawn = generator.integers(0, len(runs), size=(len(runs), 1, resamples))  # the run drawn into each slot
    drawn = drawn.reshape(drawn.shape + (1,) * (slot_means.ndim - 3))
    return np.take_along_axis(slot_means, drawn, axis=1)[:, 0].mean(axis=0)


def runs_interval(runs: Sequence[Union[Sequence[float], np.ndarray]], resamples: int = 1000, seed: int = 0,
                  level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over runs (downstream seeds) of each run's mean over its items (per-item
    correctness: the accuracy, as a fraction): seeds resampled, then items within each drawn seed (`_resampled_means`),
    from a generator seeded with `seed`."""
    arrays = [np.asarray(run, dtype=float) for run in runs]
    if not arrays or any(array.ndim != 1 or len(array) == 0 for array in arrays):
        raise ValueError(f"runs_interval needs non-empty lists of per-item values, got shapes {[a.shape for a in arrays]}")
    means = _resampled_means(arrays, resamples, np.random.default_rng(seed))
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def bootstrap_interval(values: Union[Sequence[float], np.ndarray], resamples: int = 1000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (one run's per-item correctness: its accuracy): `resamples`
    draws of as many items with replacement."""
    return runs_interval([values], resamples, seed, level)


@dataclass(frozen=True)
class Comparison:
    """Run A against run B on the items both scored (accuracies as fractions); over seeds, on the seeds both ran."""

    difference: float  # accuracy of A minus accuracy of B (over seeds: the mean of the per-seed differences)
    low: float  # the difference's bootstrap interval
    high: float
    items: int  # items both runs scored (over seeds: summed over the shared seeds)
    runs: int = 1  # seeds both ran

    @property
    def verdict(self) -> str:
        """"A" or "B", whichever is better when the interval excludes 0; "~" (a tie) when it includes 0."""
        return "A" if self.low > 0 else "B" if self.high < 0 else "~"


def _shared_differences(a: Mapping[str, bool], b: Mapping[str, bool]) -> np.ndarray:
    """A's minus B's per-item correctness over the items both scored."""
    shared = [item for item in a if item in b]
    if not shared:
        raise ValueError(f"the two runs share no items ({len(a)} and {len(b)} items): were they scored on the same test set?")
    return np.array([float(a[item]) - float(b[item]) for item in shared])


def paired_runs_difference(a: Mapping[str, Mapping[str, bool]], b: Mapping[str, Mapping[str, bool]],
                           resamples: int = 1000, seed: int = 0, level: float = 0.95) -> Comparison:
    """A minus B over the seeds both ran ({seed: {item: correct}}), on the items both scored within each seed; the
    interval resamples the same seeds, then the same items, for both (`runs_interval` of the per-item differences)."""
    seeds = [run for run in a if run in b]
    if not seeds:
        raise ValueError(f"the two upstreams share no seeds (A ran {sorted(a)}, B ran {sorted(b)})")
    differences = [_shared_differences(a[run], b[run]) for run in seeds]
    return Comparison(float(np.mean([d.mean() for d in differences])), *runs_interval(differences, resamples, seed, level),
                      sum(len(d) for d in differences), len(seeds))


def paired_difference(a: Mapping[str, bool], b: Mapping[str, bool], resamples: int = 1000, seed: int = 0,
                      level: float = 0.95) -> Comparison:
    """A minus B over the items both runs share (one seed), with a bootstrap interval that resamples the same items for
    both (the per-item differences); items only one of them scored are left out."""
    return paired_runs_difference({"": a}, {"": b}, resamples, seed, level)


def margin_interval(student: Mapping[str, Mapping[str, bool]], teacher: Mapping[str, Mapping[str, bool]],
                    control: Mapping[str, Mapping[str, bool]], resamples: int = 1000, seed: int = 0,
                    level: float = 0.95) -> Optional[tuple[float, float]]:
    """Interval of the share of the teacher's margin over the control that the student keeps, (student - control) /
    (teacher - control), from {seed: {item: correct}} of the three: the seeds all three ran, then the items all three
    scored in each, resampled together for the three. Resamples where the teacher ties the control are left out;
    None when every one does."""
    seeds = [run for run in student if run in teacher and run in control]
    if not seeds:
        raise ValueError("the student, teacher and control share no seeds")
    runs = []
    for run in seeds:
        items = [item for item in student[run] if item in teacher[run] and item in control[run]]
        if not items:
            raise ValueError(f"seed {run}: the student, teacher and control share no items")
        runs.append(np.array([[float(upstream[run][item]) for upstream in (student, teacher, control)] for item in items]))
    means = _resampled_means(runs, resamples, np.random.default_rng(seed))
    margin = means[:, 1] - means[:, 2]
    kept = (means[:, 0] - means[:, 2])[margin != 0] / margin[margin != 0]
    if len(kept) == 0:
        return None
    low, high = np.quantile(kept, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)
