"""`gendistiller superb-sweep --upstreams LABEL:CKPT,... --tasks ks,ic,sid [--lrs ...] [--seeds N] --results CSV`:
a learning-rate sweep over upstreams x SUPERB tasks through s3prl's own runner (distill.superb.sweep), resumable."""
from __future__ import annotations

import argparse
from pathlib import Path

from distill.superb.sweep import S3PRL_SEED, parse_upstream, sweep_seeds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--upstreams", required=True, help="comma-separated LABEL:CKPT (gendistiller, distilhubert, wavlm, ...)")
    parser.add_argument("--tasks", required=True, help="comma-separated task names from superb_recipes/tasks.yaml")
    parser.add_argument("--lrs", default="1e-2,1e-3,1e-4", help="comma-separated downstream learning rates")
    parser.add_argument("--results", default="superb_results.csv", type=Path)
    parser.add_argument("--expdir", default="superb_sweep", type=Path, help="experiment folders go here")
    parser.add_argument("--corpus", type=Path, help="a `gendistiller make-corpus` root: point the tasks at its data")
    parser.add_argument("--test-in-run", action="store_true",
                        help="evaluate test beside dev during training and take it at the best-dev step (short runs)")
    parser.add_argument("--jobs", type=int, default=1, help="runner processes at the same time (default 1)")
    parser.add_argument("--seeds", type=int, default=1, help=f"downstream runs per (upstream, task), with s3prl seeds "
                        f"{S3PRL_SEED}, {S3PRL_SEED + 1}, ... (default 1: s3prl's own seed); the first seed sweeps --lrs "
                        "and the later ones train the rate it chose on dev (SUPERB's protocol)")
    parser.add_argument("--lrs-every-seed", action="store_true", help="sweep --lrs at every seed, not the first alone")
    parser.add_argument("-o", "--override", action="append", default=[],
                        help="extra s3prl override for every run, e.g. config.runner.total_steps=2000 (repeatable)")


def run(args: argparse.Namespace) -> int:
    rows = sweep_seeds([parse_upstream(s) for s in args.upstreams.split(",")], args.tasks.split(","),
                       [float(lr) for lr in args.lrs.split(",")], args.results, args.expdir, args.seeds,
                       overrides=args.override, corpus=args.corpus, test_in_run=args.test_in_run, jobs=args.jobs,
                       lrs_every_seed=args.lrs_every_seed)
    print(f"[superb-sweep] {len(rows)} results in {args.results}")
    return 0
