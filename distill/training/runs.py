"""What every training loop here shares (distillation, teacher pretraining): YAML configs with `section.key=value`
overrides, a run folder with atomic checkpoints and a `latest` pointer, RNG state for exact resume, the learning
rate schedule, device and precision choice, and the metrics log (tensorboard + metrics.jsonl).
"""
from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
import torch
import yaml

from distill.io.checkpoint_files import save_atomically

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


# ---- configs -----------------------------------------------------------------------------------------------

def resolve_config_path(name_or_path: str) -> Path:
    """A path, or the name of a shipped config (`tiny_gendistiller`, `gendistiller_wavlm_base_plus`, ...)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = CONFIG_DIR / f"{name_or_path.removesuffix('.yaml')}.yaml"
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    raise FileNotFoundError(f"config {name_or_path!r} not found; give a YAML path or one of {names}")


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """`section.key=value` (value parsed as YAML). Keys are checked when the config is built."""
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep or not key:
            raise ValueError(f"override {override!r} must look like section.key=value")
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ValueError(f"override {override!r}: {part} is not a section")
        node[leaf] = _parse_yaml(value, f"override {override!r}")
    return raw


def _parse_yaml(text: str, where: str) -> Any:
    """YAML text; a syntax error is a ValueError naming `where`, the line and the column."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ValueError(f"{where}{at}: YAML syntax error: {problem}") from None


def read_config(name_or_path: str, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The raw YAML mapping of a config file or shipped config, with overrides applied."""
    path = resolve_config_path(name_or_path)
    raw = _parse_yaml(path.read_text(), str(path)) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of sections (teacher, student, ...), got {type(raw).__name__}")
    return apply_overrides(raw, overrides)


# ---- device, precision, schedule ---------------------------------------------------------------------------

def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(name)


def resolve_autocast_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"run.precision must be auto, bf16 or fp32, got {precision!r}")
    return torch.bfloat16 if precision == "bf16" else None


def lr_factor(step: int, total_steps: int, warmup_fraction: float) -> float:
    """Linear warm-up to 1 over `warmup_fraction` of training, then linear decay to 0."""
    warmup = max(1, int(total_steps * warmup_fraction))
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup))


# ---- checkpoints -------------------------------------------------------------------------------------------

def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def latest_checkpoint(output_dir: Path) -> Optional[Path]:
    pointer = output_dir / "checkpoints" / "latest"
    if pointer.is_file():
        path = output_dir / "checkpoints" / pointer.read_text().strip()
        if path.is_file():
            return path
    found = sorted((output_dir / "checkpoints").glob("step_*.pt"))
    return found[-1] if found else None


def start_run(output_dir: Path, resume: bool, read: Callable[[Path], dict[str, Any]], seed: int) -> Optional[dict[str, Any]]:
    """Seeds every RNG; returns the newest checkpoint (read with `read`) when resuming, else None. A run started
    afresh must not overwrite (and then prune) the checkpoints of an earlier run in its folder."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    found = latest_checkpoint(output_dir)
    if not resume:
        if found is not None:
            raise ValueError(f"{output_dir} already holds the checkpoints of a run; resume it (--resume) or choose "
                             "another output folder")
        return None
    if found is None:
        raise FileNotFoundError(f"--resume: no checkpoint in {output_dir / 'checkpoints'}")
    return read(found)


def adamw_with_schedule(parameters: Iterable[torch.nn.Parameter], optim: Any) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW and the warm-up/decay schedule from an optim config section (lr, betas, weight_decay, total_steps,
    warmup_fraction)."""
    optimizer = torch.optim.AdamW(list(parameters), lr=optim.lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, optim.total_steps, optim.warmup_fraction))
    return optimizer, scheduler


def restore(checkpoint: dict[str, Any], weights_key: str, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
            scheduler: Any) -> tuple[int, int, int]:
    """Loads weights, optimizer, schedule and RNG state from a checkpoint; returns (step, epoch, batch_in_epoch)."""
    module.load_state_dict(checkpoint[weights_key])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    set_rng_state(checkpoint["rng"])
    return checkpoint["step"], checkpoint["epoch"], checkpoint["batch_in_epoch"]


def checkpoint_path(output_dir: Path, step: int) -> Path:
    """Where a run's checkpoint of `step` is written: checkpoints/step_NNNNNNNN.pt."""
    return output_dir / "checkpoints" / f"step_{step:08d}.pt"


def save_checkpoint(output_dir: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """`checkpoint_path` written atomically, then the `latest` pointer; only the newest `keep` stay."""
    path = checkpoint_path(output_dir, step)
    folder = path.parent
    save_atomically(state, path)
    (folder / ".latest.tmp").write_text(path.name)
    os.replace(folder / ".latest.tmp", folder / "latest")
    for old in sorted(folder.glob("step_*.pt"))[:-keep]:
        old.unlink()
    return path


# ---- metrics -----------------------------------------------------------------------------------------------

class MetricsLog:
    """tensorboard scalars (grouped by the part of the key before `_layer_`) and one JSON line per record.

    On resume, metrics.jsonl records past the resumed step are dropped (they were never checkpointed) and
    tensorboard purges them too.
    """

    def __init__(self, output_dir: Path, resume_step: int):
        from tensorboardX import SummaryWriter

        path = output_dir / "metrics.jsonl"
        kept = []
        if path.is_file():
            kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= resume_step]
        path.write_text("".join(line + "\n" for line in kept))
        self.file = open(path, "a")
        self.writer = SummaryWriter(str(output_dir / "tensorboard"), purge_step=resume_step)

    def log(self, record: dict[str, float]) -> None:
        step = int(record["step"])
        for key, value in record.items():
            if key != "step" and math.isfinite(value):
                group = key.split("_layer_")[0] if "_layer_" in key else "train"
                self.writer.add_scalar(f"{group}/{key}", value, step)
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.writer.close()
        self.file.close()
