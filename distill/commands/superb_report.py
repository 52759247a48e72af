"""`gendistiller superb-report RESULTS.csv [--out DIR] [--runs LABEL=RUN_DIR ...] [--teacher LABEL] [--control LABEL]
[--corpus ROOT] [--fidelity JSON]`: markdown tables and PNG plots of a sweep (distill.superb.report says what each
file holds)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from distill.superb.report import Reference, chance_scores, read_report_results, write_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", type=Path, help="results CSV written by `gendistiller superb-sweep`")
    parser.add_argument("--out", type=Path, default=Path("report"))
    parser.add_argument("--runs", nargs="*", default=[], metavar="LABEL=RUN_DIR",
                        help="distillation output folders (with metrics.jsonl) to tabulate and plot")
    parser.add_argument("--teacher", help="upstream label of the teacher (with --control: margin kept per student)")
    parser.add_argument("--control", help="upstream label of the untrained control (the teacher's architecture)")
    parser.add_argument("--corpus", type=Path, help="a `gendistiller make-corpus` root: adds the chance row")
    parser.add_argument("--fidelity", type=Path, help="held-out fidelity JSON written by `gendistiller demo`")


def run(args: argparse.Namespace) -> int:
    runs = dict(_label_path(item) for item in args.runs)
    if not args.results.is_file() and not runs:
        raise FileNotFoundError(f"{args.results}: no results CSV (run `gendistiller superb-sweep` first)")
    rows = read_report_results(args.results)  # an empty CSV or one without the report's columns: a one-line error
    reference = Reference(chance_scores({row["task"] for row in rows}, args.corpus) if args.corpus else {},
                          args.teacher, args.control)
    fidelity = json.loads(args.fidelity.read_text()) if args.fidelity else None
    for path in write_report(args.results, args.out, runs, reference, fidelity):
        print(f"[superb-report] wrote {path}")
    return 0


def _label_path(item: str) -> tuple[str, Path]:
    label, sep, path = item.partition("=")
    if not sep:
        raise ValueError(f"--runs item {item!r} must look like LABEL=RUN_DIR")
    return label, Path(path)
