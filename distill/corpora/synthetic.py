"""A local mini-SUPERB: deterministic synthetic speech corpora in the real on-disk layouts.

No LibriSpeech, Speech Commands, VoxCeleb1, Fluent Speech Commands, IEMOCAP, SNIPS, LibriMix or QUESST 2014
can be downloaded here, so this module synthesises small stand-ins with espeak-ng (resampled to 16 kHz mono
16-bit with sox) and writes them in exactly the layouts s3prl 0.4.18's own downstream datasets read. A "speaker" is an espeak-ng
English voice + variant (e.g. `en-gb-scotland+f2`) with its own pitch and speaking rate; every clip gets a
little pitch/rate jitter, random level and a noise floor. Everything is drawn from `numpy` generators
seeded by `(seed, part)`, so the same seed gives byte-identical files, and building one part alone gives
the same files as building all of them.

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

import csv
import hashlib
import io
import itertools
import json
import re
import shutil
import subprocess
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

PARTS = ("librispeech", "speech_commands", "voxceleb1", "fluent_commands", "iemocap", "snips", "librimix", "quesst14")
SAMPLE_RATE = 16_000
MARKER = ".complete"  # written last: {"size", "seed", "version"}; a part without it is rebuilt
OWNER = ".gendistiller"  # written first and kept: marks a folder this module may delete and rebuild
# Generator version per part: bump a part's when its generated content changes, so old copies of it are rebuilt.
_VERSIONS = {"librispeech": 1, "speech_commands": 2, "voxceleb1": 2, "fluent_commands": 1, "iemocap": 1, "snips": 1,
             "librimix": 1, "quesst14": 1}


class CorpusError(RuntimeError):
    """A missing tool or a folder this module refuses to touch."""


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

# espeak-ng English voices and variants that exist in espeak-ng 1.51 (`espeak-ng --voices=en`,
# `--voices=variant`); a speaker is one (voice, variant) pair plus its own pitch and rate.
_VOICES = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan",
           "en-gb-x-gbcwmd")
_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2",
             "klatt3", "croak", "Andy", "Annie", "Alex", "aunty", "belinda", "benjamin", "edward", "iven",
             "john", "linda", "max", "michel", "paul", "quincy", "robert", "steph", "travis", "victor", "zac")


# ----------------------------------------------------------------------------------------------------------
# Synthesis


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise CorpusError(f"`{name}` was not found on PATH; the corpus builder needs it. Install the "
                          f"`{package}` package (Debian/Ubuntu: sudo apt-get install {package}).")
    return path


@dataclass(frozen=True)
class Speaker:
    voice: str  # espeak-ng voice with variant, e.g. "en-gb-scotland+f2"
    pitch: int  # espeak-ng -p, 0..99
    rate: int  # espeak-ng -s, words per minute

    def say(self, rng: np.random.Generator, path: Path, text: str, **kwargs) -> "Utterance":
        """One utterance by this speaker, with a little pitch/rate jitter and random level and noise."""
        return Utterance(
            path=path,
            text=text,
            voice=self.voice,
            pitch=int(np.clip(self.pitch + rng.integers(-4, 5), 0, 99)),
            rate=int(self.rate * rng.uniform(0.92, 1.08)),
            peak=float(rng.uniform(0.3, 0.9)),
            snr_db=float(rng.uniform(25.0, 45.0)),
            seed=int(rng.integers(2**31)),
            **kwargs,
        )


def _draw_speakers(rng: np.random.Generator, n: int) -> list[Speaker]:
    """n speakers, distinct (voice, variant) pairs first, with their own pitch (25..75) and rate (135..195)."""
    pairs = list(itertools.product(_VOICES, _VARIANTS))
    order = rng.permutation(len(pairs))
    speakers = []
    for i in range(n):
        voice, variant = pairs[order[i % len(pairs)]]
        speakers.append(Speaker(f"{voice}+{variant}", int(rng.integers(25, 76)), int(rng.integers(135, 196))))
    return speakers


@dataclass(frozen=True)
class Utterance:
    """A clip to synthesise: espeak-ng at 22.05 kHz -> sox (effects, 16 kHz) -> trim, level, noise, 16-bit."""

    path: Path
    text: str  # what espeak-ng says
    voice: str
    pitch: int
    rate: int
    peak: float  # peak level of the speech, full scale = 1
    snr_db: float  # white-noise floor relative to the speech RMS
    seed: int  # for the noise and the placement
    effects: tuple[str, ...] = ()  # sox effects applied before resampling (a "channel")
    length: int | None = None  # fixed length in samples (speech placed at a random offset); None: natural
    pad: tuple[float, float] = (0.05, 0.3)  # silence added on each side (seconds, uniform) when length is None
    word_gap: int = 0  # espeak-ng -g: extra pause between words, in units of 10 ms

    def render(self) -> np.ndarray:
        speech = _trim(_synthesize(self.text, self.voice, self.pitch, self.rate, self.effects, self.word_gap))
        if speech.size == 0:
            raise CorpusError(f"espeak-ng produced silence for {self.text!r} with voice {self.voice}")
        rng = np.random.default_rng(self.seed)
        speech = speech * (self.peak / np.abs(speech).max())
        if self.length is None:
            before, after = (int(rng.uniform(*self.pad) * SAMPLE_RATE) for _ in range(2))
            wav = np.concatenate([np.zeros(before, np.float32), speech, np.zeros(after, np.float32)])
        else:
            wav = np.zeros(self.length, np.float32)
            if speech.size >= self.length:
                start = (speech.size - self.length) // 2
                wav[:] = speech[start:start + self.length]
            else:
                offset = int(rng.integers(0, self.length - speech.size + 1))
                wav[offset:offset + speech.size] = speech
        rms = float(np.sqrt(np.mean(speech.astype(np.float64) ** 2)))
        noise = rng.standard_normal(wav.size) * rms * 10 ** (-self.snr_db / 20)
        return (wav + noise).astype(np.float32)


def _synthesize(text: str, voice: str, pitch: int, rate: int, effects: Sequence[str] = (), word_gap: int = 0) -> np.ndarray:
    """espeak-ng -> sox -> float32 mono 16 kHz. sox runs with -D (no dither), so the result is repeatable."""
    gap = ["-g", str(word_gap)] if word_gap else []
    espeak = subprocess.run([_tool("espeak-ng", "espeak-ng"), "-v", voice, "-p", str(pitch), "-s", str(rate), *gap,
                             "--stdout", text], capture_output=True)
    if espeak.returncode != 0 or len(espeak.stdout) <= 44:
        raise CorpusError(f"espeak-ng failed for voice {voice!r} and text {text!r}: "
                          f"{espeak.stderr.decode(errors='replace').strip() or 'no audio'}")
    headroom = ("gain", "-n", "-10") if effects else ()  # so that boosting filters cannot clip
    sox = subprocess.run([_tool("sox", "sox"), "-D", "-V1", "-t", "wav", "-", "-t", "raw", "-e", "floating-point",
                          "-b", "32", "-c", "1", "-r", str(SAMPLE_RATE), "-", *headroom, *effects,
                          "rate", str(SAMPLE_RATE)],
                         input=espeak.stdout, capture_output=True)
    if sox.returncode != 0:
        raise CorpusError(f"sox failed ({' '.join(effects) or 'no effects'}): {sox.stderr.decode(errors='replace')}")
    return np.frombuffer(sox.stdout, dtype="<f4").copy()


def _trim(wav: np.ndarray, threshold: float = 0.02) -> np.ndarray:
    """Cut leading and trailing silence (samples below threshold * peak)."""
    if wav.size == 0:
        return wav
    loud = np.flatnonzero(np.abs(wav) > threshold * np.abs(wav).max())
    return wav[loud[0]:loud[-1] + 1] if loud.size else wav[:0]


@dataclass(frozen=True)
class Noise:
    """A seeded background noise recording: white, pink, brown, hum (mains + harmonics) or tap (modulated band)."""

    path: Path
    kind: str
    seconds: float
    level: float  # RMS, full scale = 1
    seed: int

    def render(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        n = int(self.seconds * SAMPLE_RATE)
        white = rng.standard_normal(n)
        freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
        if self.kind == "white":
            wav = white
        elif self.kind in ("pink", "brown"):
            power = 0.5 if self.kind == "pink" else 1.0
            wav = np.fft.irfft(np.fft.rfft(white) / np.maximum(freqs, 20.0) ** power, n)
        elif self.kind == "hum":
            t = np.arange(n) / SAMPLE_RATE
            f0 = rng.choice([50.0, 60.0])
            wav = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 8))
            wav = wav + 0.3 * white
        elif self.kind == "tap":
            band = (freqs > 800) & (freqs < 4000)
            wav = np.fft.irfft(np.fft.rfft(white) * band, n)
            t = np.arange(n) / SAMPLE_RATE
            wav = wav * (1 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 6) * t))
        else:
            raise ValueError(f"unknown noise kind {self.kind!r}; expected white, pink, brown, hum or tap")
        wav = wav * (self.level / (np.sqrt(np.mean(wav**2)) + 1e-12))
        return wav.astype(np.float32)


_NOISE_KINDS = ("white", "pink", "brown", "hum", "tap")


def _write_audio(path: Path, wav: np.ndarray) -> int:
    """16-bit PCM, FLAC or WAV by suffix; returns the number of samples."""
    import soundfile

    pcm = np.clip(np.round(wav * 32767.0), -32768, 32767).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "FLAC" if path.suffix == ".flac" else "WAV"
    soundfile.write(str(path), pcm, SAMPLE_RATE, format=fmt, subtype="PCM_16")
    return int(pcm.size)


# ----------------------------------------------------------------------------------------------------------
# Text


# The LibriSpeech stand-in's whole vocabulary with CMUdict pronunciations (ARPAbet with stress, the phone
# set of s3prl's downstream/ctc/vocab/phoneme.txt), grouped by the role templates use them in.
_LEXICON: dict[str, dict[str, str]] = {
    "function": {
        "THE": "DH AH0", "A": "AH0", "AND": "AH0 N D", "WAS": "W AA1 Z", "VERY": "V EH1 R IY0",
        "THEN": "DH EH1 N", "IN": "IH0 N", "AT": "AE1 T",
    },
    "noun": {
        "MAN": "M AE1 N", "WOMAN": "W UH1 M AH0 N", "CHILD": "CH AY1 L D", "DOG": "D AO1 G", "CAT": "K AE1 T",
        "HORSE": "HH AO1 R S", "BIRD": "B ER1 D", "KING": "K IH1 NG", "GIRL": "G ER1 L", "BOY": "B OY1",
        "SHIP": "SH IH1 P", "HOUSE": "HH AW1 S", "GARDEN": "G AA1 R D AH0 N", "RIVER": "R IH1 V ER0",
        "FOREST": "F AO1 R AH0 S T", "ROAD": "R OW1 D", "WINDOW": "W IH1 N D OW0", "DOOR": "D AO1 R",
        "TABLE": "T EY1 B AH0 L", "LETTER": "L EH1 T ER0", "BOOK": "B UH1 K", "FIRE": "F AY1 ER0",
        "STONE": "S T OW1 N", "HILL": "HH IH1 L", "CITY": "S IH1 T IY0", "WATER": "W AO1 T ER0",
        "LIGHT": "L AY1 T", "FATHER": "F AA1 DH ER0", "MOTHER": "M AH1 DH ER0", "SOLDIER": "S OW1 L JH ER0",
        "DOCTOR": "D AA1 K T ER0", "CAPTAIN": "K AE1 P T AH0 N", "VILLAGE": "V IH1 L AH0 JH",
    },
    "adjective": {
        "OLD": "OW1 L D", "YOUNG": "Y AH1 NG", "LITTLE": "L IH1 T AH0 L", "GREAT": "G R EY1 T",
        "DARK": "D AA1 R K", "BRIGHT": "B R AY1 T", "QUIET": "K W AY1 AH0 T", "COLD": "K OW1 L D",
        "WARM": "W AO1 R M", "GREEN": "G R IY1 N", "WHITE": "W AY1 T", "RED": "R EH1 D", "TALL": "T AO1 L",
        "STRANGE": "S T R EY1 N JH", "GENTLE": "JH EH1 N T AH0 L", "HAPPY": "HH AE1 P IY0",
    },
    "transitive": {
        "SAW": "S AO1", "FOUND": "F AW1 N D", "WATCHED": "W AA1 CH T", "FOLLOWED": "F AA1 L OW0 D",
        "OPENED": "OW1 P AH0 N D", "CARRIED": "K AE1 R IY0 D", "LEFT": "L EH1 F T", "REACHED": "R IY1 CH T",
        "CALLED": "K AO1 L D", "HEARD": "HH ER1 D",
    },
    "intransitive": {
        "WALKED": "W AO1 K T", "STOOD": "S T UH1 D", "WAITED": "W EY1 T AH0 D", "SPOKE": "S P OW1 K",
        "RAN": "R AE1 N", "SAT": "S AE1 T", "LAUGHED": "L AE1 F T", "SMILED": "S M AY1 L D",
    },
    "preposition": {
        "ON": "AA1 N", "NEAR": "N IH1 R", "OVER": "OW1 V ER0", "UNDER": "AH1 N D ER0", "BY": "B AY1",
        "FROM": "F R AH1 M", "WITH": "W IH1 DH", "TO": "T UW1",
    },
    "possessive": {"HIS": "HH IH1 Z", "HER": "HH ER1", "THEIR": "DH EH1 R"},
    "adverb": {"SLOWLY": "S L OW1 L IY0", "QUICKLY": "K W IH1 K L IY0", "AGAIN": "AH0 G EH1 N"},
    "time": {"MORNING": "M AO1 R N IH0 NG", "EVENING": "IY1 V N IH0 NG", "NIGHT": "N AY1 T"},
}
_TEMPLATES = (
    "THE {adjective} {noun} {transitive} THE {noun}",
    "THE {noun} {transitive} A {adjective} {noun} {preposition} THE {noun}",
    "{possessive} {noun} {intransitive} {preposition} THE {adjective} {noun}",
    "THEN THE {noun} {intransitive} {adverb}",
    "IN THE {time} THE {adjective} {noun} {intransitive} {preposition} THE {noun}",
    "THE {noun} WAS VERY {adjective}",
    "A {adjective} {noun} AND A {adjective} {noun} {intransitive} {preposition} THE {noun}",
    "{possessive} {adjective} {noun} {transitive} THE {noun} AT {time}",
)
_PHONEMES = ["SIL", "SPN"] + [p + s for p in ("AA", "AE", "AH", "AO", "AW", "AY") for s in "012"] + \
    ["B", "CH", "D", "DH"] + [p + s for p in ("EH", "ER", "EY") for s in "012"] + ["F", "G", "HH"] + \
    [p + s for p in ("IH", "IY") for s in "012"] + ["JH", "K", "L", "M", "N", "NG"] + \
    [p + s for p in ("OW", "OY") for s in "012"] + ["P", "R", "S", "SH", "T", "TH"] + \
    [p + s for p in ("UH", "UW") for s in "012"] + ["V", "W", "Y", "Z", "ZH"]


def lexicon() -> dict[str, str]:
    """Every word the LibriSpeech stand-in uses -> its ARPAbet pronunciation."""
    return {word: phones for group in _LEXICON.values() for word, phones in group.items()}


def _sentence(rng: np.random.Generator) -> str:
    """One to three template clauses joined by AND, upper case like LibriSpeech transcripts."""
    clauses = []
    for _ in range(1 + int(rng.integers(3))):
        template = _TEMPLATES[rng.integers(len(_TEMPLATES))]
        clauses.append(re.sub(r"\{(\w+)\}", lambda m: _choice(rng, list(_LEXICON[m.group(1)])), template))
    return " AND ".join(clauses)


def _choice(rng: np.random.Generator, items: Sequence[str]) -> str:
    return items[int(rng.integers(len(items)))]


# Speech Commands v0.01: the 10 command words and the 20 auxiliary words that make up `_unknown_`.
COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN_WORDS = ("bed", "bird", "cat", "dog", "eight", "five", "four", "happy", "house", "marvin", "nine", "one",
                 "seven", "sheila", "six", "three", "tree", "two", "wow", "zero")


def fluent_intents() -> list[tuple[tuple[str, str, str], tuple[str, ...]]]:
    """The 31 (action, object, location) intents of Fluent Speech Commands, each with several phrasings."""
    intents: list[tuple[tuple[str, str, str], tuple[str, ...]]] = []
    intents.append((("change language", "none", "none"),
                    ("change language", "switch the language", "change the language please")))
    for lang in ("Chinese", "Korean", "English", "German"):
        intents.append((("change language", lang, "none"),
                        (f"switch to {lang}", f"change the language to {lang}", f"set my device to {lang}",
                         f"use {lang}")))
    for action, on, verb in (("activate", "on", "switch on"), ("deactivate", "off", "switch off")):
        intents.append(((action, "lamp", "none"), (f"turn {on} the lamp", f"{verb} the lamp", f"lamp {on}")))
        intents.append(((action, "lights", "none"), (f"turn {on} the lights", f"{verb} the lights", f"lights {on}")))
        for room in ("kitchen", "bedroom", "washroom"):
            intents.append(((action, "lights", room),
                            (f"turn {on} the lights in the {room}", f"{verb} the {room} lights",
                             f"{room} lights {on}")))
    intents.append((("activate", "music", "none"), ("play the music", "put on some music", "start the music")))
    intents.append((("deactivate", "music", "none"), ("stop the music", "pause the music", "turn the music off")))
    for action, way, comparative in (("increase", "up", "warmer"), ("decrease", "down", "cooler")):
        intents.append(((action, "heat", "none"),
                        (f"turn {way} the heat", f"{action} the heating", f"make it {comparative}")))
        for room in ("kitchen", "bedroom", "washroom"):
            intents.append(((action, "heat", room),
                            (f"turn {way} the heat in the {room}", f"make the {room} {comparative}",
                             f"{action} the temperature in the {room}")))
        loud = "louder" if action == "increase" else "quieter"
        intents.append(((action, "volume", "none"),
                        (f"turn {way} the volume", f"{action} the volume", f"make it {loud}", f"{loud} please")))
    for thing in ("newspaper", "juice", "socks", "shoes"):
        intents.append((("bring", thing, "none"), (f"bring me the {thing}", f"get me the {thing}",
                                                   f"fetch the {thing}", f"i need the {thing}")))
    assert len(intents) == 31, len(intents)
    return intents


# ----------------------------------------------------------------------------------------------------------
# Part planners: each returns the audio to render, the text files to write and an optional finishing step.


@dataclass
class _Plan:
    audio: list[Utterance | Noise | Mixture] = field(default_factory=list)
    files: dict[Path, str] = field(default_factory=dict)  # text files, written before the audio
    finish: Callable[[dict[Path, int]], dict[Path, str]] | None = None  # sample counts -> more text files


def _plan_librispeech(part: Path, size: dict[str, int], rng: np.random.Generator) -> _Plan:
    plan = _Plan()
    splits = {"train-clean-100": size["train_speakers"], "dev-clean": size["eval_speakers"],
              "test-clean": size["eval_speakers"]}
    n_speakers = sum(splits.values())
    ids = rng.choice(np.arange(100, 10000), size=n_speakers, replace=False)
    voices = iter(zip(ids.tolist(), _draw_speakers(rng, n_speakers)))
    for split, count in splits.items():
        for _ in range(count):
            speaker_id, speaker = next(voices)
            for chapter in sorted(rng.choice(np.arange(1000, 100000), size=size["chapters"], replace=False).tolist()):
                folder = part / split / str(speaker_id) / str(chapter)
                lines = []
                for n in range(size["utterances"]):
                    utt_id = f"{speaker_id}-{chapter}-{n:04d}"
                    text = _sentence(rng)
                    lines.append(f"{utt_id} {text}\n")
                    plan.audio.append(speaker.say(rng, folder / f"{utt_id}.flac", text.lower()))
                plan.files[folder / f"{speaker_id}-{chapter}.trans.txt"] = "".join(lines)
    plan.files[part / "lexicon.txt"] = "".join(f"{w} {p}\n" for w, p in sorted(lexicon().items()))
    plan.files[part / "phoneme.txt"] = "".join(f"{p}\n" for p in _PHONEMES)
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


def _plan_speech_commands(part: Path, size: dict[str, int], rng: np.random.Generator) -> _Plan:
    plan = _Plan()
    train, test = part / "train", part / "test"
    unknown = [UNKNOWN_WORDS[i] for i in sorted(rng.choice(len(UNKNOWN_WORDS), size["unknown_words"], replace=False))]
    groups = {"train": size["train_speakers"], "dev": size["dev_speakers"], "test": size["test_speakers"]}
    speakers = iter(_draw_speakers(rng, sum(groups.values())))
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
                                            _choice(rng, _NOISE_KINDS), 1.0, float(rng.uniform(0.002, 0.05)),
                                            int(rng.integers(2**31))))
    for i in range(size["noises"]):
        kind = _NOISE_KINDS[i % len(_NOISE_KINDS)]
        name = f"{kind}_noise.wav" if i < len(_NOISE_KINDS) else f"{kind}_noise_{i // len(_NOISE_KINDS)}.wav"
        plan.audio.append(Noise(train / "_background_noise_" / name, kind, float(size["noise_seconds"]),
                                float(rng.uniform(0.01, 0.1)), int(rng.integers(2**31))))
    plan.files[train / "validation_list.txt"] = "".join(f"{f}\n" for f in sorted(dev_files))
    plan.files[train / "testing_list.txt"] = ""  # the test set is the separate test tree
    return plan


_YOUTUBE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_CHANNELS = ((), ("lowpass", "3500"), ("highpass", "300"), ("bass", "+6"), ("treble", "-8"), ("lowpass", "5000"))


def _plan_voxceleb1(part: Path, size: dict[str, int], rng: np.random.Generator) -> _Plan:
    if size["videos"] < 3:
        raise ValueError(f"voxceleb1 needs at least 3 videos per speaker (train, dev, test), got {size['videos']}")
    plan = _Plan()
    n_test = max(2, size["speakers"] // 10)
    meta, test_files = [], {}
    for i, speaker in enumerate(_draw_speakers(rng, size["speakers"])):
        speaker_id = f"id{10001 + i}"
        subset = "test" if i >= size["speakers"] - n_test else "dev"
        for v in range(size["videos"]):
            video = "".join(_choice(rng, _YOUTUBE_ALPHABET) for _ in range(11))
            channel = _CHANNELS[int(rng.integers(len(_CHANNELS)))]
            level, snr = float(rng.uniform(0.3, 0.9)), float(rng.uniform(15.0, 40.0))
            split = 3 if v == size["videos"] - 1 else 2 if v == size["videos"] - 2 else 1
            for n in range(size["utterances"]):
                rel = f"{speaker_id}/{video}/{n + 1:05d}.wav"
                utt = speaker.say(rng, part / subset / "wav" / rel, _sentence(rng).lower(), effects=channel)
                plan.audio.append(replace(utt, peak=level * float(rng.uniform(0.8, 1.0)), snr_db=snr))
                meta.append(f"{split} {rel}\n")
                if subset == "test":
                    test_files.setdefault(speaker_id, []).append(rel)
    plan.files[part / "iden_split.txt"] = "".join(meta)
    plan.files[part / "veri_test.txt"] = _verification_trials(test_files, size["trials"], rng)
    return plan


def _verification_trials(files: dict[str, list[str]], count: int, rng: np.random.Generator) -> str:
    """VoxCeleb1's veri_test.txt: "1|0 idA/video/n.wav idB/video/n.wav", half target trials (same speaker, other
    recording), half non-target, drawn from the test speakers."""
    speakers = sorted(files)
    lines = []
    for n in range(count):
        first = speakers[n % len(speakers)]
        other = first if n % 2 == 0 else _choice(rng, [s for s in speakers if s != first])
        a = _choice(rng, files[first])
        b = _choice(rng, [f for f in files[other] if f != a])
        lines.append(f"{int(other == first)} {a} {b}\n")
    return "".join(lines)


def _plan_fluent_commands(part: Path, size: dict[str, int], rng: np.random.Generator) -> _Plan:
    plan = _Plan()
    intents = fluent_intents()
    groups = {"train": size["train_speakers"], "valid": size["valid_speakers"], "test": size["test_speakers"]}
    speakers = iter(_draw_speakers(rng, sum(groups.values())))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    for group, count in groups.items():
        rows = []
        for _ in range(count):
            speaker, speaker_id = next(speakers), "".join(_choice(rng, alphabet) for _ in range(16))
            for _take in range(size["takes"]):
                said = range(len(intents)) if group == "train" else \
                    sorted(rng.permutation(len(intents))[:size["eval_intents"]].tolist())
                for (action, obj, location), phrasings in (intents[i] for i in said):
                    text = _choice(rng, phrasings)
                    h = rng.bytes(16).hex()
                    rel = f"wavs/speakers/{speaker_id}/{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}.wav"
                    plan.audio.append(speaker.say(rng, part / rel, text))
                    rows.append([rel, speaker_id, text[0].upper() + text[1:], action, obj, location])
        plan.files[part / "data" / f"{group}_data.csv"] = _csv(
            ["", "path", "speakerId", "transcription", "action", "object", "location"],
            [[str(i), *row] for i, row in enumerate(rows)])
    return plan


# IEMOCAP's four SUPERB classes as espeak-ng speaking styles: pitch offset, rate factor, peak level, pause between
# words (10 ms units). Anger loud and fast, happiness high and lively, sadness low, slow, quiet and halting.
_EMOTIONS: dict[str, tuple[int, float, float, int]] = {
    "neu": (0, 1.0, 0.5, 0),
    "hap": (18, 1.15, 0.7, 0),
    "ang": (6, 1.3, 0.95, 0),
    "sad": (-16, 0.72, 0.25, 12),
}


def _plan_iemocap(part: Path, size: dict[str, int], rng: np.random.Generator) -> _Plan:
    """Five sessions of two speakers (F, M); the same sentences in each emotion's style. meta_data/SessionN holds the
    fold that tests on session N and trains on the other four, as s3prl's IEMOCAP preprocessing writes it."""
    plan = _Plan()
    speakers = iter(_draw_speakers(rng, 10))
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
                utt = speaker.say(rng, part / rel, _sentence(rng).lower())
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


