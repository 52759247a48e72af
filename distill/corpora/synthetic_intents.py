"""The intent parts: the Fluent Speech Commands stand-in (intent classification: its 31 intents, several phrasings
each, unseen speakers in valid/test) and the SNIPS stand-in (slot filling: spoken commands with a slot tag per
word). Layouts and s3prl keys: the docstring of `distill.corpora.synthetic`.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from distill.corpora.synthetic_audio import Plan, draw_speakers
from distill.corpora.synthetic_texts import SNIPS_SLOTS, choice, fluent_intents, snips_command


def plan_fluent_commands(part: Path, size: dict[str, int], rng: np.random.Generator) -> Plan:
    plan = Plan()
    intents = fluent_intents()
    groups = {"train": size["train_speakers"], "valid": size["valid_speakers"], "test": size["test_speakers"]}
    speakers = iter(draw_speakers(rng, sum(groups.values())))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    for group, count in groups.items():
        rows = []
        for _ in range(count):
            speaker, speaker_id = next(speakers), "".join(choice(rng, alphabet) for _ in range(16))
            for _take in range(size["takes"]):
                said = range(len(intents)) if group == "train" else \
                    sorted(rng.permutation(len(intents))[:size["eval_intents"]].tolist())
                for (action, obj, location), phrasings in (intents[i] for i in said):
                    text = choice(rng, phrasings)
                    h = rng.bytes(16).hex()
                    rel = f"wavs/speakers/{speaker_id}/{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}.wav"
                    plan.audio.append(speaker.say(rng, part / rel, text))
                    rows.append([rel, speaker_id, text[0].upper() + text[1:], action, obj, location])
        plan.files[part / "data" / f"{group}_data.csv"] = _csv(
            ["", "path", "speakerId", "transcription", "action", "object", "location"],
            [[str(i), *row] for i, row in enumerate(rows)])
    return plan


def _csv(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


# SNIPS's audio version names its speakers after the Amazon Polly voices; the SF recipe splits them so.
SNIPS_SPEAKERS = {"train": ("Ivy", "Joanna", "Joey", "Justin", "Kendra", "Kimberly", "Matthew", "Salli"),
                  "valid": ("Aditi", "Amy", "Geraint", "Nicole"), "test": ("Brian", "Emma", "Raveena", "Russell")}


def plan_snips(part: Path, size: dict[str, int], rng: np.random.Generator) -> Plan:
    plan = Plan()
    iob, trans = [], []
    voices = iter(draw_speakers(rng, sum(len(names) for names in SNIPS_SPEAKERS.values())))
    for split, names in SNIPS_SPEAKERS.items():
        for name in names[: size[f"{split}_speakers"]]:
            speaker = next(voices)
            for n in range(size["utterances"]):
                text, line = snips_command(rng)
                uid = f"{name}-snips-{split}-{n}"
                plan.audio.append(speaker.say(rng, part / split / f"{uid}.wav", text.lower()))
                iob.append(f"{uid} {line}\n")
                trans.append(f"{uid} {text}\n")
    plan.files[part / "all.iob.snips.txt"] = "".join(iob)
    plan.files[part / "all-trans.txt"] = "".join(trans)
    plan.files[part / "slots.txt"] = "".join(f"{slot}\n" for slot in ("O", *SNIPS_SLOTS))  # first line: s3prl skips it
    plan.files[part / "character.txt"] = "".join(f"{c}\n" for c in " ABCDEFGHIJKLMNOPQRSTUVWXYZ'")
    return plan
