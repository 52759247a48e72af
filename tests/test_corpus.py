"""The synthetic mini-SUPERB corpus: layout, audio format, determinism, and s3prl's own readers on it."""
from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path

import pytest
import soundfile

from distill.commands import make_corpus
from distill.corpora import synthetic as corpus
from distill.corpora import synthetic_texts

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                                reason="needs the espeak-ng and sox system packages")

_MODELRC = {"projector_dim": 8, "select": "UtteranceLevel", "UtteranceLevel": {"pooling": "MeanPooling"}}


def _tree_hash(folder: Path) -> dict[str, str]:
    """sha256 of every file; kaldi's wav.scp holds absolute paths, compared with the folder itself written as ROOT."""
    def content(path: Path) -> bytes:
        data = path.read_bytes()
        return data.replace(str(folder.resolve()).encode(), b"ROOT") if path.name == "wav.scp" else data

    return {p.relative_to(folder).as_posix(): hashlib.sha256(content(p)).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    return corpus.build_corpus(tmp_path_factory.mktemp("corpus"), size="tiny", seed=0, progress=False)


def test_layout(built):
    ls = built["librispeech"]
    for split in ("train-clean-100", "dev-clean", "test-clean"):
        flacs = sorted((ls / split).glob("*/*/*.flac"))
        assert flacs, split
        for trans in (ls / split).glob("*/*/*.trans.txt"):
            speaker, chapter = trans.name[: -len(".trans.txt")].split("-")
            assert trans.parent == ls / split / speaker / chapter
            for line in trans.read_text().splitlines():
                utt_id, text = line.split(" ", 1)
                assert (trans.parent / f"{utt_id}.flac").is_file() and text == text.upper()
                assert all(word in synthetic_texts.lexicon() for word in text.split())
    sc = built["speech_commands"]
    train_dirs = {p.name for p in (sc / "train").iterdir() if p.is_dir()}
    assert set(synthetic_texts.COMMANDS) | {"_background_noise_"} <= train_dirs
    assert {p.name for p in (sc / "test").iterdir()} == set(synthetic_texts.COMMANDS) | {"_silence_", "_unknown_"}
    assert all("_nohash_" in p.name for p in (sc / "train" / "yes").glob("*.wav"))
    vc = built["voxceleb1"]
    for line in (vc / "iden_split.txt").read_text().splitlines():
        split, rel = line.split()
        assert split in "123" and len(list(vc.glob(f"*/wav/{rel}"))) == 1
    fc = built["fluent_commands"]
    header = (fc / "data" / "train_data.csv").read_text().splitlines()[0]
    assert header == ",path,speakerId,transcription,action,object,location"
    for split in ("train", "valid", "test"):
        for row in (fc / "data" / f"{split}_data.csv").read_text().splitlines()[1:]:
            assert (fc / row.split(",")[1]).is_file()
    assert all((path / corpus.MARKER).is_file() for path in built.values())


def test_audio_is_16k_mono_pcm16(built):
    files = [next(built["librispeech"].rglob("*.flac")), *list(built["speech_commands"].rglob("*.wav"))[:20],
             next(built["voxceleb1"].rglob("*.wav")), next(built["fluent_commands"].rglob("*.wav"))]
    for path in files:
        info = soundfile.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16"), path
        if path.parent.parent.parent == built["speech_commands"] and path.parent.name != "_background_noise_":
            assert info.frames == 16000, path


def test_deterministic_idempotent_and_rebuilds(built, tmp_path):
    again = corpus.build_corpus(tmp_path / "again", size="tiny", seed=0, progress=False)
    for name, path in built.items():
        assert _tree_hash(path) == _tree_hash(again[name]), name

    before = _tree_hash(again["voxceleb1"])
    mtime = (again["voxceleb1"] / corpus.MARKER).stat().st_mtime_ns
    corpus.build_corpus(tmp_path / "again", ["voxceleb1"], size="tiny", seed=0, progress=False)
    assert (again["voxceleb1"] / corpus.MARKER).stat().st_mtime_ns == mtime  # complete: skipped

    (again["voxceleb1"] / corpus.MARKER).unlink()  # half built: rebuilt, identically
    next(again["voxceleb1"].rglob("*.wav")).unlink()
    corpus.build_corpus(tmp_path / "again", ["voxceleb1"], size="tiny", seed=0, progress=False)
    assert _tree_hash(again["voxceleb1"]) == before

    other = corpus.build_corpus(tmp_path / "other", ["librispeech"], size="tiny", seed=1, progress=False)
    assert _tree_hash(other["librispeech"]) != _tree_hash(built["librispeech"])

    foreign = tmp_path / "foreign" / "librispeech"
    foreign.mkdir(parents=True)
    (foreign / "mine.txt").write_text("not generated")
    with pytest.raises(corpus.CorpusError, match="refusing"):
        corpus.build_corpus(tmp_path / "foreign", ["librispeech"], size="tiny", progress=False)


def test_missing_espeak_names_the_package(monkeypatch, tmp_path):
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "espeak-ng" else real_which(name))
    with pytest.raises(corpus.CorpusError, match="apt-get install espeak-ng"):
        corpus.build_corpus(tmp_path, ["speech_commands"], size="tiny", progress=False)


