"""`gendistiller superb ARGS...`: s3prl's own downstream runner (`run_downstream.py`) with our upstreams registered.

ARGS are exactly s3prl's flags (`-m train|evaluate|inference`, `-u`, `-k`, `-d`, `-c`, `-s`, `-l`, `-n`/`-p`, `-e`,
`-o`, ...), parsed by s3prl's own parser; `gendistiller superb -h` prints its help. Compared with running
`python -m s3prl.run_downstream` directly:
- `gendistiller`, `gendistiller_local` and `gendistiller_url` are registered in `s3prl.hub` first, in this process,
  so they work for new runs, evaluation and resume (`-e`); under `torchrun` every process registers itself;
- `-c` defaults to our recipe for the downstream's task in `superb_recipes/tasks.yaml` instead of s3prl's
  cwd-relative `./downstream/<downstream>/config.yaml`: `-d speech_commands` -> superb_recipes/ks/config.yaml,
  `-d fluent_commands` -> ic, `-d voxceleb1` -> sid, `-d emotion` -> er, `-d asr` -> asr, `-d quesst14_dtw` -> qbe,
  `-d sv_voxceleb1` -> asv, `-d diarization` -> sd, and `-d ctc` -> PR (phoneme recognition,
  superb_recipes/pr/config.yaml); slot filling shares `-d ctc`, so pass `-c superb_recipes/sf/config.yaml` for SF;
- `-k` of our upstreams is read with our own loader before the runner starts (a file that is not a student checkpoint
  is a one-line error, not a traceback through the runner); another `*_local` upstream's `-k` must exist;
- `--device` defaults to cuda when available, else cpu (s3prl's default is cuda); an expert's hard-coded `.cuda()`
  (ASV's sv_voxceleb1 has one) follows --device;
- under `torchrun`, `--local_rank` defaults to $LOCAL_RANK (s3prl starts DDP only when `--local_rank` is given);
- s3prl's checkpoints (`Args` is an `argparse.Namespace`) load under torch's `weights_only` default;
- a frozen upstream (no `-f`) computes each utterance's features once per run
  (`gendistiller_upstream.feature_cache.FeatureCache`, up to $GENDISTILLER_FEATURE_CACHE_MB, default 512, per run;
  0 turns it off); a fine-tuned one is run as s3prl runs it;
- `torchaudio.load` reads files with soundfile first (the same samples; torchaudio's default, ffmpeg, spends ~25 ms
  per file setting up a decoder, and SID's and IC's datasets load every item from its file).
Defaults are placed before ARGS, so a flag given in ARGS wins (s3prl's parser keeps the last occurrence).
Give -c/--config, -d/--downstream, -e/--past_exp, -u/--upstream, -k/--upstream_ckpt, --device and --local_rank
unabbreviated for them to be seen here.

Example (keyword spotting on a student checkpoint):
    gendistiller superb -m train -u gendistiller_local -k runs/gendistiller/checkpoints/step_00200000.pt \
        -d speech_commands -p result/ks_gendistiller \
        -o "config.downstream_expert.datarc.speech_commands_root=DATA/train,,config.downstream_expert.datarc.speech_commands_test_root=DATA/test"
    gendistiller superb -m evaluate -e result/ks_gendistiller/dev-best.ckpt
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Sequence

import torch

from distill.superb.tasks import TASKS_FILE, load_tasks, task_for_downstream


class LauncherError(ValueError):
    """Arguments this launcher cannot complete (no recipe for the downstream, no downstream given)."""


def main(argv: Sequence[str]) -> int:
    """Every string, -h included, goes to s3prl's parser untouched. Errors (a launcher error, a checkpoint that is not
    one) reach the CLI's error boundary: one line, exit 2."""
    run_downstream(argv)
    return 0


def recipe_config(downstream: str) -> Optional[Path]:
    """The default -c for `-d downstream`: the recipe of its task in superb_recipes/tasks.yaml (`ctc`: PR), or None."""
    task = task_for_downstream(downstream)
    return None if task is None else task.config


