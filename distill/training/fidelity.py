"""How close a student's layers come to its teacher's on held-out audio: per target layer (and layer 0, the
front-end output), mean L1 and mean cosine similarity over all frames, the student free running as at inference.
The report of the main job and `benchmarks/fidelity.py` both measure with this. Each file is run whole by the student
and by the teacher, as far as the teacher runs a recording at once (`Teacher.window_samples`: Whisper's 30 s); what
was done to files longer than that, or cut to `max_samples`, is printed (`long_files_notes`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from distill.io.audio import SAMPLE_RATE, AudioError, read_audio
from distill.models import Student
from distill.nn.components import conv_output_lengths
from distill.teachers import Teacher
from distill.teachers.base import align_to_student

LayerPairs = dict[int, list[tuple[np.ndarray, np.ndarray]]]  # teacher layer -> (student frames, teacher frames) per file


@dataclass
class LayerFidelity:
    l1: float  # mean |student - teacher| over frames and channels
    cosine: float  # mean cosine similarity over frames
    frames: int


@torch.inference_mode()
def layer_pairs(student: Student, teacher: Teacher, files: Sequence[Path], teacher_forced: bool = False,
                max_samples: Optional[int] = None) -> LayerPairs:
    """Student and teacher states of every file, one utterance at a time, for layer 0 and each target layer, on the
    frames the trainer pairs (`align_to_student`: teachers at the same hop may count a frame or two more or fewer).
    `teacher_forced`: GenDistiller's history is the teacher's previous target layer at every step (as in teacher-
    forced training), which isolates one step's error from the errors of the steps before it. `max_samples`: only the
    first that many samples of each file (e.g. the training crop length). A file that cannot be used (unreadable,
    non-finite samples) is skipped with one line."""
    layers = [0, *student.config.target_layers]
    pairs: LayerPairs = {layer: [] for layer in layers}
    student.eval()
    samples = []
    for path in files:
        try:
            wav = torch.from_numpy(read_audio(path))
        except AudioError as error:  # unreadable, or NaN / infinite samples: said once, the other files go on
            print(f"[fidelity] skipped {error}", flush=True)
            continue
        samples.append(len(wav))
        wav = wav[:max_samples]
        lengths = torch.tensor([len(wav)])
        student_lengths = conv_output_lengths(lengths, student.config.front_end_conv_layers())
        aligned = align_to_student(teacher([wav]), student_lengths, int(student_lengths[0]))  # the trainer's pairing
        reference, frames = aligned.hidden_states, int(aligned.lengths[0])
        targets = [reference[layer] for layer in student.config.target_layers] if teacher_forced else None
        out = student(wav[None], lengths, targets, [teacher_forced] * len(student.config.target_layers))
        for layer, state in zip(layers, [out.layer0, *out.predictions]):
            pairs[layer].append((state[0, :frames].double().numpy(), reference[layer][0, :frames].double().numpy()))
    for note in long_files_notes(teacher, samples, max_samples):
        print(f"[fidelity] {note}", flush=True)
    return pairs


def long_files_notes(teacher: Teacher, samples: Sequence[int], max_samples: Optional[int] = None) -> list[str]:
    """What held-out fidelity did to files of these lengths (samples) that were cut to `max_samples` or are longer
    than the teacher runs at once; none for files run whole."""
    notes = []
    if max_samples is not None and (cut := [n for n in samples if n > max_samples]):
        notes.append(f"{len(cut)} of {len(samples)} files cut to their first {max_samples / SAMPLE_RATE:g} s "
                     f"({(sum(cut) - len(cut) * max_samples) / SAMPLE_RATE:.1f} s of audio left out)")
    run = [n if max_samples is None else min(n, max_samples) for n in samples]
    if teacher.window_samples is not None and (longer := [n for n in run if n > teacher.window_samples]):
        window = teacher.window_samples / SAMPLE_RATE
        notes.append(f"{len(longer)} of {len(samples)} files ({sum(longer) / SAMPLE_RATE:.1f} s) are longer than the "
                     f"teacher's {window:g} s window: the teacher ran them as consecutive {window:g} s windows, each "
                     f"without context from the others; the student ran them whole")
    return notes


def fidelity(pairs: list[tuple[np.ndarray, np.ndarray]]) -> LayerFidelity:
    if not pairs:
        raise ValueError("held-out fidelity: no file could be used (each was skipped: see the lines above)")
    student = np.concatenate([s for s, _ in pairs])
    teacher = np.concatenate([t for _, t in pairs])
    norms = np.maximum(np.linalg.norm(student, axis=-1) * np.linalg.norm(teacher, axis=-1), 1e-12)
    cosine = (student * teacher).sum(-1) / norms
    return LayerFidelity(float(np.abs(student - teacher).mean()), float(cosine.mean()), len(student))


def heldout_fidelity(student: Student, teacher: Teacher, files: Sequence[Path], teacher_forced: bool = False,
                     max_samples: Optional[int] = None) -> dict[int, LayerFidelity]:
    """Per teacher layer (0 = front-end output, then the student's target layers)."""
    pairs = layer_pairs(student, teacher, files, teacher_forced, max_samples)
    return {layer: fidelity(items) for layer, items in pairs.items()}