# SNIPS-style spoken commands: (intent, template); {slot} fields are filled from _SNIPS_SLOTS and tagged.
_SNIPS_TEMPLATES = (
    ("PlayMusic", "PLAY {track} BY {artist}"),
    ("PlayMusic", "PUT ON SOME {genre} MUSIC"),
    ("GetWeather", "WHAT IS THE WEATHER IN {city} {timeRange}"),
    ("GetWeather", "WILL IT RAIN IN {city}"),
    ("BookRestaurant", "BOOK A TABLE FOR {party_size_number} AT {restaurant_name}"),
    ("AddToPlaylist", "ADD {track} TO MY {playlist} PLAYLIST"),
    ("RateBook", "GIVE {object_name} {rating_value} STARS"),
    ("SearchCreativeWork", "FIND THE MOVIE {object_name}"),
)
_SNIPS_SLOTS: dict[str, tuple[str, ...]] = {
    "track": ("YELLOW SUBMARINE", "BLUE MOON", "RIVER FLOWS", "GOLDEN HOUR"),
    "artist": ("THE BEATLES", "MILES DAVIS", "NORAH JONES", "DAFT PUNK"),
    "genre": ("JAZZ", "ROCK", "CLASSICAL", "FOLK"),
    "city": ("PARIS", "BOSTON", "TOKYO", "BERLIN"),
    "timeRange": ("TOMORROW", "TONIGHT", "THIS WEEKEND", "NEXT MONDAY"),
    "party_size_number": ("TWO", "THREE", "FOUR", "SIX"),
    "restaurant_name": ("THE RED LION", "BLUE GARDEN", "CASA ROSA", "THE OLD MILL"),
    "playlist": ("WORKOUT", "ROAD TRIP", "DINNER", "FOCUS"),
    "object_name": ("THE HOBBIT", "DUNE", "EMMA", "THE ODYSSEY"),
    "rating_value": ("ONE", "THREE", "FOUR", "FIVE"),
}
# SNIPS's audio version names its speakers after the Amazon Polly voices; the SF recipe splits them so.
SNIPS_SPEAKERS = {"train": ("Ivy", "Joanna", "Joey", "Justin", "Kendra", "Kimberly", "Matthew", "Salli"),
                  "valid": ("Aditi", "Amy", "Geraint", "Nicole"), "test": ("Brian", "Emma", "Raveena", "Russell")}


