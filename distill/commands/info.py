"""`gendistiller info CONFIG_OR_CKPT`: a student's parameter count, part by part."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from distill.models import build_student, student_config_from_dict
from distill.models.student_checkpoint import read_student_checkpoint
from distill.training.trainer import load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="a student checkpoint (.pt) or a distillation config (path or shipped name)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")


def run(args: argparse.Namespace) -> int:
    if Path(args.source).suffix == ".pt":
        checkpoint = read_student_checkpoint(args.source)
        config = student_config_from_dict(checkpoint["config"]["student"])
        print(f"checkpoint: {args.source} (step {checkpoint['step']}, teacher {checkpoint['teacher']['spec']})")
    else:
        config = load_config(args.source, args.overrides).student
        print(f"config: {args.source} (for the teacher its geometry implies; training takes the real teacher's)")
    with torch.device("meta"):  # counts without allocating weights
        student = build_student(config)
    config = student.config  # resolved
    print(f"kind: {config.kind}")
    print(f"target_layers: {config.target_layers}")
    for name, count in student.parameter_breakdown().items():
        print(f"  {name}: {count:,}")
    print(f"total_params: {sum(p.numel() for p in student.parameters())}")
    return 0
