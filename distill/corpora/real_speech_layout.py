"""Where each kept Asterisk recording goes in the three layouts `distill.corpora.real_speech` writes, and the manifest
and README that describe them. Pure bookkeeping: no audio is read or written here.

Splits (all fixed, from SHA-1 hashes of names, so every build gives the same ones):
- distillation: every voice but HELDOUT_VOICE in train.
- speaker ID: a prompt goes to train/dev/test (~70/15/15) by a hash of its name alone, so a prompt recorded by
  several voices is in the same split for all of them: no split can be told apart by its wording.
- content (IC): train on CONTENT_TRAIN_VOICES less ~15% of their recordings (by a hash of voice and label), which
  form the dev split; test on CONTENT_TEST_VOICES (Spanish, French, Italian: each language has a training voice).
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from distill.corpora.real_speech_voices import (
    CONTENT_TEST_VOICES,
    CONTENT_TRAIN_VOICES,
    HELDOUT_VOICE,
    LETTERS,
    NUMBERS,
    SOUNDS_DIR,
    VOICES,
    Clip,
    Voice,
)
from distill.corpora.synthetic_speaker import YOUTUBE_ALPHABET
from distill.io.audio import SAMPLE_RATE

LAYOUT_VERSION = 1  # bump when the asterisk-speech layout or its splits change, so old copies are rebuilt
SID_SPLIT = (0.70, 0.85)  # hash fraction below 0.70: train, below 0.85: dev, else test
CONTENT_DEV_FRACTION = 0.15


def _fraction(key: str) -> float:
    """A fixed number in [0, 1) for a name (SHA-1), the same on every machine and Python."""
    return int(hashlib.sha1(key.encode()).hexdigest()[:12], 16) / 16**12


@dataclass
class Layout:
    """Where each kept clip goes. Pure bookkeeping (no audio): `plan_layout` fills it from clips."""

    distill: dict[str, list[Clip]]  # "train" | "heldout" -> clips
    sid: list[tuple[Clip, int, str, str]]  # (clip, 1|2|3, "idNNNNN/VIDEO/NNNNN.wav", "dev" | "test" wav folder)
    content: dict[str, list[tuple[Clip, str, str]]]  # "train" | "valid" | "test" -> (clip, kind, symbol)
    dropped: list[tuple[Clip, str]] = field(default_factory=list)  # content clips left out, and why


def _video_id(key: str) -> str:
    """An 11-character YouTube-like id, fixed by key."""
    number = int(hashlib.sha1(key.encode()).hexdigest(), 16)
    return "".join(YOUTUBE_ALPHABET[(number >> (6 * i)) & 63] for i in range(11))


def plan_layout(clips: Sequence[Clip], voices: Sequence[Voice] = VOICES, heldout: str = HELDOUT_VOICE,
                content_train: Sequence[str] = CONTENT_TRAIN_VOICES,
                content_test: Sequence[str] = CONTENT_TEST_VOICES) -> Layout:
    """The three layouts' splits (see the module docstring); deterministic, independent of the order of `clips`."""
    names = [voice.name for voice in voices]
    unknown = sorted({heldout, *content_train, *content_test} - set(names))
    if unknown:
        raise ValueError(f"split voices {unknown} are not among the voices {names}")
    if set(content_train) & set(content_test):
        raise ValueError(f"content train and test voices overlap: {sorted(set(content_train) & set(content_test))}")
    by_voice = {name: sorted((c for c in clips if c.voice == name), key=lambda c: c.prompt) for name in names}

    distill = {"train": [c for name in names if name != heldout for c in by_voice[name]], "heldout": by_voice[heldout]}

    # Speaker ID, as distill.corpora.synthetic_speaker.plan_voxceleb1 writes it: speakers id10001... in table order,
    # the last max(2, n // 10) in test/wav (VoxCeleb1's verification-test speakers), one "video" per speaker and split.
    n_test = max(2, len(names) // 10)
    sid = []
    for i, name in enumerate(names):
        speaker_id, subset = f"id{10001 + i}", "test" if i >= len(names) - n_test else "dev"
        by_split: dict[int, list[Clip]] = {1: [], 2: [], 3: []}
        for clip in by_voice[name]:
            fraction = _fraction(f"sid/{clip.prompt}")
            by_split[1 if fraction < SID_SPLIT[0] else 2 if fraction < SID_SPLIT[1] else 3].append(clip)
        for split, chosen in by_split.items():
            video = _video_id(f"{name}/{split}")
            sid += [(clip, split, f"{speaker_id}/{video}/{n + 1:05d}.wav", subset) for n, clip in enumerate(chosen)]

    # Content: dev takes ~15% of the training voices' recordings, but never a label's last training recording.
    content: dict[str, list[tuple[Clip, str, str]]] = {"train": [], "valid": [], "test": []}
    dropped: list[tuple[Clip, str]] = []
    by_label: dict[tuple[str, str], list[Clip]] = {}
    for name in content_train:
        for clip in by_voice[name]:
            if clip.label is not None:
                by_label.setdefault(clip.label, []).append(clip)
    for (kind, symbol), group in sorted(by_label.items()):
        ranked = sorted(group, key=lambda c: _fraction(f"content/{c.voice}/{kind}/{symbol}"))
        to_dev = [c for c in ranked if _fraction(f"content/{c.voice}/{kind}/{symbol}") < CONTENT_DEV_FRACTION]
        if len(to_dev) == len(ranked):
            to_dev = to_dev[:-1]
        content["valid"] += [(c, kind, symbol) for c in to_dev]
        content["train"] += [(c, kind, symbol) for c in ranked if c not in to_dev]
    trained = {(kind, symbol) for _, kind, symbol in content["train"]}
    for name in content_test:
        for clip in by_voice[name]:
            if clip.label is None:
                continue
            if clip.label in trained:
                content["test"].append((clip, *clip.label))
            else:
                dropped.append((clip, f"label {clip.label[0]} {clip.label[1]} has no training recording"))
    for split in content:
        content[split].sort(key=lambda item: (item[0].voice, item[1], item[2]))
    return Layout(distill, sid, content, dropped)


def _counts(clips: Iterable[Clip]) -> dict[str, dict[str, float]]:
    counts: dict[str, dict[str, float]] = {}
    for clip in clips:
        entry = counts.setdefault(clip.voice, {"files": 0, "seconds": 0.0})
        entry["files"] += 1
        entry["seconds"] += clip.seconds
    return {voice: {"files": int(e["files"]), "seconds": round(e["seconds"], 1)} for voice, e in sorted(counts.items())}


def build_manifest(layout: Layout, skipped: Mapping[str, list[tuple[str, str]]], versions: Mapping[str, str]) -> dict:
    """manifest.json: the voices (package versions, credits, licences), the splits, files and seconds per layout,
    split and voice, and every dropped or skipped recording with its reason."""
    sid_names = {1: "train", 2: "dev", 3: "test"}
    speaker_ids = {clip.voice: rel.split("/")[0] for clip, _, rel, _ in layout.sid}
    return {
        "layout_version": LAYOUT_VERSION,
        "sample_rate": SAMPLE_RATE,
        "voices": [{"name": v.name, "package": v.package, "version": versions.get(v.package, "unknown"),
                    "folder": str(SOUNDS_DIR / v.folder), "language": v.language, "speaker": v.speaker,
                    "licence": v.licence, "sid_speaker": speaker_ids.get(v.name)} for v in VOICES],
        "splits": {"distill_heldout": HELDOUT_VOICE, "content_train_voices": list(CONTENT_TRAIN_VOICES),
                   "content_test_voices": list(CONTENT_TEST_VOICES), "sid_fractions": [round(f, 2) for f in (SID_SPLIT[0], SID_SPLIT[1] - SID_SPLIT[0], 1 - SID_SPLIT[1])],
                   "content_dev_fraction": CONTENT_DEV_FRACTION,
                   "content_classes": [f"number_{n}" for n in NUMBERS] + [f"letter_{c}" for c in LETTERS]},
        "distill": {split: _counts(clips) for split, clips in layout.distill.items()},
        "voxceleb1": {name: _counts(clip for clip, s, _, _ in layout.sid if s == code)
                      for code, name in sid_names.items()},
        "fluent_commands": {split: _counts(clip for clip, _, _ in items) for split, items in layout.content.items()},
        # the test recordings of the most frequent test label: a fixed answer scores at most this / test files
        "content_test_majority": max(Counter((k, x) for _, k, x in layout.content["test"]).values(), default=0),
        "content_dropped": [{"voice": c.voice, "prompt": c.prompt, "reason": why} for c, why in layout.dropped],
        "skipped": {voice: [{"prompt": p, "reason": r} for p, r in sorted(items)] for voice, items in skipped.items()},
    }


def _table(section: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    splits = list(section)
    voices = sorted({voice for counts in section.values() for voice in counts})
    lines = ["| voice | " + " | ".join(f"{s} files | {s} min" for s in splits) + " |",
             "|---|" + "---:|---:|" * len(splits)]
    for voice in voices:
        cells = []
        for s in splits:
            entry = section[s].get(voice)
            cells += [str(entry["files"]), f"{entry['seconds'] / 60:.1f}"] if entry else ["", ""]
        lines.append(f"| {voice} | " + " | ".join(cells) + " |")
    totals = []
    for s in splits:
        totals += [str(sum(e["files"] for e in section[s].values())),
                   f"{sum(e['seconds'] for e in section[s].values()) / 60:.1f}"]
    lines.append("| **all** | " + " | ".join(totals) + " |")
    return "\n".join(lines) + "\n"


def render_readme(manifest: Mapping) -> str:
    """The root's README.md, written from the manifest."""
    voices = manifest["voices"]
    sources = "\n".join(f"| {v['name']} | {v['sid_speaker']} | {v['package']} {v['version']} | `{v['folder']}` | "
                        f"{v['speaker']} | {v['licence']} |" for v in voices)
    reasons: dict[str, int] = {}  # by kind: "duplicate (same bytes as X)" -> "duplicate"
    for items in manifest["skipped"].values():
        for item in items:
            kind = item["reason"].split(" (")[0]
            reasons[kind] = reasons.get(kind, 0) + 1
    skipped = "\n".join(f"- {reason}: {n}" for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
    n_classes = len(manifest["splits"]["content_classes"])
    n_test = sum(entry["files"] for entry in manifest["fluent_commands"]["test"].values())
    return f"""# Asterisk telephone-prompt speech (gendistiller fetch asterisk-speech)

Human recordings of Asterisk's telephone prompts in seven voices (four languages), from Debian packages, resampled
from 8 kHz to 16 kHz mono 16-bit WAV with sox, with each file's DC offset removed (it_IT_f_Menardi sits on offsets
up to 0.11 of full scale, fr_FR_f_Armelle up to 0.03: a cue to the voice that is not speech); no cropping, no other
processing. Built by `gendistiller fetch asterisk-speech` (distill/corpora/real_speech.py); `manifest.json` has every count
below, the skipped files and the reason for each. The licences ask that the copyright notices travel with the
audio: they are in `licenses/` (the packages' Debian copyright files).

| voice | SID speaker | package | folder in the package | speaker (credit) | licence |
|---|---|---|---|---|---|
{sources}

The it_IT_f_Menardi licence (CC BY-SA 3.0 Italy) adds a condition for attribution: wherever the recordings are
distributed, say visibly that they were made by Marco Menardi and Paola Dal Zot and give http://www.voip.ammdomus.it.

Skipped (not speech or not usable):
{skipped}

## distill/ — distillation audio

`distill/train/<voice>/*.wav` (every voice but {manifest['splits']['distill_heldout']}) and
`distill/heldout/{manifest['splits']['distill_heldout']}/*.wav`, for fidelity evaluation only. Italian is in training
(it_IT_m_Carlo), so the held-out measure is about an unseen speaker, not an unseen language; the held-out voice is
also a test voice of the content task. File names are the prompt paths with `/` written as `__`.
Note: the other voices' SID and content test recordings are in distill/train, so a student has heard them (without
labels); only the held-out voice is wholly unseen.

{_table(manifest['distill'])}
## voxceleb1/ — speaker identification (s3prl `-d voxceleb1`, `superb-sweep --corpus ROOT --tasks sid`)

VoxCeleb1's layout as `gendistiller make-corpus` writes it: `{{dev,test}}/wav/idNNNNN/VIDEOID/NNNNN.wav` (the last two
speakers in test/wav), `iden_split.txt` ("1|2|3 idNNNNN/VIDEOID/NNNNN.wav": train, dev, test) and `veri_test.txt`
(200 trials among the test/wav speakers). Each voice's prompts are split ~70/15/15 by a SHA-1 hash of the prompt's
name alone, so a prompt recorded by several voices lands in the same split for all of them. One "video" per voice
and split.

{_table(manifest['voxceleb1'])}
## fluent_commands/ — spoken numbers and letters (s3prl `-d fluent_commands`, `superb-sweep --corpus ROOT --tasks ic`)

Which number (0-20, 30, 40 ... 90: `digits/N`) or letter (a-z: `letters/x`) a voice says: {n_classes} classes, one
recording per voice and class (es_CO_f_July records numbers only). Fluent Speech Commands' layout: 
`wavs/speakers/<voice>/<uuid>.wav` and `data/{{train,valid,test}}_data.csv`; action is `number` or `letter`, object
`number_7` / `letter_b`, location `none`; transcription holds the Asterisk prompt name. s3prl counts an answer right
when all three slots are, so accuracy is over the {n_classes} classes.
Training voices: {', '.join(manifest['splits']['content_train_voices'])}; valid: ~15% of their recordings (fixed by a
hash of voice and label; a label's last training recording is never taken). Test: {', '.join(manifest['splits']['content_test_voices'])},
voices never seen in this task's training, each of a language that has a training voice (Russian has one voice
only, so it trains). Digits and letter names are words of each language, so this is a cross-speaker task within
languages, not a language-independent one. It is small: about three training recordings per class, {n_test} test
recordings (a fixed answer scores at most {manifest['content_test_majority']}/{n_test}).

{_table(manifest['fluent_commands'])}"""
