"""`gendistiller demo`: the main job, end to end, on the embedded default or at paper scale.

Embedded default (offline, under 20 minutes on 2 CPU cores):
  1. build the local mini-SUPERB corpus with espeak-ng (LibriSpeech, Speech Commands, Fluent Commands, VoxCeleb1 layouts);
  2. pretrain a small WavLM teacher on the LibriSpeech-layout part, HuBERT-style (`gendistiller pretrain-teacher`; no
     weights can be downloaded), written in the official format, beside its untrained initialisation (the control);
  3. distil GenDistiller and the DistilHuBERT baseline from it on the LibriSpeech-layout corpus;
  4. run KS, IC and SID with s3prl's runner for student, baseline (on its last layer, SUPERB's `-s paper`, and on the
     weighted sum of all its states, s3prl's default: `distilhubert-ws`), teacher and the untrained control;
  5. write report/: markdown tables (parameters; accuracy beside chance and the control; the share of the teacher's
     margin each student keeps; distillation loss and held-out fidelity per layer) and PNG plots.
Paper scale: `gendistiller demo --teacher WavLM-Base+.pt --librispeech DIR --superb-data DIR` distils with the
shipped paper configs (200k steps) and sweeps the downstream learning rate; DIR for --superb-data holds
speech_commands/{train,test}, fluent_commands and voxceleb1 in the layouts of superb_recipes/README.md. No control
is trained at paper scale (the report then has no margin table).
Every stage is resumable: rerunning the command continues where it stopped. One demo at a time per --work folder.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional

import torch

from distill.io.run_folder import RunLock, RunStopped
from distill.models.student_checkpoint import read_student_checkpoint
from distill.superb.tasks import load_tasks
from distill.training.runs import latest_checkpoint
from distill.training.trainer import load_config, train

TASKS = ("ks", "ic", "sid")  # the default: fits 20 minutes on 2 cores; `--tasks all` runs the ten
ALL_TASKS = ("pr", "ks", "ic", "sid", "er", "asr", "qbe", "sf", "asv", "sd")
STUDENTS = ("gendistiller", "distilhubert")
TEACHER_LABEL, CONTROL_LABEL = "wavlm", "wavlm-untrained"
_DE = "config.downstream_expert"
# The embedded default's downstream settings: smaller batches, no accumulation, no loader workers, smaller heads where
# SUPERB's are large, and shorter training crops, so that the s3prl runs fit a 2-core machine. Paper scale uses the
# recipes as written.
LOCAL_OVERRIDES: dict[str, list[str]] = {
    "ks": [f"{_DE}.datarc.batch_size=16", f"{_DE}.datarc.num_workers=0"],
    "ic": [f"{_DE}.datarc.train_batch_size=8", f"{_DE}.datarc.eval_batch_size=16", f"{_DE}.datarc.num_workers=0"],
    # SUPERB accumulates 4 batches of 8 per step and crops training utterances to 8 s; 2 s crops here
    # (SID was half the demo's time with whole 2-6 s utterances).
    "sid": ["config.runner.gradient_accumulate_steps=1", f"{_DE}.datarc.max_timestep=32000", f"{_DE}.datarc.num_workers=0"],
    "er": ["config.runner.gradient_accumulate_steps=1", f"{_DE}.datarc.train_batch_size=8",
           f"{_DE}.datarc.eval_batch_size=8", f"{_DE}.datarc.num_workers=0"],
    "pr": ["config.runner.gradient_accumulate_steps=1", f"{_DE}.corpus.batch_size=8", f"{_DE}.corpus.num_workers=0"],
    "sf": [f"{_DE}.corpus.batch_size=8", f"{_DE}.corpus.num_workers=0", f"{_DE}.model.project_dim=256",
           f"{_DE}.model.RNNs.dim=[256,256]"],
    "asr": [f"{_DE}.datarc.batch_size=8", f"{_DE}.datarc.num_workers=0", f"{_DE}.modelrc.project_dim=256",
            f"{_DE}.modelrc.RNNs.dim=[256,256]"],
    # SUPERB keeps training utterances longer than 2 s after trimming; the local ones are 1.5-4 s.
    "asv": ["config.runner.gradient_accumulate_steps=1", f"{_DE}.datarc.vad_config.min_sec=8000",
            f"{_DE}.datarc.max_timestep=32000", f"{_DE}.datarc.train_batch_size=8", f"{_DE}.datarc.num_workers=0"],
    "sd": ["config.runner.gradient_accumulate_steps=1", f"{_DE}.loaderrc.train_batchsize=4", f"{_DE}.loaderrc.num_workers=0"],
    "qbe": [f"{_DE}.datarc.num_workers=0", f"{_DE}.max_workers=2"],
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--work", type=Path, default=Path("runs/demo"), help="corpus, teacher, runs and sweeps go here")
    parser.add_argument("--report", type=Path, default=Path("report"), help="where the report is written")
    parser.add_argument("--size", default="default", choices=("tiny", "small", "default"), help="local corpus size")
    parser.add_argument("--tasks", default=",".join(TASKS),
                        help=f"comma-separated SUPERB tasks, or 'all' for {','.join(ALL_TASKS)} (default: {','.join(TASKS)})")
    parser.add_argument("--pretrain-steps", type=int, default=1000, help="teacher pretraining steps (embedded default)")
    parser.add_argument("--distill-steps", type=int, default=400, help="distillation steps per student (embedded default)")
    parser.add_argument("--superb-steps", type=int, default=1000, help="downstream training steps per run (embedded default)")
    parser.add_argument("--lrs", default=None, help="downstream learning rates (default: 1e-2 locally, 1e-2,1e-3,1e-4 at paper scale)")
    parser.add_argument("--seeds", type=int, default=1, help="downstream runs per (upstream, task) with s3prl seeds "
                        "1337, 1338, ...; the report gives their mean, spread and interval (default 1)")
    parser.add_argument("--jobs", type=int, default=2, help="s3prl runner processes at the same time (default 2: one per core)")
    parser.add_argument("--teacher", help="a WavLM/HuBERT/wav2vec 2.0 checkpoint: switches to the paper-scale recipe")
    parser.add_argument("--librispeech", type=Path, help="LibriSpeech 960 h root (paper scale)")
    parser.add_argument("--superb-data", type=Path, help="SUPERB data root for KS/IC/SID (paper scale)")


class _Stages:
    """The demo's stages: each one's heading at its start, its wall time at its end, every time at the end of the demo."""

    COUNT = 5

    def __init__(self) -> None:
        self.started = time.time()
        self.times: dict[str, float] = {}
        self._current: Optional[tuple[int, str, float]] = None  # number, name, start

    def start(self, number: int, name: str, detail: str = "") -> None:
        self._end()
        print(f"\n[demo] ({number}/{self.COUNT}) {name}{': ' + detail if detail else ''}", flush=True)
        self._current = (number, name, time.time())

    def _end(self) -> None:
        if self._current is not None:
            number, name, started = self._current
            self.times[name] = time.time() - started
            print(f"[demo] ({number}/{self.COUNT}) {name}: {self.times[name]:.0f} s", flush=True)
        self._current = None

    def finish(self) -> None:
        self._end()
        stages = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in self.times.items())
        print(f"[demo] done in {time.time() - self.started:.0f} s ({stages})", flush=True)


def _pretrain_teacher(folder: Path, data: Path, steps: int) -> tuple[Path, Path]:
    """The embedded teacher, pretrained once on `data` (resumed if interrupted); returns (teacher, untrained control)."""
    from distill.training.pretrain import default_run_dir, pretrain
    from distill.training.pretrain import load_config as pretrain_config

    teacher = folder / "wavlm_pretrained.pt"
    control = default_run_dir(teacher) / "untrained_teacher.pt"
    if teacher.is_file() and control.is_file():
        print(f"[demo] teacher: already pretrained ({teacher})")
        return teacher, control
    config = pretrain_config("pretrain_tiny_wavlm", [f"data.train={data}", f"optim.total_steps={steps}"])
    result = pretrain(config, teacher, resume=latest_checkpoint(default_run_dir(teacher)) is not None)
    return result.teacher, result.untrained


def _distill(kind: str, paper_scale: bool, teacher: str, data: Path, out: Path, steps: int) -> Path:
    overrides = [f"teacher={teacher}", f"data.train={data}", f"run.output_dir={out}"]
    if paper_scale:
        config = load_config(f"{kind}_wavlm_base_plus", overrides)
    else:
        config = load_config(f"tiny_{kind}", overrides + [f"optim.total_steps={steps}", "data.batch_size=8", "run.log_every=20",
                                                          f"run.checkpoint_every={max(1, steps // 3)}"])
    last = latest_checkpoint(out)
    if last is not None and read_student_checkpoint(last)["step"] >= config.optim.total_steps:
        print(f"[demo] {kind}: already distilled ({last})")
        return last
    return train(config, resume=last is not None)


def _heldout_fidelity(students: dict[str, Path], teacher: str, heldout: list[Path], cache: Path) -> dict[str, object]:
    """Per student and target layer, L1 and cosine against the teacher on held-out audio (kept in `cache`)."""
    from distill.io.audio import audio_files
    from distill.models.student_checkpoint import load_student
    from distill.teachers import load_teacher
    from distill.training.fidelity import heldout_fidelity

    keys = {label: str(path) for label, path in students.items()}
    if cache.is_file() and json.loads(cache.read_text()).get("checkpoints") == keys:
        return json.loads(cache.read_text())["students"]
    files = audio_files(heldout)
    reference = load_teacher(teacher)
    measured = {}
    for label, path in students.items():
        layers = heldout_fidelity(load_student(path)[0], reference, files)
        measured[label] = {"files": len(files), "layers": {str(layer): asdict(m) for layer, m in layers.items()}}
    cache.write_text(json.dumps({"checkpoints": keys, "students": measured}, indent=1))
    return measured


def _tasks(spec: str) -> list[str]:
    names = list(ALL_TASKS) if spec == "all" else [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in ALL_TASKS]
    if unknown or not names:
        raise ValueError(f"--tasks {spec!r}: unknown task(s) {unknown}; choose from {','.join(ALL_TASKS)} or 'all'")
    return names


def run(args: argparse.Namespace) -> int:
    """The demo holds its work folder for its whole run (one demo per folder); a stage stopped by a signal is
    resumed by running the same command again."""
    with RunLock.folder(args.work, "--work"):
        try:
            return _run(args)
        except RunStopped as stop:
            raise stop.resuming_with("rerun the same `gendistiller demo` command to resume") from None


def _run(args: argparse.Namespace) -> int:
    from distill.corpora.synthetic import build_corpus
    from distill.superb.report import Reference, chance_scores, write_report
    from distill.superb.sweep import parse_upstream, sweep_seeds

    stages = _Stages()
    paper_scale = args.teacher is not None
    if not paper_scale:
        # The embedded models are tiny: on a 2-core machine one OpenMP thread is ~3x faster than two
        # (measured 0.54 vs 1.76 s per distillation step). s3prl's runs inherit this through the environment.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    if paper_scale and (args.librispeech is None or args.superb_data is None):
        raise ValueError("--teacher needs --librispeech and --superb-data (paper scale)")
    work = args.work
    tasks = _tasks(args.tasks)

    stages.start(1, "corpus")
    if paper_scale:
        distill_data, superb_root = args.librispeech, args.superb_data
        heldout = [args.librispeech / "dev-clean"]
    else:
        parts = ["librispeech", *sorted({str(load_tasks()[task].corpus) for task in tasks} - {"librispeech"})]
        corpus = build_corpus(work / "corpus", parts=parts, size=args.size)
        distill_data, superb_root = corpus["librispeech"] / "train-clean-100", work / "corpus"
        heldout = [corpus["librispeech"] / "dev-clean", corpus["librispeech"] / "test-clean"]

    stages.start(2, "teacher")
    control = None
    if paper_scale:
        teacher = Path(args.teacher)
    else:
        teacher, control = _pretrain_teacher(work / "teacher", distill_data, args.pretrain_steps)
    print(f"[demo] teacher: {teacher}" + (f"; untrained control: {control}" if control else ""))

    stages.start(3, "distillation")
    students = {kind: _distill(kind, paper_scale, str(teacher), distill_data, work / kind, args.distill_steps)
                for kind in STUDENTS}

    stages.start(4, "SUPERB", "tasks through s3prl: " + ", ".join(tasks))
    lrs = [float(lr) for lr in (args.lrs or ("1e-2,1e-3,1e-4" if paper_scale else "1e-2")).split(",")]
    overrides = [] if paper_scale else [f"config.runner.total_steps={args.superb_steps}",
                                        f"config.runner.eval_step={args.superb_steps}",  # one dev evaluation, at the end
                                        f"config.runner.save_step={args.superb_steps}",
                                        f"config.runner.log_step={args.superb_steps // 4}"]
    upstreams = [parse_upstream(f"{kind}:{path}") for kind, path in students.items()]
    # DistilHuBERT both ways: on its last layer (SUPERB's convention) and on all its states (s3prl's default)
    upstreams.append(parse_upstream(f"distilhubert-ws:{students['distilhubert']}"))
    upstreams.append(parse_upstream(f"{TEACHER_LABEL}:{teacher}"))
    if control is not None:
        upstreams.append(replace(parse_upstream(f"{TEACHER_LABEL}:{control}"), label=CONTROL_LABEL))
    results = work / "superb_results.csv"
    sweep_seeds(upstreams, tasks, lrs, results, work / "superb", args.seeds, overrides=overrides, corpus=superb_root,
                test_in_run=not paper_scale, task_overrides=None if paper_scale else LOCAL_OVERRIDES, jobs=args.jobs)

    stages.start(5, "report")
    fidelity = _heldout_fidelity(students, str(teacher), heldout, work / "heldout_fidelity.json")
    reference = Reference(chance={} if paper_scale else chance_scores(tasks, superb_root), teacher=TEACHER_LABEL,
                          control=CONTROL_LABEL if control is not None else None)
    for path in write_report(results, args.report, {kind: work / kind for kind in STUDENTS}, reference, fidelity):
        print(f"[demo] wrote {path}")
    stages.finish()
    return 0
