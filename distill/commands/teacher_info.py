"""`gendistiller teacher-info SPEC`: load a teacher and describe it."""
from __future__ import annotations

import argparse

from distill.teachers import load_teacher


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="teacher checkpoint path, or family:PATH, or s3prl:NAME[:CKPT]")


def run(args: argparse.Namespace) -> int:
    teacher = load_teacher(args.spec)
    print(f"spec: {teacher.spec}")
    print(f"family: {teacher.family}")
    print(f"layers: {teacher.num_layers}")
    print(f"width: {teacher.dim}")
    source = getattr(teacher, "source_parameters", None)
    if source is not None:
        print(f"parameters: {source:,} (as in the checkpoint; {teacher.num_parameters():,} used at inference)")
    else:
        print(f"parameters: {teacher.num_parameters():,}")
    return 0
