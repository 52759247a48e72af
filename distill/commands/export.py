"""`gendistiller export --to s3prl-distiller CKPT OUT.ckpt`: a baseline student in s3prl's own format."""
from __future__ import annotations

import argparse
import sys

from distill.export import FORMATS, ExportError, export_s3prl_distiller
from distill.serialization import CheckpointError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", required=True, choices=FORMATS,
                        help="s3prl-distiller: s3prl's DistilHuBERT checkpoint, loadable with -u distiller_local")
    parser.add_argument("checkpoint", help="a DistilHuBERT baseline checkpoint written by `gendistiller distill`")
    parser.add_argument("output", help="file to write (e.g. distilhubert.ckpt)")


def run(args: argparse.Namespace) -> int:
    try:
        path = export_s3prl_distiller(args.checkpoint, args.output)
    except (ExportError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"[export] wrote {path} ({args.to}); use it with s3prl: -u distiller_local -k {path}")
    return 0