def _preparse(argv: Sequence[str]) -> argparse.Namespace:
    """The few s3prl flags the defaults depend on; everything else is left to s3prl's parser."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("-h", "--help", action="store_true")
    parser.add_argument("-d", "--downstream")
    parser.add_argument("-c", "--config")
    parser.add_argument("-e", "--past_exp")
    parser.add_argument("-a", "--auto_resume", action="store_true")
    parser.add_argument("--device")
    parser.add_argument("--local_rank")
    parser.add_argument("-u", "--upstream")
    parser.add_argument("-k", "--upstream_ckpt")
    known, _ = parser.parse_known_args(list(argv))
    return known


def runner_argv(argv: Sequence[str], environ: Optional[dict[str, str]] = None) -> list[str]:
    """s3prl's argv: our defaults first, then the user's flags (which win)."""
    environ = dict(os.environ if environ is None else environ)
    given = _preparse(argv)
    if given.help:
        return list(argv)
    defaults: list[str] = []
    if given.device is None:
        defaults += ["--device", "cuda" if torch.cuda.is_available() else "cpu"]
    if given.local_rank is None and "LOCAL_RANK" in environ:
        defaults += ["--local_rank", environ["LOCAL_RANK"]]
    if given.config is None:
        recipe = recipe_config(given.downstream) if given.downstream else None
        if recipe is not None:
            defaults += ["-c", str(recipe)]
        elif given.past_exp is None and not given.auto_resume:  # s3prl would read ./downstream/<d>/config.yaml
            available = sorted({task.downstream for task in load_tasks().values()})
            if given.downstream is None:
                raise LauncherError("no downstream: pass -d DOWNSTREAM (recipes exist for "
                                    f"{available}) or resume an experiment with -e CKPT_OR_DIR")
            raise LauncherError(f"no recipe config for downstream {given.downstream!r} in {TASKS_FILE} "
                                f"(recipes exist for {available}); pass -c CONFIG.yaml")
    return defaults + list(argv)


def _allow_runner_checkpoints() -> None:
    """s3prl's runner saves `Args` (an argparse.Namespace) in its checkpoints and loads them with torch's default,
    which is weights_only=True from torch 2.6 on."""
    torch.serialization.add_safe_globals([argparse.Namespace])


OUR_UPSTREAMS = ("gendistiller", "gendistiller_local", "gendistiller_url")  # -k: a student checkpoint of ours


def check_upstream_checkpoint(argv: Sequence[str]) -> None:
    """-k read before s3prl's runner starts: a student checkpoint with our own loader (CheckpointError naming the file:
    missing, truncated, a teacher's, non-finite weights); another upstream's local file must exist."""
    given = _preparse(argv)
    ckpt = given.upstream_ckpt
    if ckpt is None or given.help or "://" in ckpt and not ckpt.startswith("file://"):
        return
    path = Path(ckpt.removeprefix("file://"))
    if given.upstream in OUR_UPSTREAMS:
        from distill.models.student_checkpoint import read_student_checkpoint

        read_student_checkpoint(path)
    elif given.upstream and given.upstream.endswith("_local") and not path.exists():
        from distill.io.checkpoint_files import CheckpointError

        raise CheckpointError(f"-k {ckpt}: checkpoint not found")


def run_downstream(argv: Sequence[str]) -> None:
    """Registers our upstreams, then runs s3prl's `run_downstream.main()` in this process with `argv`."""
    full_argv = runner_argv(argv)
    check_upstream_checkpoint(full_argv)
    try:
        from s3prl import run_downstream as s3prl_runner

        import gendistiller_upstream
    except ImportError as error:
        raise ImportError("gendistiller superb needs s3prl: pip install s3prl==0.4.18 (see setup.sh)") from error

    gendistiller_upstream.register()
    _allow_runner_checkpoints()
    print(f"[superb] s3prl run_downstream {shlex.join(full_argv)}", file=sys.stderr, flush=True)
    saved_argv = sys.argv
    sys.argv = ["gendistiller superb", *full_argv]
    try:
        with (_cuda_calls_follow(_preparse(full_argv).device or "cuda"), _frozen_upstream_cached(_feature_cache_bytes()),
              _audio_files_read_with_soundfile(), _speaker_file_lists_of_this_run()):
            s3prl_runner.main()
    finally:
        sys.argv = saved_argv


