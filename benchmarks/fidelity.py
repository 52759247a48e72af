"""Fidelity at equal budget: GenDistiller vs the DistilHuBERT baseline, distilled from the same teacher on the same
corpus for the same steps with the real trainer, evaluated free running on held-out audio.

    python -m benchmarks.fidelity                                   # pretrained tiny WavLM, local synthetic LibriSpeech
    python -m benchmarks.fidelity --teacher wavlm:/path/WavLM-Base+.pt --train /data/LibriSpeech/train-clean-100 \\
        --heldout /data/LibriSpeech/dev-clean --steps 20000 --batch-size 24 --crop-samples 250000
    python -m benchmarks.fidelity --corpus-size tiny --steps 10     # CI size

Defaults: the LibriSpeech-layout corpus from `distill.corpora.synthetic.build_corpus` (espeak-ng speech), and as teacher the
small WavLM of the main job pretrained on its train-clean-100 (`gendistiller pretrain-teacher`, config
pretrain_tiny_wavlm, --pretrain-steps; kept under --out/teacher): train on train-clean-100, evaluate on dev-clean +
test-clean.

Per target layer (and layer 0, the front-end output) on held-out audio, with the student in inference mode (free
running, no teacher input): mean L1, mean cosine similarity, and the linear-probe R² of the teacher layer from the
student's layer (closed-form ridge regression on frames, fit on the first half of the held-out utterances, R² on
the other half, variance-weighted over dimensions). Parameter counts beside. Loss vs step for every variant (sum
of the target-layer losses from the trainer's metrics.jsonl) goes to fidelity_loss.png.

Variants (VARIANTS): `gendistiller` and `distilhubert` (the shipped tiny/base configs), `*-narrow-fe` (the cheaper
front-end: `student.front_end_channels`, trained from scratch with `optim.layer0_loss`), and ablations of GenDistiller's
options, each the shipped default with one thing changed (`gendistiller-v0`: the first design, one output
projection shared by all steps and no output LayerNorm).
Claim tested: GenDistiller >= baseline on most layers with <= 67% of its parameters.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from benchmarks.common import (
    count_parameters,
    fmt,
    machine_info,
    markdown_table,
    pick_device,
    set_threads,
    write_outputs,
)
from distill.io.audio import audio_files, read_audio
from distill.models.student_checkpoint import load_student, read_student_checkpoint
from distill.teachers import CheckpointTeacher, Teacher, load_teacher
from distill.training.fidelity import fidelity, heldout_fidelity, layer_pairs
from distill.training.runs import latest_checkpoint
from distill.training.trainer import load_config, train

# variant -> (student kind, its config overrides given the number of target layers and the narrow channel count).
Overrides = Callable[[int, int], list[str]]
_NARROW: Overrides = lambda k, channels: [f"student.front_end_channels={channels}", "student.cnn_grad_mult=1.0",
                                          "optim.layer0_loss=true"]
# The ablations on Whisper (benchmarks/results/real_teacher_whisper.md) were measured before the shipped GenDistiller
# weighed its first target layer twice and gave its early steps feed-forward blocks of their own: these overrides keep
# their students as measured
_AS_FIRST_MEASURED = ["optim.layer_weights=[]", "student.step_ffn_dims=[]"]
VARIANTS: dict[str, tuple[str, Overrides]] = {
    "gendistiller": ("gendistiller", lambda k, c: []),
    "distilhubert": ("distilhubert", lambda k, c: []),
    "gendistiller-narrow-fe": ("gendistiller", _NARROW),
    "distilhubert-narrow-fe": ("distilhubert", _NARROW),
    "gendistiller-v0": ("gendistiller", lambda k, c: [f"student.output_projection_groups={[0] * k}", "student.output_norm=false"]),
    "gendistiller-shared-projection": ("gendistiller", lambda k, c: [f"student.output_projection_groups={[0] * k}"]),
    "gendistiller-projection-per-step": ("gendistiller", lambda k, c: [f"student.output_projection_groups={list(range(k))}"]),
    "gendistiller-no-projection": ("gendistiller", lambda k, c: [f"student.output_projection_groups={[-1] * k}"]),
    "gendistiller-no-output-norm": ("gendistiller", lambda k, c: ["student.output_norm=false"]),
    "gendistiller-teacher-forcing": ("gendistiller", lambda k, c: ["training.history=teacher_forcing"]),
    "gendistiller-free-running": ("gendistiller", lambda k, c: ["training.history=free_running"]),
    "gendistiller-2d-attention": ("gendistiller", lambda k, c: ["student.attention_2d=true"]),
    "gendistiller-first-step-twice": ("gendistiller", lambda k, c: [f"student.generator_repeats={[2] + [1] * (k - 1)}"]),
    # the ablations on Whisper, as first measured (benchmarks/results/real_teacher_whisper.md)
    "gendistiller-no-feature-norm": ("gendistiller", lambda k, c: [*_AS_FIRST_MEASURED, "student.feature_layer_norm=false"]),
    "gendistiller-no-feature-norm-first-step-twice": ("gendistiller", lambda k, c: [
        *_AS_FIRST_MEASURED, "student.feature_layer_norm=false", f"student.generator_repeats={[2] + [1] * (k - 1)}"]),
    "gendistiller-no-norms": ("gendistiller", lambda k, c: [
        *_AS_FIRST_MEASURED, "student.feature_layer_norm=false", "student.output_norm=false",
        f"student.output_projection_groups={[0] + [-1] * (k - 1)}"]),
    "gendistiller-no-norms-projections": ("gendistiller", lambda k, c: [
        *_AS_FIRST_MEASURED, "student.feature_layer_norm=false", "student.output_norm=false",
        f"student.output_projection_groups={[0] + [1] * (k - 1)}"]),
    "gendistiller-first-step-ffn": ("gendistiller", lambda k, c: [*_AS_FIRST_MEASURED, f"student.step_ffn_dims={[512] + [0] * (k - 1)}"]),
    "gendistiller-step-ffns": ("gendistiller", lambda k, c: [*_AS_FIRST_MEASURED, f"student.step_ffn_dims={[224] * k}"]),
    "gendistiller-detached-history": ("gendistiller", lambda k, c: [*_AS_FIRST_MEASURED, "training.history_gradient=false"]),
    "gendistiller-equal-layer-weights": ("gendistiller", lambda k, c: _AS_FIRST_MEASURED),
    # the shipped GenDistiller gives each step but the last a feed-forward block of its own with a narrowed front-end
    # (step_ffn_dims auto); these force it on and off (off: the default before 2026-12-02,
    # benchmarks/results/real_teacher_whisper.md)
    "gendistiller-early-step-ffns": ("gendistiller", lambda k, c: ["student.step_ffn_dims=early"]),
    "gendistiller-no-step-ffns": ("gendistiller", lambda k, c: ["student.step_ffn_dims=[]"]),
    # the shipped GenDistiller decides target_standardization by the teacher (auto); these force it
    "gendistiller-unstandardized": ("gendistiller", lambda k, c: ["student.target_standardization=false"]),
    "gendistiller-standardized": ("gendistiller", lambda k, c: ["student.target_standardization=true"]),
    "distilhubert-standardized": ("distilhubert", lambda k, c: ["student.target_standardization=true"]),
}
DEFAULT_VARIANTS = ("gendistiller", "distilhubert", "gendistiller-narrow-fe")
PARAMETER_RATIO = 0.67
CHECKPOINT_EVERY = 1000  # steps; an interrupted long run resumes from its last checkpoint when run again


def default_target_layers(num_layers: int) -> list[int]:
    return sorted({max(1, math.ceil(num_layers * i / 3)) for i in (1, 2, 3)})  # 12 layers: 4 8 12; 4 layers: 2 3 4


def prepare_data(args: argparse.Namespace) -> tuple[str, Path, list[Path]]:
    """(teacher spec, train folder, held-out folders): what was given, or the defaults built under --out."""
    if args.train is not None:
        if not args.heldout or args.teacher is None:
            raise SystemExit("--train needs --heldout (held-out audio folders) and --teacher")
        return args.teacher, args.train, list(args.heldout)
    from distill.corpora.synthetic import build_corpus

    root = args.corpus_root or (args.out / "corpus")
    librispeech = build_corpus(root, ("librispeech",), size=args.corpus_size, progress=False)["librispeech"]
    train_dir = librispeech / "train-clean-100"
    teacher = args.teacher or str(pretrained_teacher(args.out / "teacher", train_dir, args.pretrain_steps, args.seed))
    return teacher, train_dir, [librispeech / "dev-clean", librispeech / "test-clean"]


def pretrained_teacher(folder: Path, train_dir: Path, steps: int, seed: int) -> Path:
    """The main job's small WavLM, pretrained on `train_dir` (once; reused while the file exists)."""
    from distill.training.pretrain import load_config as pretrain_config
    from distill.training.pretrain import pretrain

    path = folder / f"wavlm_pretrained_{steps}.pt"
    if not path.is_file():
        with torch.random.fork_rng():
            pretrain(pretrain_config("pretrain_tiny_wavlm", [f"data.train={train_dir}", f"optim.total_steps={steps}",
                                                             f"run.seed={seed}", "run.progress=false"]), path)
    return path


