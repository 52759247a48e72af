"""Self-supervised pretraining of a small WavLM-architecture teacher: `gendistiller pretrain-teacher --data DIR
--out TEACHER.pt [--config NAME_OR_YAML] [section.key=value ...] [--resume]`.

HuBERT's first iteration (Hsu et al. 2021; fairseq `examples/hubert`): k-means units of MFCC frames
(`distill/training/units.py`) are the targets; spans of the projected CNN features are replaced by a learned mask
embedding (each valid frame starts a span with probability `mask_start_prob`; spans of `mask_span` frames); the
last layer, projected to `final_dim`, scores every unit by cosine similarity / `logit_temperature`; the loss is
cross-entropy on the masked frames. The encoder is our WavLM (`distill/nn/ssl_encoder.py`: gated relative position bias),
and the result is written in the official WavLM checkpoint format (`{"cfg": ..., "model": ...}`), which
`load_teacher`, s3prl's `wavlm_local` and `student.init_from_teacher` read unchanged. The run folder also keeps
`untrained_teacher.pt`: the same architecture at its initialisation, in the same format (the random-weight control).

Reads top to bottom like `distill/training/trainer.py`: config, model, data, units, optimiser, checkpoints, and the
step that the shared loop (`distill.training.loop`) runs.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from distill.io.audio import AudioError, read_audio
from distill.io.checkpoint_files import CheckpointError, check_finite_weights, read_checkpoint, save_atomically
from distill.io.configuration import ConfigError, above, at_least, between, check_fields, from_dict
from distill.io.run_folder import RunLock, blocking_file
from distill.io.weight_names import map_state_dict
from distill.nn.components import valid_mask
from distill.nn.fairseq_names import OURS_TO_WAVLM_EXTRAS, ours_to_fairseq
from distill.nn.ssl_encoder import SSLModel, SSLModelConfig
from distill.teachers.fairseq_format import wavlm_config_from_checkpoint
from distill.teachers.tiny import TINY_WAVLM_CFG
from distill.training.config import DataConfig, RunConfig, check_data, check_run
from distill.training.data import BucketBatchSampler, CorpusIndex, CropDataset, collate, index_corpus
from distill.training.guards import check_finite_state, step_is_finite
from distill.training.loop import LoopSettings, Position, run_loop
from distill.training.resumption import check_same_sections
from distill.training.runs import (
    MetricsLog,
    adamw_with_schedule,
    latest_checkpoint,
    pick_device,
    read_config,
    resolve_autocast_dtype,
    restore,
    rng_state,
    save_checkpoint,
    start_run,
)
from distill.training.units import UnitCodebook, fit_codebook, frame_geometry

PRETRAIN_FORMAT = "gendistiller-pretraining-1"


# ---- config ------------------------------------------------------------------------------------------------

@dataclass
class UnitsConfig:
    # k-means units (HuBERT's first iteration: 100 clusters of 39-d MFCC)
    num_clusters: int = field(default=100, metadata=between(2, 65536))
    # MFCC frames sampled from the corpus to fit k-means (at least num_clusters)
    max_fit_frames: int = field(default=200_000, metadata=at_least(2))


@dataclass
class ObjectiveConfig:
    # probability that a valid frame starts a masked span (HuBERT: mask_prob 0.8 / 10)
    mask_start_prob: float = field(default=0.08, metadata=between(0, 1))
    mask_span: int = field(default=10, metadata=between(1, 1000))  # frames per masked span (HuBERT: mask_length 10)
    # width of the projection the unit embeddings are compared in (HuBERT Base: 256)
    final_dim: int = field(default=256, metadata=between(1, 65536))
    # cosine similarity / temperature = logits (HuBERT: 0.1)
    logit_temperature: float = field(default=0.1, metadata=above(0))


@dataclass
class PretrainOptimConfig:
    lr: float = field(default=5e-4, metadata=between(0, 1, low_open=True))  # peak learning rate (AdamW; HuBERT: 5e-4)
    total_steps: int = field(default=400_000, metadata=at_least(1))
    # linear warm-up, then linear decay to 0 (HuBERT: 32k of 400k steps)
    warmup_fraction: float = field(default=0.08, metadata=between(0, 1))
    weight_decay: float = field(default=0.01, metadata=at_least(0))
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98], metadata=between(0, 1, high_open=True, length=2))
    clip_norm: float = field(default=10.0, metadata=above(0))


@dataclass
class PretrainConfig:
    # Architecture as the official WavLM checkpoint's `cfg` holds it (keys of s3prl's WavLMConfig); unset keys
    # take the tiny teacher's values (distill/teachers/tiny.py).
    model: dict[str, Any] = field(default_factory=lambda: dict(TINY_WAVLM_CFG))
    units: UnitsConfig = field(default_factory=UnitsConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    data: DataConfig = field(default_factory=DataConfig)  # data.train: the audio directory (--data)
    optim: PretrainOptimConfig = field(default_factory=PretrainOptimConfig)
    run: RunConfig = field(default_factory=lambda: RunConfig(output_dir=""))  # "": next to --out (TEACHER_pretraining/)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# What a run fixes when it starts: --resume refuses a config that changes it.
RESUMED_AS_STARTED = ("model", "units", "objective")
_SECTIONS = {"units": UnitsConfig, "objective": ObjectiveConfig, "data": DataConfig, "optim": PretrainOptimConfig,
             "run": RunConfig}


def config_from_dict(raw: dict[str, Any]) -> PretrainConfig:
    unknown = sorted(set(raw) - {"model", *_SECTIONS})
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown}; top-level keys are model, {', '.join(_SECTIONS)}")
    model = raw.get("model") or {}
    if not isinstance(model, dict):
        raise ValueError(f"config key model: expected a mapping of WavLM cfg keys, got {model!r}")
    unknown_model = sorted(set(model) - set(TINY_WAVLM_CFG))
    if unknown_model:
        raise ValueError(f"unknown config key(s) {', '.join(f'model.{k}' for k in unknown_model)}; "
                         f"known keys of model (WavLM cfg): {', '.join(sorted(TINY_WAVLM_CFG))}")
    for key, value in model.items():  # each of the type its key has in the tiny teacher's cfg
        expected = type(TINY_WAVLM_CFG[key])
        if not _of_type(value, expected):
            raise ConfigError(f"model.{key}", f"expected {expected.__name__}, got {type(value).__name__} {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"model.{key}", f"must be a finite number, got {value!r}")
    sections = {name: from_dict(cls, raw.get(name) or {}, name) for name, cls in _SECTIONS.items()}
    if "output_dir" not in (raw.get("run") or {}):
        sections["run"].output_dir = ""
    return PretrainConfig(model={**TINY_WAVLM_CFG, **model}, **sections)


def _of_type(value: Any, expected: type) -> bool:
    """bool only for bool; an int where a float is expected."""
    if isinstance(value, bool) or expected is bool:
        return isinstance(value, bool) and expected is bool
    return isinstance(value, (int, float) if expected is float else expected)


def load_config(name_or_path: str, overrides: Sequence[str] = ()) -> PretrainConfig:
    return config_from_dict(read_config(name_or_path, overrides))


# Our encoder's config fields -> the WavLM cfg keys they are read from (distill.teachers.fairseq_format).
_WAVLM_KEYS = {"conv_layers": "conv_feature_layers", "dim": "encoder_embed_dim", "ffn_dim": "encoder_ffn_embed_dim",
               "num_layers": "encoder_layers", "num_heads": "encoder_attention_heads"}


def check_pretrain_config(config: PretrainConfig, out: Path, run_dir: Path) -> SSLModelConfig:
    """Every value before any work (as distill.training.config.check_config does for distillation); returns the
    encoder's geometry."""
    for name in _SECTIONS:
        check_fields(getattr(config, name), name)
    try:
        geometry = wavlm_config_from_checkpoint(config.model)
        check_fields(geometry, "model")
    except ConfigError as error:  # named by the encoder's field: the WavLM cfg key is what the user wrote
        field = error.key.partition(".")[2]
        raise ConfigError(f"model.{_WAVLM_KEYS.get(field, field)}", str(error).partition(": ")[2]) from None
    except ValueError as error:
        raise ConfigError("model", str(error)) from None
    if geometry.relative_position and geometry.max_distance <= geometry.num_buckets // 4:
        raise ConfigError("model.max_distance", f"must exceed the exact buckets, num_buckets // 4 = "
                                                f"{geometry.num_buckets // 4}, got {geometry.max_distance}")
    if config.units.max_fit_frames < config.units.num_clusters:
        raise ConfigError("units.max_fit_frames", f"must be at least units.num_clusters ({config.units.num_clusters}), "
                                                  f"got {config.units.max_fit_frames}")
    check_data(config.data, geometry.conv_layers)
    check_run(replace(config.run, output_dir=str(run_dir)))
    if out.is_dir() or blocking_file(out.parent) is not None:
        raise ValueError(f"--out {out}: not a file path (a folder, or under a file); give the teacher file to write")
    return geometry