def snips_command(rng: np.random.Generator) -> tuple[str, str]:
    """(spoken text, SNIPS iob line body "BOS w1 .. wn EOS<TAB>O t1 .. tn INTENT"), a tag per word (slot or O)."""
    intent, template = _SNIPS_TEMPLATES[int(rng.integers(len(_SNIPS_TEMPLATES)))]
    words, tags = [], []
    for token in template.split():
        if token.startswith("{"):
            slot = token.strip("{}")
            value = _choice(rng, _SNIPS_SLOTS[slot]).split()
            words += value
            tags += [slot] * len(value)
        else:
            words.append(token)
            tags.append("O")
    return " ".join(words), f"BOS {' '.join(words)} EOS\tO {' '.join(tags)} {intent}"


def _plan_snips(part: Path, size: dict[str, int], rng: np.random.Generator) -> _Plan:
    plan = _Plan()
    iob, trans = [], []
    voices = iter(_draw_speakers(rng, sum(len(names) for names in SNIPS_SPEAKERS.values())))
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
    plan.files[part / "slots.txt"] = "".join(f"{slot}\n" for slot in ("O", *_SNIPS_SLOTS))  # first line: s3prl skips it
    plan.files[part / "character.txt"] = "".join(f"{c}\n" for c in " ABCDEFGHIJKLMNOPQRSTUVWXYZ'")
    return plan