def student_geometry_overrides(teacher: Teacher) -> list[str]:
    """A teacher that is not one of our encoders gives the students no geometry: they take its width, heads of 64
    dimensions and a 4x feed-forward (the Base / Whisper ratios) over the wav2vec 2.0 CNN's 320-sample hop."""
    if isinstance(teacher, CheckpointTeacher):
        return []
    return [f"student.geometry.dim={teacher.dim}", f"student.geometry.ffn_dim={4 * teacher.dim}",
            f"student.geometry.num_heads={max(1, teacher.dim // 64)}"]


def distil(variant: str, args: argparse.Namespace, teacher: str, train_dir: Path, target_layers: list[int],
           narrow_channels: int, geometry_overrides: Sequence[str] = ()) -> Path:
    kind, variant_overrides = VARIANTS[variant]
    base = f"tiny_{kind}" if args.base_config == "tiny" else f"{kind}_wavlm_base_plus"
    out = args.out / "runs" / variant
    overrides = [f"teacher={teacher}", f"data.train={train_dir}", f"run.output_dir={out}", f"optim.total_steps={args.steps}",
                 f"optim.lr={args.lr}", f"data.batch_size={args.batch_size}", f"data.crop_samples={args.crop_samples}",
                 "data.num_workers=0", f"data.bucket_batches={args.bucket_batches}", f"student.target_layers={target_layers}",
                 f"run.log_every={max(1, args.steps // 50)}", f"run.checkpoint_every={min(args.steps, CHECKPOINT_EVERY)}", "run.progress=false",
                 f"run.seed={args.seed}", f"run.device={args.device}"]
    if args.from_scratch:
        overrides.append("student.init_from_teacher=false")
    overrides += geometry_overrides
    if args.narrow_front_ends:
        overrides += _NARROW(len(target_layers), narrow_channels)
    overrides += variant_overrides(len(target_layers), narrow_channels)
    last = latest_checkpoint(out)
    if last is not None and read_student_checkpoint(last)["step"] >= args.steps:
        print(f"[fidelity] {variant}: already distilled ({last})", flush=True)
        return last
    print(f"[fidelity] distilling {variant} for {args.steps} steps -> {out}", flush=True)
    with torch.random.fork_rng():
        return train(load_config(base, overrides), resume=last is not None)