# ---- model -------------------------------------------------------------------------------------------------

class MaskedUnitPrediction(nn.Module):
    """HuBERT's pretraining heads around our encoder: mask embedding, final projection, unit embeddings."""

    def __init__(self, backbone: SSLModel, num_units: int, objective: ObjectiveConfig):
        super().__init__()
        self.backbone = backbone
        dim = backbone.config.dim
        self.mask_emb = nn.Parameter(torch.empty(dim).uniform_())
        self.final_proj = nn.Linear(dim, objective.final_dim)
        self.unit_embeddings = nn.Parameter(torch.empty(num_units, objective.final_dim).normal_())
        self.temperature = objective.logit_temperature

    def forward(self, waveforms: Tensor, lengths: Tensor, mask_fn: Callable[[Tensor, int], Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """-> (logits (B, T, units), the (B, T) span mask, frame lengths). `mask_fn(frame_lengths, T)` draws the mask;
        masked frames of the projected CNN features are replaced by the mask embedding."""
        features, frame_lengths = self.backbone.front_end(waveforms, lengths)
        mask = mask_fn(frame_lengths, features.shape[1])
        features = torch.where(mask[..., None], self.mask_emb.to(features.dtype), features)
        last = self.backbone.encoder(features, frame_lengths)[-1]
        projected = F.normalize(self.final_proj(last).float(), dim=-1)
        logits = projected @ F.normalize(self.unit_embeddings.float(), dim=-1).T / self.temperature
        return logits, mask, frame_lengths


def span_mask(frame_lengths: Tensor, frames: int, start_prob: float, span: int, generator: torch.Generator) -> Tensor:
    """(B, frames) bool: each valid frame starts a span of `span` frames with probability `start_prob` (spans may
    overlap and are cut at the utterance's end); every utterance gets at least one span."""
    valid = valid_mask(frame_lengths.cpu(), frames)
    starts = (torch.rand(valid.shape, generator=generator) < start_prob) & valid
    none = ~starts.any(1) & (frame_lengths.cpu() > 0)
    for row in none.nonzero().flatten().tolist():  # HuBERT also guarantees a minimum number of masks
        starts[row, int(torch.randint(int(frame_lengths[row]), (1,), generator=generator))] = True
    covered = F.conv1d(starts.float()[:, None], torch.ones(1, 1, span), padding=span - 1)[:, 0, :frames] > 0
    return (covered & valid).to(frame_lengths.device)


def wavlm_checkpoint(model: MaskedUnitPrediction, cfg: dict[str, Any]) -> dict[str, Any]:
    """The official WavLM format: `cfg` (WavLMConfig keys) and `model` (the WavLM state dict, incl. `mask_emb`)."""
    backbone = model.backbone
    rules = OURS_TO_WAVLM_EXTRAS + ours_to_fairseq(backbone.config.extractor_mode)
    weights = map_state_dict({k: v.detach().cpu().clone() for k, v in backbone.state_dict().items()}, "pretrained teacher",
                             rules)
    weights["mask_emb"] = model.mask_emb.detach().cpu().clone()
    return {"cfg": dict(cfg), "model": weights}


# ---- training ----------------------------------------------------------------------------------------------

@dataclass
class PretrainResult:
    teacher: Path  # the official-format checkpoint (--out)
    untrained: Path  # the same architecture at initialisation (the random-weight control)
    run_dir: Path


def default_run_dir(out: Path) -> Path:
    return out.with_name(f"{out.stem}_pretraining")


def _check_corpus(source: str) -> CorpusIndex:
    corpus = index_corpus(source)
    if corpus.problems:
        more = f" (and {len(corpus.problems) - 1} more)" if len(corpus.problems) > 1 else ""
        raise ValueError(f"cannot pretrain on {source}: {corpus.problems[0]}{more}; pretraining needs 16 kHz mono "
                         "audio: convert or remove these files")
    return corpus


def _read_pretraining_checkpoint(path: Path) -> dict[str, Any]:
    checkpoint = read_checkpoint(path)
    if checkpoint.get("format") != PRETRAIN_FORMAT:
        raise CheckpointError(f"{path}: not a pretraining checkpoint (format {PRETRAIN_FORMAT!r})")
    check_finite_weights(checkpoint.get("model", {}), path)
    return checkpoint


def _readable(path: str) -> Optional[np.ndarray]:
    """A file's samples, or None (said on one line) when it cannot be used (non-finite samples, unreadable)."""
    try:
        return read_audio(path)
    except AudioError as error:
        print(f"[pretrain] units: skipped {error}", flush=True)
        return None


def _fit_or_load_codebook(config: PretrainConfig, corpus: CorpusIndex, run_dir: Path, window: int, hop: int,
                          resume: bool) -> UnitCodebook:
    """k-means units of the corpus, fitted when a run starts and kept in units.pt, which a resumed run reads."""
    path = run_dir / "units.pt"
    if resume:
        return UnitCodebook.from_state_dict(torch.load(path, weights_only=True))
    waveforms = (torch.from_numpy(audio) for item in tqdm(corpus.items, desc="units: MFCC", disable=not config.run.progress)
                 if (audio := _readable(item.path)) is not None)
    codebook = fit_codebook(waveforms, config.units.num_clusters, window, hop, config.units.max_fit_frames, config.run.seed)
    save_atomically(codebook.state_dict(), path)
    return codebook


def pretrain(config: PretrainConfig, out: str | Path, resume: bool = False) -> PretrainResult:
    """Runs (or resumes) pretraining and writes the teacher to `out`; returns the written paths. Every value is checked
    first, the run folder is held for the run (one run per folder), and SIGINT / SIGTERM stop after the current step
    with a checkpoint (`RunStopped`)."""
    out = Path(out)
    run_dir = Path(config.run.output_dir) if config.run.output_dir else default_run_dir(out)
    check_pretrain_config(config, out, run_dir)
    config.run.output_dir = str(run_dir)
    with RunLock.folder(run_dir, "run.output_dir (or --out)"):
        return _pretrain(config, out, run_dir, resume)


def _pretrain(config: PretrainConfig, out: Path, run_dir: Path, resume: bool) -> PretrainResult:
    device = pick_device(config.run.device)
    autocast_dtype = resolve_autocast_dtype(config.run.precision, device)

    checkpoint = start_run(run_dir, resume, _read_pretraining_checkpoint, config.run.seed)
    if checkpoint is not None:
        check_same_sections(config.to_dict(), checkpoint["config"], RESUMED_AS_STARTED, run_dir)
        print(f"[pretrain] resuming from step {checkpoint['step']} of {config.optim.total_steps}")

    corpus = _check_corpus(config.data.train)
    backbone = SSLModel(wavlm_config_from_checkpoint(config.model))
    window, hop = frame_geometry(backbone.config.conv_layers)
    codebook = _fit_or_load_codebook(config, corpus, run_dir, window, hop, resume)
    model = MaskedUnitPrediction(backbone, codebook.num_units, config.objective).to(device)
    untrained = run_dir / "untrained_teacher.pt"
    if checkpoint is None:
        save_atomically(wavlm_checkpoint(model, config.model), untrained)

    optimizer, scheduler = adamw_with_schedule(model.parameters(), config.optim)
    sampler = BucketBatchSampler(corpus.items, config.data.batch_size, config.data.crop_samples, config.run.seed,
                                 bucket_batches=config.data.bucket_batches)
    loader = DataLoader(CropDataset(corpus.items, config.data.crop_samples), batch_sampler=sampler, collate_fn=collate,
                        num_workers=config.data.num_workers, pin_memory=device.type == "cuda")

    position = Position()
    if checkpoint is not None:
        position = Position(*restore(checkpoint, "model", model, optimizer, scheduler), latest_checkpoint(run_dir))

    (run_dir / "checkpoints").mkdir(exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    metrics = MetricsLog(run_dir, position.step)
    print(f"[pretrain] {sum(p.numel() for p in backbone.parameters()):,} encoder parameters; data {config.data.train}: "
          f"{len(corpus.items)} files, {corpus.hours:.2f} h; {codebook.num_units} units "
          f"(most frequent: {100 * codebook.chance_accuracy:.1f}% of frames)")

    def save() -> Path:
        check_finite_state(model.state_dict(), position.step, position.last_checkpoint)
        return save_checkpoint(run_dir, position.step, {
            "format": PRETRAIN_FORMAT, "config": config.to_dict(), "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": position.step,
            "epoch": position.epoch, "batch_in_epoch": position.batch_in_epoch, "rng": rng_state()},
            config.run.keep_checkpoints)

    def take_step(batch: dict[str, Any]) -> PretrainStep:
        return pretrain_step(model, codebook, optimizer, batch, config, position.step, device, autocast_dtype)

    def record(result: PretrainStep, audio_per_second: float) -> dict[str, float]:
        return _record(result, position.step, scheduler.get_last_lr()[0], audio_per_second)

    settings = LoopSettings("pretrain", config.optim.total_steps, config.run.log_every, config.run.checkpoint_every,
                            run_dir, config.data.train, config.run.max_nonfinite_steps, config.run.progress,
                            {"loss": "loss", "acc": "masked_accuracy"})
    model.train()
    run_loop(settings, position, sampler, loader, scheduler, take_step, record, save, metrics)
    metrics.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    save_atomically(wavlm_checkpoint(model, config.model), out)
    return PretrainResult(out, untrained, run_dir)


@dataclass
class PretrainStep:
    loss: Tensor
    grad_norm: Tensor
    logits: Tensor  # (B, T, units)
    mask: Tensor  # (B, T) the masked frames
    labels: Tensor  # (B, T) unit of each frame
    frame_lengths: Tensor
    applied: bool  # False: the loss or gradient norm was not finite and the optimizer step was skipped


def pretrain_step(model: MaskedUnitPrediction, codebook: UnitCodebook, optimizer: torch.optim.Optimizer,
                  batch: dict[str, Any], config: PretrainConfig, step: int, device: torch.device,
                  autocast_dtype: Optional[torch.dtype]) -> PretrainStep:
    """One step: mask -> logits -> cross-entropy on the masked frames -> backward -> clip -> optimizer step, the last
    only when the loss and gradient norm are finite. The mask depends on the seed and the step only."""
    waveforms, lengths = batch["waveforms"].to(device), batch["lengths"].to(device)
    generator = torch.Generator().manual_seed(config.run.seed * 1_000_003 + step)
    objective = config.objective

    def draw_mask(frame_lengths: Tensor, frames: int) -> Tensor:
        return span_mask(frame_lengths, frames, objective.mask_start_prob, objective.mask_span, generator)

    with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
        logits, mask, frame_lengths = model(waveforms, lengths, draw_mask)
    labels = codebook.assign_batch(waveforms, lengths, mask.shape[1])
    if bool((labels[valid_mask(frame_lengths, mask.shape[1])] < 0).any()):
        raise RuntimeError(f"unit labels cover fewer frames than the model's {frame_lengths.tolist()}")
    loss = F.cross_entropy(logits[mask], labels[mask])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.clip_norm)
    applied = step_is_finite(loss, grad_norm)
    if applied:  # a NaN or infinite step would poison every weight: it is not taken
        optimizer.step()
    return PretrainStep(loss, grad_norm, logits, mask, labels, frame_lengths, applied)


def _record(result: PretrainStep, step: int, lr: float, audio_per_second: float) -> dict[str, float]:
    """One metrics record: loss, accuracy on the masked and the unmasked frames, lr, gradient norm, speed."""
    mask, frame_lengths = result.mask, result.frame_lengths
    correct = result.logits.detach().argmax(-1) == result.labels
    unmasked = valid_mask(frame_lengths, mask.shape[1]) & ~mask
    return {"step": step, "loss": result.loss.item(), "masked_accuracy": correct[mask].float().mean().item(),
            "unmasked_accuracy": correct[unmasked].float().mean().item() if bool(unmasked.any()) else math.nan,
            "masked_fraction": mask.sum().item() / frame_lengths.sum().item(), "lr": lr,
            "grad_norm": float(result.grad_norm), "audio_seconds_per_second": audio_per_second}
