"""The local mini-SUPERB: deterministic synthetic speech corpora in the real on-disk layouts, and their builder.

No LibriSpeech, Speech Commands, VoxCeleb1, Fluent Speech Commands, IEMOCAP, SNIPS, LibriMix or QUESST 2014
can be downloaded here, so small stand-ins are synthesised with espeak-ng (resampled to 16 kHz mono 16-bit with
sox) and written in exactly the layouts s3prl 0.4.18's own downstream datasets read. A "speaker" is an espeak-ng
English voice + variant (e.g. `en-gb-scotland+f2`) with its own pitch and speaking rate; every clip gets a
little pitch/rate jitter, random level and a noise floor. Everything is drawn from `numpy` generators
seeded by `(seed, part)`, so the same seed gives byte-identical files, and building one part alone gives
the same files as building all of them.

Each part has a planner, in one module per task family: `synthetic_recognition` (librispeech),
`synthetic_keywords` (speech_commands), `synthetic_speaker` (voxceleb1, librimix), `synthetic_intents`
(fluent_commands, snips), `synthetic_emotion` (iemocap) and `synthetic_qbe` (quesst14). A planner lists the clips
to render and the text files to write, built from `synthetic_audio` (speakers, espeak-ng/sox synthesis, noise,
mixtures) and `synthetic_texts` (lexicon, templates, commands, intents); this module runs the plans, marks the
part folders and points s3prl at them.

Layouts and the s3prl config keys that point at them (ROOT is the `build_corpus` root):

librispeech      ROOT/librispeech/{train-clean-100,dev-clean,test-clean}/SPK/CHAP/SPK-CHAP-NNNN.flac
                 + SPK-CHAP.trans.txt ("SPK-CHAP-NNNN UPPER CASE TEXT" lines). Extras that s3prl's
                 recipes take from files missing in its PyPI sdist:
                 lexicon.txt (ARPAbet, every corpus word), phoneme.txt and character.txt (vocabularies),
                 char.dict (fairseq dictionary) and len_for_bucket/<split>.csv (ASR bucketing table).
  -d ctc (PR, libriphone.yaml): downstream_expert.corpus.path = ROOT/librispeech,
      downstream_expert.corpus.lexicon = [ROOT/librispeech/lexicon.txt],
      downstream_expert.text.vocab_file = ROOT/librispeech/phoneme.txt (text.mode: word).
  -d ctc (librispeech.yaml, characters): corpus.path as above,
      downstream_expert.text.vocab_file = ROOT/librispeech/character.txt (text.mode: character).
  -d asr: downstream_expert.datarc.libri_root = ROOT/librispeech,
      downstream_expert.datarc.bucket_file = ROOT/librispeech/len_for_bucket,
      downstream_expert.datarc.dict_path = ROOT/librispeech/char.dict
      (the splits are the config's train / dev-clean / test-clean keys; no *-other splits are built).
  Distillation reads the *.flac files under ROOT/librispeech/train-clean-100.

speech_commands  ROOT/speech_commands/train/{yes,no,...,go,<unknown words>,_background_noise_}/HASH_nohash_N.wav
                 (1 s clips; `_background_noise_` holds longer seeded noise recordings) and
                 ROOT/speech_commands/test/{yes,...,go,_silence_,_unknown_}/HASH_nohash_N.wav.
  -d speech_commands: downstream_expert.datarc.speech_commands_root = ROOT/speech_commands/train,
      downstream_expert.datarc.speech_commands_test_root = ROOT/speech_commands/test.
  s3prl splits train/dev by a SHA-1 of the HASH part of each file name (10% dev, 10% dropped, 80% train);
  speaker hashes are drawn so that the dev speakers land in the dev bucket and the others in the train
  bucket, so both subsets are never empty. validation_list.txt (the dev files) and an empty
  testing_list.txt are written as in v0.01; s3prl does not read them.

voxceleb1        ROOT/voxceleb1/{dev,test}/wav/idNNNNN/VIDEOID/NNNNN.wav + ROOT/voxceleb1/iden_split.txt
                 ("1|2|3 idNNNNN/VIDEOID/NNNNN.wav": 1 train, 2 dev, 3 test). Speakers are id10001...; the
                 last ~10% sit in test/wav like the real verification-test speakers. Each "video" has its own
                 channel (level, noise, filtering); a speaker's last video is its test set, the one before
                 its dev set.
                 veri_test.txt: verification trials ("1|0 idA/.../n.wav idB/.../n.wav") among the test speakers.
  -d voxceleb1: downstream_expert.datarc.file_path = ROOT/voxceleb1,
      downstream_expert.datarc.meta_data = ROOT/voxceleb1/iden_split.txt.
  -d sv_voxceleb1 (ASV): downstream_expert.datarc.file_path = ROOT/voxceleb1,
      downstream_expert.datarc.{train,dev,test}_meta_data = ROOT/voxceleb1/veri_test.txt.
  Caveat (s3prl): SpeakerClassifiDataset caches its file lists in
  site-packages/s3prl/downstream/voxceleb1/.cache/{train,dev,test}.pkl and reuses them whatever
  file_path says: delete that folder after switching corpora or roots.

fluent_commands  ROOT/fluent_commands/wavs/speakers/SPEAKERID/UUID.wav +
                 ROOT/fluent_commands/data/{train,valid,test}_data.csv with the real columns
                 (index, path, speakerId, transcription, action, object, location); the 31 intents of
                 Fluent Speech Commands, several phrasings each; valid/test speakers are unseen in train.
  -d fluent_commands: downstream_expert.datarc.file_path = ROOT/fluent_commands.

iemocap          ROOT/iemocap/SessionN/sentences/wav/Ses0N{F,M}_improK/Ses0N{F,M}_improK_{F,M}NNN.wav and
                 ROOT/iemocap/meta_data/SessionN/{train,test}_meta_data.json ({"labels": {neu, hap, ang, sad},
                 "meta_data": [{path, label, speaker}]}): fold N tests on session N. Emotions are espeak-ng
                 speaking styles (pitch, rate, level, pauses between words) of the same kind of sentences.
  -d emotion: downstream_expert.datarc.root = ROOT/iemocap, downstream_expert.datarc.meta_data = ROOT/iemocap/meta_data.

snips            ROOT/snips/{train,valid,test}/SPEAKER-snips-SPLIT-N.wav (speakers named as the recipe's SNIPS
                 speakers), all.iob.snips.txt ("UID BOS words EOS<TAB>O tags INTENT", one slot name or O per
                 word), all-trans.txt, slots.txt and character.txt.
  -d ctc (SF, snips.yaml): downstream_expert.corpus.path = ROOT/snips,
      downstream_expert.text.vocab_file = ROOT/snips/character.txt, downstream_expert.text.slots_file = ROOT/snips/slots.txt.

librimix         Two-speaker recordings with overlap: ROOT/librimix/wav/{train,dev,test}/REC.wav and kaldi-style
                 ROOT/librimix/{train,dev,test}/{wav.scp,segments,utt2spk,spk2utt,reco2dur,rttm}.
  -d diarization: downstream_expert.loaderrc.{train,dev,test}_dir = ROOT/librimix/{train,dev,test}.

quesst14         QUESST 2014's quesst14Database layout: Audio/ (documents), {dev,eval}_queries/ (single spoken
                 words), scoring/language_key_{utterances,dev,eval}.lst (all "nnenglish") and
                 scoring/groundtruth_quesst14_{dev,eval}/quesst14_{dev,eval}.{rttm,ecf.xml,tlist.xml}.
  -d quesst14_dtw: downstream_expert.datarc.dataset_root = ROOT/quesst14.

`s3prl_overrides(part, path)` returns these keys as a dict for the runner's `-o` option.

Each part folder gets `.gendistiller` when its build starts and `.complete` (size, seed, generator version)
when it ends: a complete part is skipped, anything else of ours is deleted and rebuilt, and a non-empty
folder without `.gendistiller` is never touched.
"""
from __future__ import annotations