@dataclass(frozen=True)
class Mixture:
    """Two speakers' utterances summed with an overlap (LibriMix-style): rendered parts placed at their offsets."""

    path: Path
    parts: tuple[tuple[Utterance, float], ...]  # (utterance, start in seconds)
    seconds: float

    def render(self) -> np.ndarray:
        wav = np.zeros(int(self.seconds * SAMPLE_RATE), np.float32)
        for utterance, start in self.parts:
            speech = utterance.render()
            begin = int(start * SAMPLE_RATE)
            wav[begin:begin + speech.size] += speech[: wav.size - begin]
        return wav


def _plan_librimix(part: Path, size: dict[str, int], rng: np.random.Generator) -> _Plan:
    """Two-speaker recordings with overlap, in the kaldi-style folders s3prl's diarization expert reads: wav.scp,
    segments, utt2spk, spk2utt, reco2dur and an RTTM of who speaks when. Speech is placed on a 0.1 s grid, with each
    utterance's length estimated from its text and rate, and rendered with that fixed length."""
    plan = _Plan()
    counts = {"train": size["train_mixtures"], "dev": size["eval_mixtures"], "test": size["eval_mixtures"]}
    speakers = _draw_speakers(rng, size["speakers"])
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
                utt = speakers[index].say(rng, folder / f"{rec}_{k}.wav", _sentence(rng).lower(),
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


# QUESST 2014 stand-in: spoken single-word queries searched in spoken sentences; the words come from the LibriSpeech
# stand-in's lexicon, so a document contains a query when its sentence contains the word.
_QUERY_WORDS = ("GARDEN", "RIVER", "FOREST", "WINDOW", "LETTER", "CAPTAIN", "VILLAGE", "SOLDIER", "DOCTOR", "FATHER",
                "MOTHER", "STRANGE", "GENTLE", "QUIETLY", "MORNING", "EVENING", "HORSE", "KING", "CITY", "WATER")


def _plan_quesst14(part: Path, size: dict[str, int], rng: np.random.Generator) -> _Plan:
    """quesst14Database layout: Audio/ (documents), dev_queries/, eval_queries/, scoring/language_key_*.lst and
    scoring/groundtruth_quesst14_{dev,eval}/ with the RTTM (LEXEME lines: document, query), ECF (documents) and
    term list (queries) of the real scoring kit."""
    plan = _Plan()
    speakers = _draw_speakers(rng, size["speakers"])
    words = [word for word in _QUERY_WORDS if word in lexicon()]
    docs = []
    for n in range(size["documents"]):
        text = _sentence(rng)
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


def _csv(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


_PLANNERS: dict[str, Callable[[Path, dict[str, int], np.random.Generator], _Plan]] = {
    "librispeech": _plan_librispeech,
    "speech_commands": _plan_speech_commands,
    "voxceleb1": _plan_voxceleb1,
    "fluent_commands": _plan_fluent_commands,
    "iemocap": _plan_iemocap,
    "snips": _plan_snips,
    "librimix": _plan_librimix,
    "quesst14": _plan_quesst14,
}


# ----------------------------------------------------------------------------------------------------------
# Building


def _render_and_write(item: Utterance | Noise | Mixture) -> int:
    return _write_audio(item.path, item.render())


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
    _tool("espeak-ng", "espeak-ng")
    _tool("sox", "sox")
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
