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

Reads top to bottom like `distill/training/trainer.py`: config, model, data, units, optimiser, checkpoints, one loop.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from distill.io.audio import SAMPLE_RATE, read_audio
from distill.io.checkpoint_files import CheckpointError, read_checkpoint, save_atomically
from distill.io.configuration import from_dict
from distill.io.weight_names import map_state_dict
from distill.nn.components import valid_mask
from distill.nn.fairseq_names import OURS_TO_WAVLM_EXTRAS, ours_to_fairseq
from distill.nn.ssl_encoder import SSLModel
from distill.teachers.fairseq_format import wavlm_config_from_checkpoint
from distill.teachers.tiny import TINY_WAVLM_CFG
from distill.training.config import DataConfig, RunConfig
from distill.training.data import BucketBatchSampler, CorpusIndex, CropDataset, collate, index_corpus
from distill.training.runs import (
    MetricsLog,
    adamw_with_schedule,
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
    num_clusters: int = 100  # k-means units (HuBERT's first iteration: 100 clusters of 39-d MFCC)
    max_fit_frames: int = 200_000  # MFCC frames sampled from the corpus to fit k-means


@dataclass
class ObjectiveConfig:
    mask_start_prob: float = 0.08  # probability that a valid frame starts a masked span (HuBERT: mask_prob 0.8 / 10)
    mask_span: int = 10  # frames per masked span (HuBERT: mask_length 10)
    final_dim: int = 256  # width of the projection the unit embeddings are compared in (HuBERT Base: 256)
    logit_temperature: float = 0.1  # cosine similarity / temperature = logits (HuBERT: 0.1)


@dataclass
class PretrainOptimConfig:
    lr: float = 5e-4  # peak learning rate (AdamW; HuBERT Base: 5e-4)
    total_steps: int = 400_000
    warmup_fraction: float = 0.08  # linear warm-up, then linear decay to 0 (HuBERT: 32k of 400k steps)
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    clip_norm: float = 10.0


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
    sections = {name: from_dict(cls, raw.get(name) or {}, name) for name, cls in _SECTIONS.items()}
    if "output_dir" not in (raw.get("run") or {}):
        sections["run"].output_dir = ""
    return PretrainConfig(model={**TINY_WAVLM_CFG, **model}, **sections)


def load_config(name_or_path: str, overrides: Sequence[str] = ()) -> PretrainConfig:
    return config_from_dict(read_config(name_or_path, overrides))


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
    return checkpoint


def _fit_or_load_codebook(config: PretrainConfig, corpus: CorpusIndex, run_dir: Path, window: int, hop: int,
                          resume: bool) -> UnitCodebook:
    """k-means units of the corpus, fitted when a run starts and kept in units.pt, which a resumed run reads."""
    path = run_dir / "units.pt"
    if resume:
        return UnitCodebook.from_state_dict(torch.load(path, weights_only=True))
    waveforms = (torch.from_numpy(read_audio(item.path)) for item in tqdm(corpus.items, desc="units: MFCC", disable=not config.run.progress))
    codebook = fit_codebook(waveforms, config.units.num_clusters, window, hop, config.units.max_fit_frames, config.run.seed)
    save_atomically(codebook.state_dict(), path)
    return codebook


def pretrain(config: PretrainConfig, out: str | Path, resume: bool = False) -> PretrainResult:
    """Runs (or resumes) pretraining and writes the teacher to `out`; returns the written paths."""
    out = Path(out)
    run_dir = Path(config.run.output_dir) if config.run.output_dir else default_run_dir(out)
    config.run.output_dir = str(run_dir)
    device = pick_device(config.run.device)
    autocast_dtype = resolve_autocast_dtype(config.run.precision, device)

    checkpoint = start_run(run_dir, resume, _read_pretraining_checkpoint, config.run.seed)
    if checkpoint is not None:
        config.model = checkpoint["config"]["model"]  # architecture from the checkpoint

    corpus = _check_corpus(config.data.train)
    backbone = SSLModel(wavlm_config_from_checkpoint(config.model))
    window, hop = frame_geometry(backbone.config.conv_layers)
    run_dir.mkdir(parents=True, exist_ok=True)
    codebook = _fit_or_load_codebook(config, corpus, run_dir, window, hop, resume)
    model = MaskedUnitPrediction(backbone, codebook.num_units, config.objective).to(device)
    untrained = run_dir / "untrained_teacher.pt"
    if checkpoint is None:
        save_atomically(wavlm_checkpoint(model, config.model), untrained)

    optimizer, scheduler = adamw_with_schedule(model.parameters(), config.optim)
    total_steps = config.optim.total_steps
    sampler = BucketBatchSampler(corpus.items, config.data.batch_size, config.data.crop_samples, config.run.seed,
                                 bucket_batches=config.data.bucket_batches)
    loader = DataLoader(CropDataset(corpus.items, config.data.crop_samples), batch_sampler=sampler, collate_fn=collate,
                        num_workers=config.data.num_workers, pin_memory=device.type == "cuda")

    step, epoch, batch_in_epoch = 0, 0, 0
    if checkpoint is not None:
        step, epoch, batch_in_epoch = restore(checkpoint, "model", model, optimizer, scheduler)

    (run_dir / "checkpoints").mkdir(exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    metrics = MetricsLog(run_dir, step)
    print(f"[pretrain] {sum(p.numel() for p in backbone.parameters()):,} encoder parameters; data {config.data.train}: "
          f"{len(corpus.items)} files, {corpus.hours:.2f} h; {codebook.num_units} units "
          f"(most frequent: {100 * codebook.chance_accuracy:.1f}% of frames)")

    def save() -> None:
        save_checkpoint(run_dir, step, {
            "format": PRETRAIN_FORMAT, "config": config.to_dict(), "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step, "epoch": epoch,
            "batch_in_epoch": batch_in_epoch, "rng": rng_state()}, config.run.keep_checkpoints)

    objective = config.objective
    progress = tqdm(total=total_steps, initial=step, disable=not config.run.progress, desc="pretrain", dynamic_ncols=True)
    last_log_time, audio_since_log = time.time(), 0.0
    model.train()
    while step < total_steps:
        sampler.set_position(epoch, batch_in_epoch)
        for batch in loader:
            batch_in_epoch += 1
            for message in batch["failed"]:
                print(f"[pretrain] skipped {message}")
            if batch["waveforms"] is None:
                continue
            waveforms, lengths = batch["waveforms"].to(device), batch["lengths"].to(device)
            generator = torch.Generator().manual_seed(config.run.seed * 1_000_003 + step)  # the mask depends on the step only

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
            optimizer.step()
            scheduler.step()
            step += 1
            progress.update(1)
            audio_since_log += float(batch["lengths"].sum()) / SAMPLE_RATE

            if step % config.run.log_every == 0 or step in (1, total_steps):
                elapsed = time.time() - last_log_time
                correct = logits.detach().argmax(-1) == labels
                unmasked = valid_mask(frame_lengths, mask.shape[1]) & ~mask
                accuracy = correct[mask].float().mean().item()
                record = {"step": step, "loss": loss.item(), "masked_accuracy": accuracy,
                          "unmasked_accuracy": correct[unmasked].float().mean().item() if bool(unmasked.any()) else math.nan,
                          "masked_fraction": mask.sum().item() / frame_lengths.sum().item(), "lr": scheduler.get_last_lr()[0],
                          "grad_norm": float(grad_norm), "audio_seconds_per_second": audio_since_log / max(elapsed, 1e-9)}
                metrics.log(record)
                progress.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{accuracy:.3f}")
                last_log_time, audio_since_log = time.time(), 0.0
            if step % config.run.checkpoint_every == 0 or step == total_steps:
                save()
            if step >= total_steps:
                break
        else:
            epoch, batch_in_epoch = epoch + 1, 0
    progress.close()
    metrics.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    save_atomically(wavlm_checkpoint(model, config.model), out)
    return PretrainResult(out, untrained, run_dir)
