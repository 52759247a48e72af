"""Chance level of the local accuracy tasks: the test-split accuracy of always answering the most frequent class,
read from the `gendistiller make-corpus` layouts (the test lists s3prl's experts read)."""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Callable, Optional

from distill.superb.tasks import Task


def _speech_commands(part: Path) -> Counter:
    """KS: the test tree's class folders (10 words, _silence_, _unknown_)."""
    test = part / "test"
    return Counter({folder.name: len(list(folder.glob("*.wav"))) for folder in test.iterdir() if folder.is_dir()})


def _fluent_commands(part: Path) -> Counter:
    """IC: an answer is right when action, object and location all are."""
    with open(part / "data" / "test_data.csv", newline="") as handle:
        return Counter((row["action"], row["object"], row["location"]) for row in csv.DictReader(handle))


def _voxceleb1(part: Path) -> Counter:
    """SID: the speakers of the test lines ("3 idNNNNN/VIDEO/NNNNN.wav") of iden_split.txt."""
    lines = (part / "iden_split.txt").read_text().split("\n")
    return Counter(line.split()[1].split("/")[0] for line in lines if line.startswith("3 "))


def _iemocap(part: Path) -> Counter:
    """ER: the labels of every fold's test session (each session is one fold's test split)."""
    return Counter(entry["label"] for path in sorted((part / "meta_data").glob("Session*/test_meta_data.json"))
                   for entry in json.loads(path.read_text())["meta_data"])


# make-corpus part -> class counts of its test split.
_TEST_CLASSES: dict[str, Callable[[Path], Counter]] = {
    "speech_commands": _speech_commands,
    "fluent_commands": _fluent_commands,
    "voxceleb1": _voxceleb1,
    "iemocap": _iemocap,
}


def chance_score(task: Task, corpus_root: Path) -> Optional[float]:
    """Majority-class accuracy on the task's local test split, in s3prl's unit (0..1); None where not defined."""
    if task.corpus not in _TEST_CLASSES or task.metric != "acc":
        return None
    counts = _TEST_CLASSES[task.corpus](corpus_root / task.corpus)
    total = sum(counts.values())
    return max(counts.values()) / total if total else None
