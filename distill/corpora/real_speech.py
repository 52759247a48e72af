"""Human speech for development, fetched once into a cache folder: seven voices of Asterisk's telephone prompts.

Nothing else in the project needs this: the demo and the tests run offline on `distill.corpora.synthetic`'s synthetic
corpora. `gendistiller fetch asterisk-speech [--cache DIR]` calls `fetch_asterisk_speech`.

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

The voices are listed in `distill.corpora.real_speech_voices`; the splits (all fixed, from SHA-1 hashes of names)
and the manifest and README that describe them are made in `distill.corpora.real_speech_layout`.

Folders are marked like `distill.corpora.synthetic`'s parts: `.gendistiller` when a build starts, `.complete` when it ends; a
complete folder is not redone, an incomplete one of ours is rebuilt, a foreign non-empty one is never touched.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from distill.corpora.fetching import FetchError, last_line
from distill.corpora.real_speech_layout import LAYOUT_VERSION, build_manifest, plan_layout, render_readme
from distill.corpora.real_speech_voices import (
    CONTENT_TEST_VOICES,
    HELDOUT_VOICE,
    NON_SPEECH,
    NON_SPEECH_FOLDERS,
    SOUNDS_DIR,
    VOICES,
    Clip,
    Voice,
)
from distill.corpora.synthetic_speaker import verification_trials  # the same VoxCeleb1 trials as the synthetic corpus
from distill.corpora.system_tools import require_tool
from distill.io.audio import SAMPLE_RATE

MARKER = ".complete"  # written last; a folder without it is rebuilt
OWNER = ".gendistiller"  # written first: a folder this module may delete and rebuild
MIN_SECONDS = 0.15  # shorter: not a word. Italian letters run 0.2-0.3 s, so the 0.3 s one might expect would drop them
MAX_SECONDS = 30.0  # longer prompts (demo instructions, 40-86 s) are left out rather than cropped
SILENT_PEAK = 0.01  # peak below -40 dBFS (after the DC offset is removed): silence
AUDIO_SUFFIXES = (".wav", ".gsm")


def _flat_name(prompt: str) -> str:
    return prompt.replace("/", "__") + ".wav"


# ----------------------------------------------------------------------------------------------------------
# Download


def _apt_download(packages: Sequence[str], dest: Path) -> list[Path]:
    """`apt-get download` (no install, no root beyond fresh package lists) into dest; the .deb files."""
    apt = require_tool("apt-get", "apt", FetchError)
    dest.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([apt, "download", *packages], cwd=dest, capture_output=True, text=True)
    if result.returncode != 0:
        raise FetchError(f"apt-get download {' '.join(packages)} failed (exit {result.returncode}): "
                         f"{last_line(result.stderr or result.stdout)}. If the package lists are stale or missing, "
                         f"run `apt-get update` (as root) and retry")
    return sorted(dest.glob("*.deb"))


def download_asterisk(dest: Path, voices: Sequence[Voice] = VOICES) -> dict[str, str]:
    """Download the voices' packages and unpack each into dest/<package>/; returns {package: version}."""
    dpkg_deb = require_tool("dpkg-deb", "dpkg", FetchError)
    packages = sorted({voice.package for voice in voices})
    debs = _apt_download(packages, dest / "debs")
    versions = {}
    for deb in debs:
        fields = subprocess.run([dpkg_deb, "-f", str(deb), "Package", "Version"], capture_output=True, text=True)
        if fields.returncode != 0:
            raise FetchError(f"{deb.name} is not a readable Debian package: {last_line(fields.stderr)}")
        info = dict(line.split(": ", 1) for line in fields.stdout.splitlines() if ": " in line)
        unpacked = subprocess.run([dpkg_deb, "-x", str(deb), str(dest / info["Package"])], capture_output=True, text=True)
        if unpacked.returncode != 0:
            raise FetchError(f"dpkg-deb -x {deb.name} failed: {last_line(unpacked.stderr)}")
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
    require_tool("sox", "sox", FetchError)
    Path(cache).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".asterisk-download-") as tmp:
        versions = download_asterisk(Path(tmp))
        return build_asterisk_speech(Path(tmp), root, versions=versions, workers=workers, progress=progress)


# ----------------------------------------------------------------------------------------------------------
# Conversion and layout (offline)


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
    sox = require_tool("sox", "sox", FetchError)
    result = subprocess.run([sox, "-D", "-V1", str(source), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e",
                             "signed-integer", str(target)], capture_output=True, text=True)
    if result.returncode != 0:
        raise FetchError(f"sox could not convert {source}: {last_line(result.stderr)}")


def _finish(path: Path) -> tuple[int, str | None]:
    """Remove a converted file's DC offset (in place) and say whether to keep it: (samples, reason to skip or None).

    Some recordings sit on a constant offset (it_IT_f_Menardi up to 0.11 of full scale, fr_FR_f_Armelle 0.03, the
    others none): left in, it would tell voices apart without any speech.
    """
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

    unpacked, root = Path(unpacked), Path(root)
    if is_complete(root):
        return root
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    require_tool("sox", "sox", FetchError)
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
    manifest = build_manifest(layout, scan.skipped, versions or {})
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    (root / "README.md").write_text(render_readme(manifest))
    (root / MARKER).write_text(_marker())
    return root
