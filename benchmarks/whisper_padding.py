"""How far a Whisper teacher's per-utterance states (`whisper:`) are from what Whisper computes on inputs padded to
30 s (`whisper-30s:`), on real files; `benchmarks/real_teacher.py` reports it."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from distill.io.audio import read_audio
from distill.teachers import WhisperTeacher, load_teacher


@torch.no_grad()
def padding_gap(teacher: str | Path | WhisperTeacher, files: Sequence[str | Path | Tensor]) -> dict[str, Any]:
    """Per-utterance states against Whisper's own (`pad_to_30s`) on each file, over valid frames, per layer: mean
    cosine similarity of frame vectors and relative L1 (sum |alone - padded| / sum |padded|).

    `teacher`: a Whisper teacher, or a teacher spec or path that names one; `files`: 16 kHz audio files (read with
    `distill.io.audio.read_audio`) or 1-D 16 kHz waveforms. Each file runs alone in both modes.
    """
    if not isinstance(teacher, WhisperTeacher):
        spec = str(teacher)
        teacher = load_teacher(spec)
        if not isinstance(teacher, WhisperTeacher):
            raise ValueError(f"padding_gap needs a Whisper teacher; {spec} is a {teacher.family} teacher")
    if not files:
        raise ValueError("padding_gap needs at least one file")
    device = next(teacher.model.parameters()).device
    layers = teacher.num_layers + 1
    cosine, difference, reference = [0.0] * layers, [0.0] * layers, [0.0] * layers
    frames = 0
    for item in files:
        wav = item if isinstance(item, Tensor) else torch.from_numpy(read_audio(item))
        wav = wav.float().to(device)[None]
        lengths = torch.tensor([wav.shape[1]], device=device)
        alone, count = teacher.model(wav, lengths, pad_to_30s=False)
        padded, _ = teacher.model(wav, lengths, pad_to_30s=True)
        n = int(count[0])
        frames += n
        for layer, (a, b) in enumerate(zip(alone, padded)):
            a, b = a[0, :n].double(), b[0, :n].double()
            cosine[layer] += F.cosine_similarity(a, b, dim=-1).sum().item()
            difference[layer] += (a - b).abs().sum().item()
            reference[layer] += b.abs().sum().item()
    return {
        "teacher": teacher.spec,
        "files": len(files),
        "frames": frames,
        "layers": [{"layer": layer, "cosine": cosine[layer] / frames,
                    "relative_l1": difference[layer] / reference[layer]} for layer in range(layers)],
    }
