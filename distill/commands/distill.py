"""`gendistiller distill --config FILE_OR_NAME [section.key=value ...] [--resume]`."""
from __future__ import annotations

import argparse

from distill.training.trainer import load_config, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML config path, or a shipped config name (e.g. tiny_gendistiller)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in run.output_dir")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides, values parsed as YAML")


def run(args: argparse.Namespace) -> int:
    last = train(load_config(args.config, args.overrides), resume=args.resume)
    print(f"[distill] done: {last}")
    return 0