import json
import shutil
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from distill.corpora.synthetic_audio import CorpusError, Mixture, Noise, Plan, Utterance, write_audio
from distill.corpora.synthetic_emotion import plan_iemocap
from distill.corpora.synthetic_intents import plan_fluent_commands, plan_snips
from distill.corpora.synthetic_keywords import plan_speech_commands
from distill.corpora.synthetic_qbe import plan_quesst14
from distill.corpora.synthetic_recognition import plan_librispeech
from distill.corpora.synthetic_speaker import plan_librimix, plan_voxceleb1
from distill.corpora.system_tools import require_tool

PARTS = ("librispeech", "speech_commands", "voxceleb1", "fluent_commands", "iemocap", "snips", "librimix", "quesst14")
MARKER = ".complete"  # written last: {"size", "seed", "version"}; a part without it is rebuilt
OWNER = ".gendistiller"  # written first and kept: marks a folder this module may delete and rebuild
# Generator version per part: bump a part's when its generated content changes, so old copies of it are rebuilt.
_VERSIONS = {"librispeech": 1, "speech_commands": 2, "voxceleb1": 2, "fluent_commands": 1, "iemocap": 1, "snips": 1,
             "librimix": 1, "quesst14": 1}


# Corpus sizes. Each part builds from its own table; "tiny" is for tests (seconds), "default" is enough for
# KS / IC / SID downstreams to clearly beat chance and builds in about 2 minutes on 2 cores.
SIZES: dict[str, dict[str, dict[str, int]]] = {
    "tiny": {
        # speakers per split, chapters per speaker, utterances per chapter
        "librispeech": dict(train_speakers=3, eval_speakers=1, chapters=1, utterances=3),
        # speakers in the train (train/dev buckets) and test trees, repetitions of each command per
        # speaker, unknown words, background-noise files and their length in seconds
        "speech_commands": dict(train_speakers=6, dev_speakers=2, test_speakers=1, takes=1, unknown_words=2,
                                noises=2, noise_seconds=3),
        # speakers, videos per speaker (last = test, one before = dev, rest = train), utterances per video
        # ... and verification trials (veri_test.txt) among the test speakers
        "voxceleb1": dict(speakers=4, videos=3, utterances=2, trials=8),
        # speakers per split, repetitions of all 31 intents per train speaker, intents per valid/test speaker
        "fluent_commands": dict(train_speakers=1, valid_speakers=1, test_speakers=1, takes=1, eval_intents=8),
        # utterances per speaker and emotion (5 sessions x 2 speakers x 4 emotions)
        "iemocap": dict(utterances=1),
        # speakers per split (of the recipe's), commands per speaker
        "snips": dict(train_speakers=2, valid_speakers=1, test_speakers=1, utterances=4),
        # two-speaker recordings: training and per dev/test, and the speakers they are drawn from
        "librimix": dict(train_mixtures=4, eval_mixtures=2, speakers=4),
        # documents, queries per split (dev, eval), speakers (the first says the queries)
        "quesst14": dict(documents=12, queries=3, speakers=3),
    },
    "small": {
        "librispeech": dict(train_speakers=8, eval_speakers=2, chapters=2, utterances=5),
        "speech_commands": dict(train_speakers=16, dev_speakers=3, test_speakers=4, takes=2, unknown_words=10,
                                noises=4, noise_seconds=10),
        "voxceleb1": dict(speakers=12, videos=4, utterances=3, trials=40),
        "fluent_commands": dict(train_speakers=6, valid_speakers=2, test_speakers=2, takes=1, eval_intents=31),
        "iemocap": dict(utterances=3),
        "snips": dict(train_speakers=4, valid_speakers=2, test_speakers=2, utterances=10),
        "librimix": dict(train_mixtures=20, eval_mixtures=5, speakers=8),
        "quesst14": dict(documents=40, queries=6, speakers=5),
    },
    "default": {
        "librispeech": dict(train_speakers=24, eval_speakers=4, chapters=2, utterances=10),
        "speech_commands": dict(train_speakers=36, dev_speakers=6, test_speakers=8, takes=2, unknown_words=20,
                                noises=6, noise_seconds=20),
        "voxceleb1": dict(speakers=40, videos=5, utterances=4, trials=200),
        "fluent_commands": dict(train_speakers=16, valid_speakers=3, test_speakers=3, takes=2, eval_intents=31),
        "iemocap": dict(utterances=6),
        "snips": dict(train_speakers=8, valid_speakers=4, test_speakers=4, utterances=25),
        "librimix": dict(train_mixtures=60, eval_mixtures=12, speakers=16),
        "quesst14": dict(documents=100, queries=10, speakers=8),
    },
}


