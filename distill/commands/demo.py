"""`gendistiller demo`: the main job, end to end, on the embedded default or at paper scale.

Embedded default (offline, under 20 minutes on 2 CPU cores):
  1. build the local mini-SUPERB corpus with espeak-ng (LibriSpeech, Speech Commands, Fluent Commands, VoxCeleb1 layouts);
  2. write a small WavLM teacher checkpoint in the official format (random weights: no weights can be downloaded);
  3. distil GenDistiller and the DistilHuBERT baseline from it on the LibriSpeech-layout corpus;
  4. run KS, IC and SID with s3prl's runner for student, baseline and teacher;
  5. write report/: markdown tables (parameters, accuracy, distillation loss per layer) and PNG plots.
Paper scale: `gendistiller demo --teacher WavLM-Base+.pt --librispeech DIR --superb-data DIR` distils with the
shipped paper configs (200k steps) and sweeps the downstream learning rate; DIR for --superb-data holds
speech_commands/{train,test}, fluent_commands and voxceleb1 in the layouts of superb_recipes/README.md.
Every stage is resumable: rerunning the command continues where it stopped.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from distill.models.checkpoint import read_student_checkpoint
from distill.train import latest_checkpoint, load_config, train

TASKS = ("ks", "ic", "sid")
STUDENTS = ("gendistiller", "distilhubert")
# Smaller downstream batches and SID crops for the embedded default, so nine s3prl runs fit the 2-core time budget.
LOCAL_OVERRIDES = {
    "ks": ["config.downstream_expert.datarc.batch_size=16"],
    "ic": ["config.downstream_expert.datarc.train_batch_size=8", "config.downstream_expert.datarc.eval_batch_size=16"],
    # SUPERB accumulates 4 batches of 8 per step and crops training utterances to 8 s; 2 s crops here
    # (SID was half the demo's time with whole 2-6 s utterances).
    "sid": ["config.runner.gradient_accumulate_steps=1", "config.downstream_expert.datarc.max_timestep=32000"],
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--work", type=Path, default=Path("runs/demo"), help="corpus, teacher, runs and sweeps go here")
    parser.add_argument("--report", type=Path, default=Path("report"), help="where the report is written")
    parser.add_argument("--size", default="default", choices=("tiny", "small", "default"), help="local corpus size")
    parser.add_argument("--distill-steps", type=int, default=400, help="distillation steps per student (embedded default)")
    parser.add_argument("--superb-steps", type=int, default=200, help="downstream training steps per run (embedded default)")
    parser.add_argument("--lrs", default=None, help="downstream learning rates (default: 1e-3 locally, 1e-2,1e-3,1e-4 at paper scale)")
    parser.add_argument("--teacher", help="a WavLM/HuBERT/wav2vec 2.0 checkpoint: switches to the paper-scale recipe")
    parser.add_argument("--librispeech", type=Path, help="LibriSpeech 960 h root (paper scale)")
    parser.add_argument("--superb-data", type=Path, help="SUPERB data root for KS/IC/SID (paper scale)")


def _stage(number: int, text: str) -> None:
    print(f"\n[demo] ({number}/5) {text}", flush=True)


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


def run(args: argparse.Namespace) -> int:
    from distill.corpus import build_corpus
    from distill.superb_report import write_report
    from distill.superb_sweep import parse_upstream, sweep
    from distill.teachers.tiny import write_wavlm_checkpoint

    started = time.time()
    paper_scale = args.teacher is not None
    if not paper_scale:
        # The embedded models are tiny: on a 2-core machine one OpenMP thread is ~3x faster than two
        # (measured 0.54 vs 1.76 s per distillation step). s3prl's runs inherit this through the environment.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    if paper_scale and (args.librispeech is None or args.superb_data is None):
        raise SystemExit("error: --teacher needs --librispeech and --superb-data (paper scale)")
    work = args.work

    _stage(1, "corpus")
    if paper_scale:
        distill_data, superb_root = args.librispeech, args.superb_data
    else:
        corpus = build_corpus(work / "corpus", size=args.size)
        distill_data, superb_root = corpus["librispeech"] / "train-clean-100", work / "corpus"

    _stage(2, "teacher")
    teacher = Path(args.teacher) if paper_scale else work / "teacher" / "tiny_wavlm.pt"
    if not paper_scale and not teacher.is_file():
        write_wavlm_checkpoint(teacher)
    print(f"[demo] teacher: {teacher}")

    _stage(3, "distillation")
    students = {kind: _distill(kind, paper_scale, str(teacher), distill_data, work / kind, args.distill_steps)
                for kind in STUDENTS}

    _stage(4, "SUPERB tasks through s3prl: " + ", ".join(TASKS))
    lrs = [float(lr) for lr in (args.lrs or ("1e-2,1e-3,1e-4" if paper_scale else "1e-3")).split(",")]
    overrides = [] if paper_scale else [f"config.runner.total_steps={args.superb_steps}",
                                        f"config.runner.eval_step={args.superb_steps}",  # one dev evaluation, at the end
                                        f"config.runner.save_step={args.superb_steps}",
                                        f"config.runner.log_step={args.superb_steps // 4}",
                                        "config.downstream_expert.datarc.num_workers=0"]
    upstreams = [parse_upstream(f"{kind}:{path}") for kind, path in students.items()]
    upstreams.append(parse_upstream(f"wavlm:{teacher}"))
    results = work / "superb_results.csv"
    for task in TASKS:
        task_overrides = overrides if paper_scale else overrides + LOCAL_OVERRIDES[task]
        sweep(upstreams, [task], lrs, results, work / "superb", task_overrides, superb_root, test_in_run=not paper_scale)

    _stage(5, "report")
    for path in write_report(results, args.report, {kind: work / kind for kind in STUDENTS}):
        print(f"[demo] wrote {path}")
    print(f"[demo] done in {time.time() - started:.0f} s")
    return 0