def ridge_r2(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, ridge: float) -> float:
    """Closed-form ridge with an intercept (centred on the fit split); λ = ridge x mean eigenvalue of XᵀX.
    R² = 1 - SSE / SST over all output dimensions (SST around the test split's own mean)."""
    x_mean, y_mean = x_train.mean(0), y_train.mean(0)
    xc, yc = x_train - x_mean, y_train - y_mean
    gram = xc.T @ xc
    lam = ridge * np.trace(gram) / gram.shape[0]
    weights = np.linalg.solve(gram + lam * np.eye(gram.shape[0]), xc.T @ yc)
    prediction = (x_test - x_mean) @ weights + y_mean
    sse = ((y_test - prediction) ** 2).sum()
    sst = ((y_test - y_test.mean(0)) ** 2).sum()
    return float(1.0 - sse / max(sst, 1e-12))


def layer_metrics(pairs: list[tuple[np.ndarray, np.ndarray]], ridge: float) -> dict[str, Any]:
    """pairs[i] = (student frames, teacher frames) of held-out utterance i; the probe fits on the first half."""
    half = len(pairs) // 2
    fit_s, fit_t = np.concatenate([a for a, _ in pairs[:half]]), np.concatenate([b for _, b in pairs[:half]])
    test_s, test_t = np.concatenate([a for a, _ in pairs[half:]]), np.concatenate([b for _, b in pairs[half:]])
    return {**asdict(fidelity(pairs)), "probe_r2": ridge_r2(fit_s, fit_t, test_s, test_t, ridge)}


