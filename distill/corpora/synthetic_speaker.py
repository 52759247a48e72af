"""The speaker parts: the VoxCeleb1 stand-in (speaker identification and verification), each speaker's "videos" with
their own channel, and the LibriMix stand-in (diarization), two-speaker recordings with overlap in kaldi-style
folders. Layouts and s3prl keys: the docstring of `distill.corpora.synthetic`.

`verification_trials` writes VoxCeleb1's veri_test.txt for this corpus and for the human voices of
`distill.corpora.real_speech`.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from distill.corpora.synthetic_audio import Mixture, Plan, draw_speakers
from distill.corpora.synthetic_texts import choice, sentence
from distill.io.audio import SAMPLE_RATE

# The characters of a YouTube video id: VoxCeleb1's VIDEOID folder names.
YOUTUBE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# sox effects that give each "video" its own channel
_CHANNELS = ((), ("lowpass", "3500"), ("highpass", "300"), ("bass", "+6"), ("treble", "-8"), ("lowpass", "5000"))


def plan_voxceleb1(part: Path, size: dict[str, int], rng: np.random.Generator) -> Plan:
    if size["videos"] < 3:
        raise ValueError(f"voxceleb1 needs at least 3 videos per speaker (train, dev, test), got {size['videos']}")
    plan = Plan()
    n_test = max(2, size["speakers"] // 10)
    meta, test_files = [], {}
    for i, speaker in enumerate(draw_speakers(rng, size["speakers"])):
        speaker_id = f"id{10001 + i}"
        subset = "test" if i >= size["speakers"] - n_test else "dev"
        for v in range(size["videos"]):
            video = "".join(choice(rng, YOUTUBE_ALPHABET) for _ in range(11))
            channel = _CHANNELS[int(rng.integers(len(_CHANNELS)))]
            level, snr = float(rng.uniform(0.3, 0.9)), float(rng.uniform(15.0, 40.0))
            split = 3 if v == size["videos"] - 1 else 2 if v == size["videos"] - 2 else 1
            for n in range(size["utterances"]):
                rel = f"{speaker_id}/{video}/{n + 1:05d}.wav"
                utt = speaker.say(rng, part / subset / "wav" / rel, sentence(rng).lower(), effects=channel)
                plan.audio.append(replace(utt, peak=level * float(rng.uniform(0.8, 1.0)), snr_db=snr))
                meta.append(f"{split} {rel}\n")
                if subset == "test":
                    test_files.setdefault(speaker_id, []).append(rel)
    plan.files[part / "iden_split.txt"] = "".join(meta)
    plan.files[part / "veri_test.txt"] = verification_trials(test_files, size["trials"], rng)
    return plan


def verification_trials(files: dict[str, list[str]], count: int, rng: np.random.Generator) -> str:
    """VoxCeleb1's veri_test.txt: "1|0 idA/video/n.wav idB/video/n.wav", half target trials (same speaker, other
    recording), half non-target, drawn from the test speakers."""
    speakers = sorted(files)
    lines = []
    for n in range(count):
        first = speakers[n % len(speakers)]
        other = first if n % 2 == 0 else choice(rng, [s for s in speakers if s != first])
        a = choice(rng, files[first])
        b = choice(rng, [f for f in files[other] if f != a])
        lines.append(f"{int(other == first)} {a} {b}\n")
    return "".join(lines)


def plan_librimix(part: Path, size: dict[str, int], rng: np.random.Generator) -> Plan:
    """Two-speaker recordings with overlap, in the kaldi-style folders s3prl's diarization expert reads: wav.scp,
    segments, utt2spk, spk2utt, reco2dur and an RTTM of who speaks when. Speech is placed on a 0.1 s grid, with each
    utterance's length estimated from its text and rate, and rendered with that fixed length."""
    plan = Plan()
    counts = {"train": size["train_mixtures"], "dev": size["eval_mixtures"], "test": size["eval_mixtures"]}
    speakers = draw_speakers(rng, size["speakers"])
    for split, count in counts.items():
        folder = part / split
        scp, segments, utt2spk, reco2dur, rttm = [], [], [], [], []
        spk2utt: dict[str, list[str]] = {}
        for m in range(count):
            rec = f"{split}_mix{m:03d}"
            pair = rng.choice(len(speakers), 2, replace=False)
            first = float(np.round(rng.uniform(0.2, 0.5), 1))
            duration = float(np.round(rng.uniform(2.0, 3.0), 1))
            second = float(np.round(first + duration * rng.uniform(0.5, 0.9), 1))
            pieces = []
            for k, (index, start) in enumerate(zip(pair.tolist(), (first, second))):
                spk = f"spk{index:03d}"
                seconds = duration if k == 0 else float(np.round(rng.uniform(2.0, 3.0), 1))
                utt = speakers[index].say(rng, folder / f"{rec}_{k}.wav", sentence(rng).lower(),
                                          length=int(seconds * SAMPLE_RATE))
                pieces.append((utt, start))
                seg = f"{rec}_{spk}_{k}"
                segments.append(f"{seg} {rec} {start:.2f} {start + seconds:.2f}\n")
                utt2spk.append(f"{seg} {spk}\n")
                spk2utt.setdefault(spk, []).append(seg)
                rttm.append(f"SPEAKER {rec} 1 {start:.2f} {seconds:.2f} <NA> <NA> {spk} <NA> <NA>\n")
            total = float(np.round(max(start + utt.length / SAMPLE_RATE for utt, start in pieces) + 0.3, 1))
            wav_path = (part / "wav" / split / f"{rec}.wav").resolve()
            plan.audio.append(Mixture(wav_path, tuple(pieces), total))
            scp.append(f"{rec} {wav_path}\n")
            reco2dur.append(f"{rec} {total:.2f}\n")
        plan.files.update({folder / "wav.scp": "".join(scp), folder / "segments": "".join(segments),
                           folder / "utt2spk": "".join(utt2spk), folder / "reco2dur": "".join(reco2dur),
                           folder / "rttm": "".join(rttm),
                           folder / "spk2utt": "".join(f"{s} {' '.join(u)}\n" for s, u in sorted(spk2utt.items()))})
    return plan