@contextlib.contextmanager
def _cuda_calls_follow(device: str) -> Iterator[None]:
    """s3prl 0.4.18's sv_voxceleb1 expert (ASV) moves its attention mask with a hard-coded `tensor.cuda()`; with
    another --device, `Tensor.cuda` moves to that device instead while the runner runs (restored afterwards)."""
    if device.startswith("cuda"):
        yield
        return
    original = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self.to(device)  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.cuda = original  # type: ignore[method-assign]


FEATURE_CACHE_MB = 512  # default bound of the frozen upstream's feature cache, per runner process


def _feature_cache_bytes(environ: Optional[dict[str, str]] = None) -> int:
    """$GENDISTILLER_FEATURE_CACHE_MB (default FEATURE_CACHE_MB) in bytes; 0 turns the cache off."""
    value = (os.environ if environ is None else environ).get("GENDISTILLER_FEATURE_CACHE_MB", str(FEATURE_CACHE_MB))
    try:
        megabytes = float(value)
    except ValueError:
        raise LauncherError(f"GENDISTILLER_FEATURE_CACHE_MB={value!r} is not a number of megabytes") from None
    return int(megabytes * 2**20)


@contextlib.contextmanager
def _frozen_upstream_cached(max_bytes: int) -> Iterator[None]:
    """While the runner runs, the upstream it builds is wrapped in a FeatureCache unless it is fine-tuned (-f, also as
    recorded in a resumed experiment's args); the cache's counts are printed to stderr at the end."""
    from s3prl.downstream.runner import Runner

    from gendistiller_upstream.feature_cache import FeatureCache

    original = Runner._get_upstream
    caches: list[FeatureCache] = []

    def get_upstream(runner: Runner):  # type: ignore[no-untyped-def]
        entry = original(runner)
        if max_bytes > 0 and not runner.args.upstream_trainable:
            entry.model = FeatureCache(entry.model, max_bytes)
            caches.append(entry.model)
        return entry

    Runner._get_upstream = get_upstream  # type: ignore[method-assign]
    try:
        yield
    finally:
        Runner._get_upstream = original  # type: ignore[method-assign]
        for cache in caches:
            print(f"[superb] feature cache: {cache.hits} utterances reused, {cache.misses} computed, "
                  f"{cache.bytes / 2**20:.0f} MiB kept", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _speaker_file_lists_of_this_run() -> Iterator[None]:
    """s3prl's voxceleb1 expert (SID) caches its split file lists in one folder of the s3prl package and reuses them
    whatever the data root, so a run beside another on other data (another sweep, the demo) could read that corpus's
    lists. While the runner runs, the lists go to a folder of this process's own, removed afterwards."""
    from s3prl.downstream.voxceleb1 import dataset

    original = dataset.CACHE_PATH
    with tempfile.TemporaryDirectory(prefix="s3prl_voxceleb1_lists_") as folder:
        dataset.CACHE_PATH = folder + os.sep
        try:
            yield
        finally:
            dataset.CACHE_PATH = original


@contextlib.contextmanager
def _audio_files_read_with_soundfile() -> Iterator[None]:
    """While the runner runs, `torchaudio.load(path)` without a backend tries soundfile first, and torchaudio's own
    choice for files soundfile cannot read."""
    import torchaudio

    original = torchaudio.load

    def load(uri, *args, backend=None, **kwargs):  # type: ignore[no-untyped-def]
        if backend is None and isinstance(uri, (str, os.PathLike)):
            try:
                return original(uri, *args, backend="soundfile", **kwargs)
            except RuntimeError:  # libsndfile's errors (soundfile.LibsndfileError) are RuntimeErrors
                pass
        return original(uri, *args, backend=backend, **kwargs)

    torchaudio.load = load
    try:
        yield
    finally:
        torchaudio.load = original
