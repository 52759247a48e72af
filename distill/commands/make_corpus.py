"""`gendistiller make-corpus ROOT [--size tiny|small|default] [--seed N] [--parts ...]`: the local mini-SUPERB corpora
(espeak-ng; deterministic from a seed), then the s3prl `-d`/`-o` arguments that point each task at them."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from distill.corpora.synthetic import PARTS, SIZES, CorpusError, build_corpus, s3prl_overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", type=Path, help="folder to build the corpora in (one sub-folder per part)")
    parser.add_argument("--size", choices=list(SIZES), default="default", help="corpus size (default: default)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives identical files")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="parts to build (default: all)")
    parser.add_argument("--workers", type=int, default=2, help="parallel espeak-ng/sox jobs (default: 2)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    try:
        paths = build_corpus(args.root, args.parts, args.size, args.seed, progress=not args.quiet,
                             workers=args.workers)
    except CorpusError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for name, path in paths.items():
        print(f"{name}: {path}")
    for part, path in paths.items():
        for downstream, keys in s3prl_overrides(part, path).items():
            options = ",,".join(f"config.{k}={v if isinstance(v, str) else repr(v)}" for k, v in keys.items())
            print(f"-d {downstream} -o \"{options}\"")
    return 0