# One planner per part: (part folder, its size table, its generator) -> what to render and write.
_PLANNERS: dict[str, Callable[[Path, dict[str, int], np.random.Generator], Plan]] = {
    "librispeech": plan_librispeech,
    "speech_commands": plan_speech_commands,
    "voxceleb1": plan_voxceleb1,
    "fluent_commands": plan_fluent_commands,
    "iemocap": plan_iemocap,
    "snips": plan_snips,
    "librimix": plan_librimix,
    "quesst14": plan_quesst14,
}


# ----------------------------------------------------------------------------------------------------------
# Building


def _render_and_write(item: Utterance | Noise | Mixture) -> int:
    return write_audio(item.path, item.render())


def _marker(name: str, size: str, seed: int) -> str:
    return json.dumps({"size": size, "seed": seed, "version": _VERSIONS[name]}, sort_keys=True) + "\n"


def is_complete(part_dir: Path, size: str, seed: int) -> bool:
    """Whether `part_dir` holds a finished build of exactly this size, seed and generator version."""
    marker = part_dir / MARKER
    return marker.is_file() and marker.read_text() == _marker(part_dir.name, size, seed)


def _build_part(name: str, part_dir: Path, size: str, seed: int, workers: int, progress: bool) -> None:
    if part_dir.exists():
        if not (part_dir / OWNER).exists() and any(part_dir.iterdir()):
            raise CorpusError(f"{part_dir} exists, is not empty and was not built by `gendistiller make-corpus` "
                              f"(no {OWNER} file); refusing to overwrite it. Choose another root.")
        shutil.rmtree(part_dir)
    part_dir.mkdir(parents=True)
    (part_dir / OWNER).write_text("built by distill.corpora.synthetic (gendistiller make-corpus); may be deleted and rebuilt\n")

    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    plan = _PLANNERS[name](part_dir, SIZES[size][name], rng)
    _write_texts(plan.files)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(_render_and_write, plan.audio)
        if progress:
            from tqdm import tqdm

            results = tqdm(results, total=len(plan.audio), desc=f"{name} ({size})", unit="clip")
        lengths = dict(zip((item.path for item in plan.audio), results))
    if plan.finish is not None:
        _write_texts(plan.finish(lengths))
    (part_dir / MARKER).write_text(_marker(name, size, seed))