def test_cli_run(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    make_corpus.add_arguments(parser)
    args = parser.parse_args([str(tmp_path), "--size", "tiny", "--parts", "librispeech", "--quiet"])
    assert make_corpus.run(args) == 0
    out = capsys.readouterr().out
    assert "-d ctc" in out and str((tmp_path / "librispeech").resolve()) in out


# --- s3prl's own readers, constructed exactly as its runner would (downstream experts with our paths) ----


def test_s3prl_speech_commands_reads_it(built, tmp_path):
    pytest.importorskip("catalyst", reason="s3prl's KS expert imports catalyst")
    from s3prl.downstream.speech_commands.dataset import CLASSES
    from s3prl.downstream.speech_commands.expert import DownstreamExpert

    keys = corpus.s3prl_overrides("speech_commands", built["speech_commands"])["speech_commands"]
    datarc = {key.rsplit(".", 1)[1]: value for key, value in keys.items()} | {"batch_size": 2, "num_workers": 0}
    expert = DownstreamExpert(8, {"datarc": datarc, "modelrc": _MODELRC}, str(tmp_path))
    assert len(expert.train_dataset) and len(expert.dev_dataset) and len(expert.test_dataset)
    train_labels = {CLASSES[label] for label, _ in ((expert.train_dataset.class2index[c], p)
                                                    for c, p in expert.train_dataset.data)}
    assert train_labels == set(CLASSES)  # 10 commands + _unknown_ + _silence_ (background noise)
    wav, label, _ = expert.train_dataset[0]
    assert wav.ndim == 1 and wav.shape[0] == 16000 and 0 <= label < 12
    silence = next(i for i, (c, _) in enumerate(expert.train_dataset.data) if c == "_silence_")
    assert expert.train_dataset[silence][0].shape[0] == 16000
    test_wav, test_label, _ = expert.test_dataset[0]
    assert test_wav.shape[0] == 16000 and 0 <= test_label < 12


def test_s3prl_fluent_commands_reads_it(built, tmp_path):
    pytest.importorskip("pandas", reason="s3prl's IC expert reads its csv files with pandas")
    from s3prl.downstream.fluent_commands.expert import DownstreamExpert

    datarc = {"file_path": str(built["fluent_commands"]), "num_workers": 0, "train_batch_size": 2,
              "eval_batch_size": 2}
    expert = DownstreamExpert(8, {"datarc": datarc, "modelrc": _MODELRC}, str(tmp_path))
    assert expert.values_per_slot == [6, 14, 4]  # actions, objects, locations of Fluent Speech Commands
    for dataset in (expert.train_dataset, expert.dev_dataset, expert.test_dataset):
        wav, label, _ = dataset[len(dataset) - 1]
        assert wav.ndim == 1 and wav.shape[0] > 8000 and label.shape == (3,)


def test_s3prl_voxceleb1_reads_it(built, tmp_path, monkeypatch):
    pytest.importorskip("librosa", reason="s3prl's voxceleb1 dataset imports librosa")
    import s3prl.downstream.voxceleb1.dataset as vox_dataset
    from s3prl.downstream.voxceleb1.expert import DownstreamExpert

    monkeypatch.setattr(vox_dataset, "CACHE_PATH", str(tmp_path / "cache"))  # s3prl caches inside its package
    keys = corpus.s3prl_overrides("voxceleb1", built["voxceleb1"])["voxceleb1"]
    datarc = {key.rsplit(".", 1)[1]: value for key, value in keys.items()}
    datarc |= {"num_workers": 0, "train_batch_size": 2, "eval_batch_size": 1, "max_timestep": 32000}
    expert = DownstreamExpert(8, {"datarc": datarc, "modelrc": _MODELRC}, str(tmp_path))
    size = corpus.SIZES["tiny"]["voxceleb1"]
    per_split = size["speakers"] * size["utterances"]
    assert len(expert.train_dataset) == per_split * (size["videos"] - 2)
    assert len(expert.dev_dataset) == len(expert.test_dataset) == per_split
    assert set(expert.train_dataset.label) == set(range(size["speakers"]))
    wav, label, _ = expert.train_dataset[0]
    assert wav.ndim == 1 and wav.shape[0] <= 32000 and label == 0


def test_s3prl_asr_reads_it(built):
    pytest.importorskip("pandas", reason="s3prl's ASR dataset reads the bucket tables with pandas")
    from s3prl.downstream.asr.dataset import SequenceDataset
    from s3prl.downstream.asr.dictionary import Dictionary

    ls = built["librispeech"]
    dictionary = Dictionary.load(str(ls / "char.dict"))
    dataset = SequenceDataset("train", 2, dictionary, str(ls), str(ls / "len_for_bucket"),
                              train=["train-clean-100"])
    wavs, labels, names = dataset[0]  # a bucket (s3prl halves buckets of long audio)
    assert wavs and all(w.ndim == 1 for w in wavs) and all(dictionary.unk() not in label for label in labels)
    assert len(dataset.Y) == len(list((ls / "train-clean-100").rglob("*.flac")))  # every file has its text
