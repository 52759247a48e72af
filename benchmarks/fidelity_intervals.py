"""Held-out fidelity with intervals: students of two kinds, each distilled with several seeds, paired on the same files.

    python -m benchmarks.fidelity_intervals --teacher whisper:runs/cache/whisper-base/model.bin \
        --heldout runs/cache/asterisk_speech/distill/heldout \
        --students gendistiller@0=G0.pt distilhubert@0=D0.pt gendistiller@1=G1.pt distilhubert@1=D1.pt --out DIR

Per kind (the label before '@') and target layer: mean L1 and mean cosine over every held-out frame, free running
(`distill.training.fidelity.layer_pairs`), averaged over the kind's distillation seeds, with a 95% interval from a
two-stage bootstrap (the seeds, then the files of each drawn seed; 1000 resamples). The two kinds are paired on the same
seeds and files: the difference (first kind minus second) with its interval, labelled ahead / tie / behind for the
first kind (lower L1, higher cosine is ahead; a tie when the interval includes 0).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np

from benchmarks.common import machine_info, markdown_table, pick_device, set_threads, write_outputs
from distill.io.audio import audio_files
from distill.models.student_checkpoint import load_student
from distill.teachers import load_teacher
from distill.training.fidelity import layer_pairs

METRICS = ("l1", "cosine")
RESAMPLES = 1000


def per_file(pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """(files, 3): each file's summed L1 (mean over channels, summed over frames), summed cosine and frame count."""
    rows = []
    for student, teacher in pairs:
        norms = np.maximum(np.linalg.norm(student, axis=-1) * np.linalg.norm(teacher, axis=-1), 1e-12)
        rows.append((np.abs(student - teacher).mean(-1).sum(), ((student * teacher).sum(-1) / norms).sum(), len(student)))
    return np.array(rows)


def _bootstrap(by_seed: list[np.ndarray], column: int, rng: np.random.Generator) -> np.ndarray:
    """Resampled frame-weighted means of `column` (a per-file sum; frames in the last column): seeds, then files."""
    means = np.empty(RESAMPLES)
    for draw in range(RESAMPLES):
        values = []
        for seed in rng.integers(0, len(by_seed), len(by_seed)):
            files = by_seed[seed][rng.integers(0, len(by_seed[seed]), len(by_seed[seed]))]
            values.append(files[:, column].sum() / files[:, 2].sum())
        means[draw] = np.mean(values)
    return means


def interval(by_seed: list[np.ndarray], column: int) -> dict[str, float]:
    """The frame-weighted mean of `column` over each seed's files, averaged over seeds, with its 95% interval."""
    value = float(np.mean([files[:, column].sum() / files[:, 2].sum() for files in by_seed]))
    low, high = np.percentile(_bootstrap(by_seed, column, np.random.default_rng(0)), [2.5, 97.5])
    return {"value": value, "low": float(low), "high": float(high)}


def paired(a: list[np.ndarray], b: list[np.ndarray], column: int, lower_is_better: bool) -> dict[str, Any]:
    """A minus B on the same seeds and files (the per-file sums subtracted, frames shared), with its interval."""
    difference = [np.column_stack([x[:, column] - y[:, column], np.zeros(len(x)), x[:, 2]]) for x, y in zip(a, b)]
    result = interval(difference, 0)
    better = result["high"] < 0 if lower_is_better else result["low"] > 0
    worse = result["low"] > 0 if lower_is_better else result["high"] < 0
    return {**result, "verdict": "ahead" if better else "behind" if worse else "tie"}


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--heldout", type=Path, required=True, help="a folder of held-out audio (searched recursively)")
    parser.add_argument("--students", nargs="+", required=True, metavar="KIND@SEED=CHECKPOINT")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/fidelity_intervals"))
    args = parser.parse_args(argv)
    set_threads(args.threads)
    teacher, files = load_teacher(args.teacher), audio_files([args.heldout])
    sums: dict[str, dict[int, list[np.ndarray]]] = {}
    for item in args.students:
        label, _, path = item.partition("=")
        student, _ = load_student(path)
        for layer, pairs in layer_pairs(student, teacher, files).items():
            sums.setdefault(label.split("@")[0], {}).setdefault(layer, []).append(per_file(pairs))
        print(f"[fidelity-intervals] {label}: {len(files)} files", flush=True)
    kinds = list(sums)
    layers = sorted(set.intersection(*(set(by_layer) for by_layer in sums.values())))
    results: dict[str, Any] = {"kinds": {kind: {str(layer): {metric: interval(sums[kind][layer], column)
                                                             for column, metric in enumerate(METRICS)}
                                                for layer in layers} for kind in kinds}}
    if len(kinds) == 2:
        a, b = (sums[kind] for kind in kinds)
        results["paired"] = {str(layer): {metric: paired(a[layer], b[layer], column, metric == "l1")
                                          for column, metric in enumerate(METRICS)} for layer in layers}
    setup = {"teacher": args.teacher, "heldout": str(args.heldout), "files": len(files), "students": args.students,
             "machine": machine_info(pick_device("cpu")),
             "command": " ".join(["python -m benchmarks.fidelity_intervals"] + (argv if argv is not None else sys.argv[1:]))}
    markdown = render(results, setup)
    write_outputs(args.out, "fidelity_intervals", {"setup": setup, **results}, markdown)
    print(markdown)
    return results


def render(results: dict[str, Any], setup: dict[str, Any]) -> str:
    def cell(entry: dict[str, float]) -> str:
        return f"{entry['value']:.4f} [{entry['low']:.4f}, {entry['high']:.4f}]"

    rows = [[kind, layer, cell(by_metric["l1"]), cell(by_metric["cosine"])]
            for kind, by_layer in results["kinds"].items() for layer, by_metric in by_layer.items()]
    text = (f"Held-out fidelity on {setup['files']} files of {setup['heldout']} ({setup['machine']['cpu']}, "
            f"{setup['machine']['date']}); mean over distillation seeds, 95% interval over seeds and files:\n\n"
            + markdown_table(["student", "layer", "L1", "cosine"], rows))
    if "paired" in results:
        first, second = results["kinds"]
        rows = [[layer, metric, f"{entry['value']:+.4f} [{entry['low']:+.4f}, {entry['high']:+.4f}]", entry["verdict"]]
                for layer, by_metric in results["paired"].items() for metric, entry in by_metric.items()]
        text += (f"\n{first} minus {second}, paired on the same seeds and files ({first}: ahead / tie / behind):\n\n"
                 + markdown_table(["layer", "metric", "difference", "verdict"], rows))
    return text


if __name__ == "__main__":
    main()