def _write_texts(files: dict[Path, str]) -> None:
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def build_corpus(root: Path, parts: Sequence[str] = PARTS, size: str = "default", seed: int = 0,
                 progress: bool = True, workers: int = 2) -> dict[str, Path]:
    """Build the requested parts under `root` (skipping parts already complete for this size and seed).

    Returns {part: its folder}. A part that is half built (interrupted) or built with another size/seed is
    deleted and rebuilt; a non-empty folder this module did not create raises `CorpusError`.
    """
    root = Path(root)
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"unknown corpus parts {unknown}; expected some of {list(PARTS)}")
    if size not in SIZES:
        raise ValueError(f"unknown corpus size {size!r}; expected one of {list(SIZES)}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    require_tool("espeak-ng", "espeak-ng", CorpusError)
    require_tool("sox", "sox", CorpusError)
    paths = {}
    for name in parts:
        part_dir = root / name
        if not is_complete(part_dir, size, seed):
            _build_part(name, part_dir, size, seed, workers, progress)
        paths[name] = part_dir
    return paths


def s3prl_overrides(part: str, path: Path) -> dict[str, dict[str, str | list[str]]]:
    """{s3prl downstream (-d): {config key: value}} pointing the experts at one part (see the module docstring)."""
    root = Path(path).resolve()
    keys: dict[str, dict[str, dict[str, str | list[str]]]] = {
        "librispeech": {
            "ctc": {"downstream_expert.corpus.path": str(root), "downstream_expert.corpus.lexicon": [str(root / "lexicon.txt")],
                    "downstream_expert.text.vocab_file": str(root / "phoneme.txt")},
            "asr": {"downstream_expert.datarc.libri_root": str(root),
                    "downstream_expert.datarc.bucket_file": str(root / "len_for_bucket"),
                    "downstream_expert.datarc.dict_path": str(root / "char.dict")}},
        "speech_commands": {"speech_commands": {"downstream_expert.datarc.speech_commands_root": str(root / "train"),
                                                "downstream_expert.datarc.speech_commands_test_root": str(root / "test")}},
        "voxceleb1": {
            "voxceleb1": {"downstream_expert.datarc.file_path": str(root),
                          "downstream_expert.datarc.meta_data": str(root / "iden_split.txt")},
            # ASV trains on every dev/wav speaker; its train/dev meta files are read but not used by s3prl 0.4.18
            "sv_voxceleb1": {"downstream_expert.datarc.file_path": str(root),
                             **{f"downstream_expert.datarc.{split}_meta_data": str(root / "veri_test.txt")
                                for split in ("train", "dev", "test")}}},
        "fluent_commands": {"fluent_commands": {"downstream_expert.datarc.file_path": str(root)}},
        "iemocap": {"emotion": {"downstream_expert.datarc.root": str(root),
                                "downstream_expert.datarc.meta_data": str(root / "meta_data")}},
        "snips": {"ctc": {"downstream_expert.corpus.path": str(root),
                          "downstream_expert.text.vocab_file": str(root / "character.txt"),
                          "downstream_expert.text.slots_file": str(root / "slots.txt")}},
        "librimix": {"diarization": {f"downstream_expert.loaderrc.{split}_dir": str(root / split)
                                     for split in ("train", "dev", "test")}},
        "quesst14": {"quesst14_dtw": {"downstream_expert.datarc.dataset_root": str(root)}},
    }
    if part not in keys:
        raise ValueError(f"unknown corpus part {part!r}; expected one of {list(keys)}")
    return keys[part]
