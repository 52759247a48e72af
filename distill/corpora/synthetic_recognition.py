"""The LibriSpeech stand-in (phoneme and speech recognition, and the distillation audio): speakers reading template
sentences, with the files s3prl's recipes take from outside its PyPI sdist (lexicon, phoneme and character
vocabularies, a fairseq character dictionary, the ASR bucketing tables). Layout and s3prl keys: the docstring of
`distill.corpora.synthetic`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from distill.corpora.synthetic_audio import Plan, draw_speakers
from distill.corpora.synthetic_texts import PHONEMES, lexicon, sentence


def plan_librispeech(part: Path, size: dict[str, int], rng: np.random.Generator) -> Plan:
    plan = Plan()
    splits = {"train-clean-100": size["train_speakers"], "dev-clean": size["eval_speakers"],
              "test-clean": size["eval_speakers"]}
    n_speakers = sum(splits.values())
    ids = rng.choice(np.arange(100, 10000), size=n_speakers, replace=False)
    voices = iter(zip(ids.tolist(), draw_speakers(rng, n_speakers)))
    for split, count in splits.items():
        for _ in range(count):
            speaker_id, speaker = next(voices)
            for chapter in sorted(rng.choice(np.arange(1000, 100000), size=size["chapters"], replace=False).tolist()):
                folder = part / split / str(speaker_id) / str(chapter)
                lines = []
                for n in range(size["utterances"]):
                    utt_id = f"{speaker_id}-{chapter}-{n:04d}"
                    text = sentence(rng)
                    lines.append(f"{utt_id} {text}\n")
                    plan.audio.append(speaker.say(rng, folder / f"{utt_id}.flac", text.lower()))
                plan.files[folder / f"{speaker_id}-{chapter}.trans.txt"] = "".join(lines)
    plan.files[part / "lexicon.txt"] = "".join(f"{w} {p}\n" for w, p in sorted(lexicon().items()))
    plan.files[part / "phoneme.txt"] = "".join(f"{p}\n" for p in PHONEMES)
    plan.files[part / "character.txt"] = "".join(f"{c}\n" for c in " ABCDEFGHIJKLMNOPQRSTUVWXYZ'")
    plan.files[part / "char.dict"] = _char_dict(line.split(" ", 1)[1] for path, text in plan.files.items()
                                                if path.name.endswith(".trans.txt") and "train-clean-100" in path.parts
                                                for line in text.splitlines())

    def finish(lengths: dict[Path, int]) -> dict[Path, str]:
        # s3prl/preprocess/generate_len_for_bucket.py's table: index, file_path (relative), length, label
        tables = {}
        for split in splits:
            rows = sorted(((p.relative_to(part).as_posix(), n) for p, n in lengths.items()
                           if p.relative_to(part).parts[0] == split), key=lambda r: (-r[1], r[0]))
            body = "".join(f"{i},{path},{n},\n" for i, (path, n) in enumerate(rows))
            tables[part / "len_for_bucket" / f"{split}.csv"] = ",file_path,length,label\n" + body
        return tables

    plan.finish = finish
    return plan


def _char_dict(transcripts: Iterable[str]) -> str:
    """A fairseq dictionary ("SYMBOL COUNT" lines, most frequent first) of letters and "|" (word boundary),
    like s3prl's downstream/asr/char.dict; every letter appears, with a count of at least 1."""
    counts = {c: 1 for c in "|ABCDEFGHIJKLMNOPQRSTUVWXYZ'"}
    for text in transcripts:
        for c in text.replace(" ", "|") + "|":
            counts[c] += 1
    return "".join(f"{c} {n}\n" for c, n in sorted(counts.items(), key=lambda item: -item[1]))
