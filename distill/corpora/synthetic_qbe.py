"""The QUESST 2014 stand-in (query by example): spoken single-word queries searched in spoken sentences, in the
quesst14Database layout with the scoring kit's RTTM, ECF and term lists. Layout and s3prl keys: the docstring of
`distill.corpora.synthetic`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from distill.corpora.synthetic_audio import Plan, draw_speakers
from distill.corpora.synthetic_texts import lexicon, sentence

# QUESST 2014 stand-in: spoken single-word queries searched in spoken sentences; the words come from the LibriSpeech
# stand-in's lexicon, so a document contains a query when its sentence contains the word.
_QUERY_WORDS = ("GARDEN", "RIVER", "FOREST", "WINDOW", "LETTER", "CAPTAIN", "VILLAGE", "SOLDIER", "DOCTOR", "FATHER",
                "MOTHER", "STRANGE", "GENTLE", "QUIETLY", "MORNING", "EVENING", "HORSE", "KING", "CITY", "WATER")


def plan_quesst14(part: Path, size: dict[str, int], rng: np.random.Generator) -> Plan:
    """quesst14Database layout: Audio/ (documents), dev_queries/, eval_queries/, scoring/language_key_*.lst and
    scoring/groundtruth_quesst14_{dev,eval}/ with the RTTM (LEXEME lines: document, query), ECF (documents) and
    term list (queries) of the real scoring kit."""
    plan = Plan()
    speakers = draw_speakers(rng, size["speakers"])
    words = [word for word in _QUERY_WORDS if word in lexicon()]
    docs = []
    for n in range(size["documents"]):
        text = sentence(rng)
        name = f"quesst14_{n + 1:05d}"
        plan.audio.append(speakers[int(rng.integers(1, len(speakers)))].say(rng, part / "Audio" / f"{name}.wav", text.lower()))
        docs.append((name, set(text.split())))
    keys = [f"quesst14Database/Audio/{name}.wav nnenglish\n" for name, _ in docs]
    plan.files[part / "scoring" / "language_key_utterances.lst"] = "".join(keys)
    chosen = [words[i] for i in rng.permutation(len(words))[: 2 * size["queries"]].tolist()]
    for split, query_words in (("dev", chosen[: size["queries"]]), ("eval", chosen[size["queries"]:])):
        names = [f"quesst14_{split}_{n + 1:04d}" for n in range(len(query_words))]
        for name, word in zip(names, query_words):
            plan.audio.append(speakers[0].say(rng, part / f"{split}_queries" / f"{name}.wav", word.lower(), pad=(0.05, 0.1)))
        plan.files[part / "scoring" / f"language_key_{split}.lst"] = "".join(
            f"quesst14Database/{split}_queries/{name}.wav nnenglish\n" for name in names)
        truth = part / "scoring" / f"groundtruth_quesst14_{split}"
        plan.files[truth / f"quesst14_{split}.rttm"] = "".join(
            f"LEXEME {doc} 1 0.000 0.000 {name} <NA> <NA> <NA>\n"
            for name, word in zip(names, query_words) for doc, doc_words in docs if word in doc_words)
        plan.files[truth / f"quesst14_{split}.ecf.xml"] = (
            '<ecf source_signal_duration="0" language="english" version="gendistiller">\n' + "".join(
                f'  <excerpt audio_filename="Audio/{doc}.wav" channel="1" tbeg="0.000" dur="0.000" source_type="splitcts"/>\n'
                for doc, _ in docs) + "</ecf>\n")
        plan.files[truth / f"quesst14_{split}.tlist.xml"] = (
            f'<termlist ecf_filename="quesst14_{split}.ecf.xml" language="english" version="gendistiller">\n' + "".join(
                f'  <term termid="{name}"><termtext>{word.lower()}</termtext></term>\n'
                for name, word in zip(names, query_words)) + "</termlist>\n")
    return plan
