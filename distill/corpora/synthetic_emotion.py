"""The IEMOCAP stand-in (emotion recognition): five sessions of two speakers saying the same kind of sentences in
four espeak-ng speaking styles, with s3prl's five cross-validation folds. Layout and s3prl keys: the docstring of
`distill.corpora.synthetic`.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from distill.corpora.synthetic_audio import Plan, draw_speakers
from distill.corpora.synthetic_texts import sentence

# IEMOCAP's four SUPERB classes as espeak-ng speaking styles: pitch offset, rate factor, peak level, pause between
# words (10 ms units). Anger loud and fast, happiness high and lively, sadness low, slow, quiet and halting.
_EMOTIONS: dict[str, tuple[int, float, float, int]] = {
    "neu": (0, 1.0, 0.5, 0),
    "hap": (18, 1.15, 0.7, 0),
    "ang": (6, 1.3, 0.95, 0),
    "sad": (-16, 0.72, 0.25, 12),
}


def plan_iemocap(part: Path, size: dict[str, int], rng: np.random.Generator) -> Plan:
    """Five sessions of two speakers (F, M); the same sentences in each emotion's style. meta_data/SessionN holds the
    fold that tests on session N and trains on the other four, as s3prl's IEMOCAP preprocessing writes it."""
    plan = Plan()
    speakers = iter(draw_speakers(rng, 10))
    by_session: dict[int, list[dict[str, str]]] = {}
    for session in range(1, 6):
        entries = []
        for gender in ("F", "M"):
            speaker = next(speakers)
            dialog = f"Ses0{session}{gender}_impro0{int(rng.integers(1, 10))}"
            for n in range(size["utterances"] * len(_EMOTIONS)):
                emotion = list(_EMOTIONS)[n % len(_EMOTIONS)]
                pitch, rate, peak, gap = _EMOTIONS[emotion]
                rel = f"Session{session}/sentences/wav/{dialog}/{dialog}_{gender}{n:03d}.wav"
                utt = speaker.say(rng, part / rel, sentence(rng).lower())
                plan.audio.append(replace(utt, pitch=int(np.clip(utt.pitch + pitch, 0, 99)), rate=int(utt.rate * rate),
                                          peak=peak * float(rng.uniform(0.9, 1.0)), word_gap=gap))
                entries.append({"path": rel, "label": emotion, "speaker": f"Ses0{session}{gender}"})
        by_session[session] = entries
    labels = {emotion: i for i, emotion in enumerate(_EMOTIONS)}
    for session in by_session:
        train = [entry for other, entries in by_session.items() if other != session for entry in entries]
        for name, entries in (("train", train), ("test", by_session[session])):
            plan.files[part / "meta_data" / f"Session{session}" / f"{name}_meta_data.json"] = json.dumps(
                {"labels": labels, "meta_data": entries}, indent=1)
    return plan