@torch.inference_mode()
def copy_baseline(teacher, files: list[Path], target_layers: list[int], ridge: float) -> dict[str, Any]:
    """The teacher's own layer 0 (what every student's front-end approximates) taken as the prediction of each
    target layer: what a student gets for free, so the gap above it is what distillation learned."""
    pairs: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {layer: [] for layer in target_layers}
    for path in files:
        states = teacher([torch.from_numpy(read_audio(path))]).hidden_states
        for layer in target_layers:
            pairs[layer].append((states[0][0].double().numpy(), states[layer][0].double().numpy()))
    return {"parameters": 0, "layers": {str(layer): layer_metrics(items, ridge) for layer, items in pairs.items()}}


@torch.inference_mode()
def teacher_layer_statistics(teacher: Teacher, files: list[Path], layers: list[int]) -> dict[str, dict[str, Optional[float]]]:
    """What the students must reproduce, per teacher layer over held-out frames: the mean frame norm and its spread
    (a per-step LayerNorm makes every frame's norm nearly equal), the share of frames whose norm exceeds 3x the median
    (pre-LN encoders carry a few huge-norm frames), the largest per-dimension offset and the cosine to the layer before
    (how far one step moves)."""
    states: dict[int, list[torch.Tensor]] = {layer: [] for layer in range(max(layers) + 1)}
    for path in files:
        hidden = teacher([torch.from_numpy(read_audio(path))]).hidden_states
        for layer in states:
            states[layer].append(hidden[layer][0].double())
    found = {}
    for layer in sorted({0, *layers}):
        frames = torch.cat(states[layer])
        norms = frames.norm(dim=-1)
        found[str(layer)] = {"norm_mean": float(norms.mean()), "norm_cv": float(norms.std() / norms.mean()),
                             "frames_over_3x_median_norm": float((norms > 3 * norms.median()).double().mean()),
                             "max_abs_dim_mean": float(frames.mean(0).abs().max()),
                             "cosine_to_previous_layer": float(torch.nn.functional.cosine_similarity(
                                 frames, torch.cat(states[layer - 1]), dim=-1).mean()) if layer else None}
    return found


def evaluate(checkpoint: Path, teacher, files: list[Path], ridge: float) -> dict[str, Any]:
    student, _ = load_student(checkpoint)
    per_layer = {str(layer): layer_metrics(items, ridge) for layer, items in layer_pairs(student, teacher, files).items()}
    return {"parameters": count_parameters(student), "checkpoint": str(checkpoint), "layers": per_layer}


def loss_curves(out: Path, variants: list[str], target_layers: list[int]) -> dict[str, list[tuple[int, float]]]:
    curves = {}
    for variant in variants:
        records = [json.loads(line) for line in (out / "runs" / variant / "metrics.jsonl").read_text().splitlines() if line]
        curves[variant] = [(r["step"], sum(r[f"loss_layer_{layer}"] for layer in target_layers)) for r in records]
    return curves


