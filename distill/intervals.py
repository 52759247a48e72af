"""95% confidence intervals from per-item test results, and paired comparisons between upstreams.

s3prl 0.4.18's KS, IC and SID experts write one line per item whenever they evaluate a split (`Task.item_files` in
superb_recipes/tasks.yaml: KS `test_predict.txt` + `test_truth.txt`, lines "FILE_ID CLASS"), overwriting the previous
evaluation's. `superb-sweep` keeps those of the test score it takes in the chosen run's `test_items/` folder (see
`distill.superb_sweep.evaluate_test`), where `superb-report` reads them:

    correct = kept_correct(task, Path(row["expdir"]))       # {"yes-0a7c2a8d_nohash_0.wav": True, ...} or None
    low, high = bootstrap_interval(list(correct.values()))  # accuracy's 95% percentile bootstrap interval (fractions)
    comparison = paired_difference(correct, other)          # A - B on the items both scored; verdict "A", "B" or "~"
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from distill.recipes import Task

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


def bootstrap_interval(values: Union[Sequence[float], np.ndarray], resamples: int = 1000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (per-item correctness: the accuracy, as a fraction):
    `resamples` draws of as many items with replacement, from a generator seeded with `seed`."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"bootstrap_interval needs a non-empty list of per-item values, got shape {values.shape}")
    picks = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    low, high = np.quantile(values[picks].mean(axis=1), [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


@dataclass(frozen=True)
class Comparison:
    """Run A against run B on the items both scored (accuracies as fractions)."""

    difference: float  # accuracy of A minus accuracy of B
    low: float  # the difference's bootstrap interval
    high: float
    items: int  # items both runs scored

    @property
    def verdict(self) -> str:
        """"A" or "B", whichever is better when the interval excludes 0; "~" (a tie) when it includes 0."""
        return "A" if self.low > 0 else "B" if self.high < 0 else "~"


def paired_difference(a: Mapping[str, bool], b: Mapping[str, bool], resamples: int = 1000, seed: int = 0,
                      level: float = 0.95) -> Comparison:
    """A minus B over the items both runs share, with a bootstrap interval that resamples the same items for both
    (the per-item differences); items only one of them scored are left out."""
    shared = [item for item in a if item in b]
    if not shared:
        raise ValueError(f"the two runs share no items ({len(a)} and {len(b)} items): were they scored on the same test set?")
    differences = np.array([float(a[item]) - float(b[item]) for item in shared])
    return Comparison(float(differences.mean()), *bootstrap_interval(differences, resamples, seed, level), len(shared))
