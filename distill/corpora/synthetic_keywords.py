"""The Speech Commands v0.01 stand-in (keyword spotting): one-second command words, unknown words, silence and
background noise, with speaker hashes drawn so that s3prl's own train/dev split by file name keeps both subsets
non-empty. Layout and s3prl keys: the docstring of `distill.corpora.synthetic`.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from distill.corpora.synthetic_audio import NOISE_KINDS, Noise, Plan, draw_speakers
from distill.corpora.synthetic_texts import COMMANDS, UNKNOWN_WORDS, choice
from distill.io.audio import SAMPLE_RATE


def _speech_commands_bucket(name: str) -> str:
    """Where s3prl's speech_commands split_dataset puts a file name: 'dev', 'test' (dropped) or 'train'."""
    speaker = re.sub(r"_nohash_.*$", "", name)
    max_per_class = 2**27 - 1
    percent = (int(hashlib.sha1(speaker.encode()).hexdigest(), 16) % (max_per_class + 1)) * (100.0 / max_per_class)
    return "dev" if percent < 10 else "test" if percent < 20 else "train"


def _speaker_hash(rng: np.random.Generator, bucket: str, taken: set[str]) -> str:
    while True:
        candidate = rng.bytes(4).hex()
        if candidate not in taken and _speech_commands_bucket(f"{candidate}_nohash_0.wav") == bucket:
            taken.add(candidate)
            return candidate


def plan_speech_commands(part: Path, size: dict[str, int], rng: np.random.Generator) -> Plan:
    plan = Plan()
    train, test = part / "train", part / "test"
    unknown = [UNKNOWN_WORDS[i] for i in sorted(rng.choice(len(UNKNOWN_WORDS), size["unknown_words"], replace=False))]
    groups = {"train": size["train_speakers"], "dev": size["dev_speakers"], "test": size["test_speakers"]}
    speakers = iter(draw_speakers(rng, sum(groups.values())))
    taken: set[str] = set()
    dev_files = []
    for group, count in groups.items():
        for _ in range(count):
            speaker, code = next(speakers), _speaker_hash(rng, "dev" if group == "dev" else "train", taken)
            root = test if group == "test" else train
            for word in COMMANDS:
                for take in range(size["takes"]):
                    path = root / word / f"{code}_nohash_{take}.wav"
                    plan.audio.append(speaker.say(rng, path, word, length=SAMPLE_RATE))
                    if group == "dev":
                        dev_files.append(path.relative_to(train).as_posix())
            # A test speaker says `takes` of the unknown words, so `_unknown_` is about 1/12 of the test set as in
            # v0.01 (all of them would make it the majority class: always answering `_unknown_` scored 48%).
            said = unknown if group != "test" else [unknown[i] for i in sorted(rng.choice(len(unknown), size["takes"], replace=False))]
            for k, word in enumerate(said):
                path = (test / "_unknown_" / f"{code}_nohash_{k}.wav" if group == "test"
                        else train / word / f"{code}_nohash_0.wav")
                plan.audio.append(speaker.say(rng, path, word, length=SAMPLE_RATE))
                if group == "dev":
                    dev_files.append(path.relative_to(train).as_posix())
            if group == "test":  # one second of background noise per take, as in the v0.01 test set
                for take in range(size["takes"]):
                    plan.audio.append(Noise(test / "_silence_" / f"{code}_nohash_{take}.wav",
                                            choice(rng, NOISE_KINDS), 1.0, float(rng.uniform(0.002, 0.05)),
                                            int(rng.integers(2**31))))
    for i in range(size["noises"]):
        kind = NOISE_KINDS[i % len(NOISE_KINDS)]
        name = f"{kind}_noise.wav" if i < len(NOISE_KINDS) else f"{kind}_noise_{i // len(NOISE_KINDS)}.wav"
        plan.audio.append(Noise(train / "_background_noise_" / name, kind, float(size["noise_seconds"]),
                                float(rng.uniform(0.01, 0.1)), int(rng.integers(2**31))))
    plan.files[train / "validation_list.txt"] = "".join(f"{f}\n" for f in sorted(dev_files))
    plan.files[train / "testing_list.txt"] = ""  # the test set is the separate test tree
    return plan