def plot(curves: dict[str, list[tuple[int, float]]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for variant, points in curves.items():
        steps, losses = zip(*points)
        ax.plot(steps, losses, label=variant, marker="." if len(points) < 30 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss, sum over target layers")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default=None, help="teacher spec (default: a tiny random WavLM written under --out)")
    parser.add_argument("--train", type=Path, default=None, help="training audio folder or .tsv manifest (default: build_corpus)")
    parser.add_argument("--heldout", type=Path, nargs="*", default=None, help="held-out audio folders (with --train)")
    parser.add_argument("--pretrain-steps", type=int, default=1000, help="pretraining steps of the default teacher "
                        "(the main job's default)")
    parser.add_argument("--corpus-root", type=Path, default=None, help="where build_corpus writes (default: OUT/corpus)")
    parser.add_argument("--corpus-size", choices=("tiny", "small", "default"), default="default")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(DEFAULT_VARIANTS))
    parser.add_argument("--base-config", choices=("tiny", "base"), default="tiny",
                        help="shipped config the runs start from: tiny_* (default) or *_wavlm_base_plus")
    parser.add_argument("--target-layers", type=int, nargs="+", default=None, help="default: 4 8 12 for 12 layers, else thirds")
    parser.add_argument("--narrow-channels", type=int, default=None, help="front_end_channels of the narrow variant "
                        "(default: a quarter of the teacher's CNN channels)")
    parser.add_argument("--narrow-front-ends", action="store_true", help="every variant gets the narrow front-end "
                        "(--narrow-channels, trained from scratch with the layer-0 loss): for teachers whose CNN cannot "
                        "be copied (Whisper)")
    parser.add_argument("--from-scratch", action="store_true", help="student.init_from_teacher=false for every variant "
                        "(removes the head start that copying teacher layers gives; the front-end CNN is then random too)")
    # Defaults: the main job's distillation (`gendistiller demo`: tiny configs, batch 8 of 1 s crops, 400 steps).
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop-samples", type=int, default=16000)
    parser.add_argument("--bucket-batches", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="trainer device (default cpu; evaluation runs on CPU)")
    parser.add_argument("--ridge", type=float, default=1e-3, help="probe ridge, relative to the mean eigenvalue of XᵀX")
    parser.add_argument("--max-heldout-files", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: on a shared machine more "
                        "threads than free cores make OpenMP spin, 20x slower seen here)")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/fidelity"))
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    args = parse_args(argv)
    set_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    teacher_spec, train_dir, heldout = prepare_data(args)
    teacher = load_teacher(teacher_spec)
    target_layers = args.target_layers or default_target_layers(teacher.num_layers)
    if not isinstance(teacher, CheckpointTeacher) and not args.from_scratch:
        raise SystemExit(f"{teacher.spec} is not one of our encoders: its students start --from-scratch")
    teacher_cnn_channels = teacher.model.config.conv_layers[0][0] if isinstance(teacher, CheckpointTeacher) else 512
    narrow = args.narrow_channels or max(8, teacher_cnn_channels // 4)
    files = audio_files(heldout, args.max_heldout_files)

    checkpoints = {variant: distil(variant, args, teacher_spec, train_dir, target_layers, narrow,
                                   student_geometry_overrides(teacher)) for variant in args.variants}
    print(f"[fidelity] evaluating on {len(files)} held-out files", flush=True)
    evaluations = {variant: evaluate(path, teacher, files, args.ridge) for variant, path in checkpoints.items()}
    curves = loss_curves(args.out, args.variants, target_layers)
    png = plot(curves, args.out / "fidelity_loss.png", f"{teacher.spec} ({teacher.num_parameters() / 1e6:.2f}M), "
               f"batch {args.batch_size} x {args.crop_samples}, {args.steps} steps")

    results: dict[str, Any] = {
        "benchmark": "fidelity", "machine": machine_info(pick_device(args.device)),
        "setup": {"teacher": teacher.spec, "teacher_parameters": teacher.num_parameters(), "train": str(train_dir),
                  "heldout": [str(h) for h in heldout], "heldout_files": len(files), "target_layers": target_layers,
                  "steps": args.steps, "batch_size": args.batch_size, "crop_samples": args.crop_samples, "lr": args.lr,
                  "base_config": args.base_config, "from_scratch": args.from_scratch, "narrow_channels": narrow,
                  "narrow_front_ends": args.narrow_front_ends,
                  "teacher_pretrain_steps": args.pretrain_steps if args.teacher is None else None,
                  "ridge": args.ridge, "seed": args.seed,
                  "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:]))},
        "variants": evaluations,
        "copy_teacher_layer0": copy_baseline(teacher, files, target_layers, args.ridge),
        "teacher_layers": teacher_layer_statistics(teacher, files, target_layers),
        "diagnostics": diagnostics(checkpoints, teacher, files, audio_files([train_dir], len(files)), args.crop_samples),
        "final_training_loss": {v: points[-1][1] for v, points in curves.items()},
        "plot": str(png),
    }
    results["claim"] = claim(evaluations, target_layers)
    markdown = render_markdown(results)
    json_path, md_path = write_outputs(args.out, "fidelity", results, markdown)
    print(markdown)
    print(f"[fidelity] wrote {json_path}, {md_path} and {png}")
    return results


# (GenDistiller variant, DistilHuBERT variant) compared by the claim and the diagnostics: the first pair distilled.
COMPARED_PAIRS = (("gendistiller", "distilhubert"), ("gendistiller-narrow-fe", "distilhubert-narrow-fe"))


def compared_pair(variants: Sequence[str]) -> Optional[tuple[str, str]]:
    return next((pair for pair in COMPARED_PAIRS if set(pair) <= set(variants)), None)


def diagnostics(checkpoints: dict[str, Path], teacher, heldout: list[Path], train: list[Path], crop_samples: int
                ) -> dict[str, Any]:
    """Where the error comes from: GenDistiller free running (as at inference) vs teacher forced (each step given the
    teacher's previous target layer: one step's error alone, so the gap to free running is the error carried over
    from the steps before), training vs held-out audio (over-fitting), and whole held-out recordings vs their first
    `crop_samples` (the training crop length: a teacher whose states depend on the utterance's length, such as
    Whisper per utterance, is learnt at the lengths it is trained on)."""
    found: dict[str, Any] = {}
    for variant in compared_pair(list(checkpoints)) or ():
        student, _ = load_student(checkpoints[variant])
        modes = {"heldout_free_running": heldout_fidelity(student, teacher, heldout),
                 "heldout_crops_free_running": heldout_fidelity(student, teacher, heldout, max_samples=crop_samples),
                 "train_free_running": heldout_fidelity(student, teacher, train)}
        if student.config.kind == "gendistiller":
            modes["heldout_teacher_forced"] = heldout_fidelity(student, teacher, heldout, teacher_forced=True)
        found[variant] = {mode: {str(layer): asdict(m) for layer, m in layers.items()} for mode, layers in modes.items()}
    return found


def claim(evaluations: dict[str, Any], target_layers: list[int]) -> dict[str, Any]:
    """Most (layer, metric) pairs at <= 67% of the parameters, and the stricter test: at least as good in L1 and in
    cosine on every target layer."""
    pair = compared_pair(list(evaluations))
    if pair is None:
        return {}
    gen, base = evaluations[pair[0]], evaluations[pair[1]]
    wins = {"l1": 0, "cosine": 0, "probe_r2": 0}
    for layer in map(str, target_layers):
        g, b = gen["layers"][layer], base["layers"][layer]
        wins["l1"] += g["l1"] <= b["l1"]
        wins["cosine"] += g["cosine"] >= b["cosine"]
        wins["probe_r2"] += g["probe_r2"] >= b["probe_r2"]
    ratio = gen["parameters"] / base["parameters"]
    total = sum(wins.values())
    met = total > 1.5 * len(target_layers) and ratio <= PARAMETER_RATIO
    every_layer = wins["l1"] == wins["cosine"] == len(target_layers) and ratio <= PARAMETER_RATIO
    return {"compared": list(pair), "layers_where_gendistiller_is_at_least_as_good": wins, "out_of": len(target_layers),
            "parameter_ratio": ratio, "every_layer_l1_and_cosine": every_layer,
            "status": f"{'met' if met else 'not met'}: {pair[0]} at least as good as {pair[1]} on {total} of "
                      f"{3 * len(target_layers)} (layer, metric) pairs with {ratio:.1%} of its parameters; "
                      f"L1 and cosine on every target layer: {'yes' if every_layer else 'no'}"}


def render_markdown(results: dict[str, Any]) -> str:
    setup = results["setup"]
    rows = []
    for variant, ev in results["variants"].items():
        for layer, m in ev["layers"].items():
            rows.append([variant, f"{ev['parameters'] / 1e6:.3f}", layer if layer != "0" else "0 (front-end)",
                         fmt(m["l1"], 4), fmt(m["cosine"], 4), fmt(m["probe_r2"], 4)])
    steps = setup.get("teacher_pretrain_steps")
    pretrained = "" if steps is None else f", pretrained {steps} steps"
    init = "from scratch" if setup["from_scratch"] else "initialised from the teacher"
    text = (f"Fidelity on {setup['heldout_files']} held-out files, teacher {setup['teacher']} "
            f"({setup['teacher_parameters'] / 1e6:.2f}M{pretrained}), {setup['steps']} steps of batch {setup['batch_size']} x "
            f"{setup['crop_samples']} samples, students {init} "
            f"({results['machine']['date']}); evaluated free running.\n\n")
    for layer, m in results["copy_teacher_layer0"]["layers"].items():
        rows.append(["(teacher layer 0 copied)", "0", layer, fmt(m["l1"], 4), fmt(m["cosine"], 4), fmt(m["probe_r2"], 4)])
    text += markdown_table(["variant", "params (M)", "teacher layer", "L1 ↓", "cosine ↑", "probe R² ↑"], rows)
    text += "\nFinal training loss (sum over target layers): " + ", ".join(
        f"{v} {loss:.3f}" for v, loss in results["final_training_loss"].items()) + f"\n\nLoss curves: {results['plot']}\n"
    if results["claim"]:
        text += f"- claim: {results['claim']['status']}\n"
    if results["diagnostics"]:
        modes = ("heldout_free_running", "heldout_teacher_forced", "heldout_crops_free_running", "train_free_running")
        rows = [[variant, layer] + [f"{d[mode][layer]['l1']:.4f} / {d[mode][layer]['cosine']:.4f}" if mode in d else "–"
                                    for mode in modes]
                for variant, d in results["diagnostics"].items() for layer in d["heldout_free_running"]]
        text += "\nWhere the error comes from (L1 / cosine):\n\n" + markdown_table(
            ["variant", "teacher layer", "held-out, free running", "held-out, teacher forced",
             f"held-out, first {setup['crop_samples']} samples (the training crop)", "training audio, free running"], rows)
    text += "\nThe teacher's layers on the held-out audio:\n\n" + markdown_table(
        ["teacher layer", "mean frame norm", "norm spread (CV)", "frames > 3x median norm", "max |dim mean|",
         "cosine to the layer before"],
        [[layer, f"{m['norm_mean']:.1f}", f"{m['norm_cv']:.3f}", f"{m['frames_over_3x_median_norm']:.2%}",
          f"{m['max_abs_dim_mean']:.2f}", fmt(m["cosine_to_previous_layer"], 3)] for layer, m in results["teacher_layers"].items()])
    copied = [m["cosine"] for m in results["copy_teacher_layer0"]["layers"].values()]
    if min(copied) >= 0.99:
        text += (f"- caution: the teacher's layer 0 copied already reaches cosine >= {min(copied):.3f} on every target "
                 "layer; this teacher's layers are near copies of their input and the comparison says little\n")
    return text


if __name__ == "__main__":
    main()
