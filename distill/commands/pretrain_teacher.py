"""`gendistiller pretrain-teacher --data DIR --out TEACHER.pt [--config NAME_OR_YAML] [section.key=value ...] [--resume]`."""
from __future__ import annotations

import argparse

from distill.training.pretrain import load_config, pretrain


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="directory of 16 kHz mono .flac/.wav (searched recursively)")
    parser.add_argument("--out", required=True, help="where the teacher is written (official WavLM checkpoint format)")
    parser.add_argument("--config", default="pretrain_tiny_wavlm", help="YAML path or shipped config name")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the run folder")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides, values parsed as YAML")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, [*args.overrides, f"data.train={args.data}"])
    result = pretrain(config, args.out, resume=args.resume)
    print(f"[pretrain] teacher: {result.teacher}\n[pretrain] untrained control: {result.untrained}\n"
          f"[pretrain] run folder: {result.run_dir}")
    return 0
