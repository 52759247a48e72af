"""All ten SUPERB tasks through s3prl's real experts on the tiny local stand-ins: each trains a few steps (QbE only
evaluates) and gives a finite score; a second sweep reruns nothing. Also the pieces the stand-ins rely on: our ctc
corpus datasets, QbE's MTWV, the ASV device shim and the new corpus parts' layouts."""
import json
import math
import os
from pathlib import Path

import pytest

from distill.commands.demo import ALL_TASKS, LOCAL_OVERRIDES
from distill.corpora.synthetic import build_corpus, s3prl_overrides
from distill.superb.qbe_scoring import BETA, GroundTruth, mtwv, read_ground_truth
from distill.superb.sweep import parse_upstream, read_results, sweep
from distill.superb.tasks import load_tasks

STEPS = 4
TINY_RUN = [f"config.runner.total_steps={STEPS}", f"config.runner.eval_step={STEPS}", f"config.runner.save_step={STEPS}",
            f"config.runner.log_step={STEPS}"]


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mini_superb")
    build_corpus(root, size="tiny", progress=False)
    return root


def test_every_task_trains_and_scores_through_s3prl(corpus_root, gendistiller_ckpt, tmp_path):
    upstream = parse_upstream(f"gendistiller:{gendistiller_ckpt}")
    results, expdir = tmp_path / "results.csv", tmp_path / "runs"
    rows = sweep([upstream], ALL_TASKS, [1e-3], results, expdir, TINY_RUN, corpus_root, test_in_run=True,
                 task_overrides=LOCAL_OVERRIDES, jobs=2)
    by_task = {row["task"]: row for row in rows}
    assert set(by_task) == set(ALL_TASKS)
    for task, row in by_task.items():
        assert math.isfinite(float(row["test"])), (task, row)
        if task != "asv":  # ASV has no dev split
            assert math.isfinite(float(row["dev"])), (task, row)
    assert 0.0 <= float(by_task["asv"]["test"]) <= 1.0  # EER
    marks = {path: path.stat().st_mtime_ns for path in expdir.rglob("*.json")}
    again = sweep([upstream], ALL_TASKS, [1e-3], results, expdir, TINY_RUN, corpus_root, test_in_run=True,
                  task_overrides=LOCAL_OVERRIDES, jobs=2)
    assert again == read_results(results) and len(again) == len(ALL_TASKS)
    assert {path: path.stat().st_mtime_ns for path in expdir.rglob("*.json")} == marks


def test_ctc_corpus_datasets_serve_the_expert_contract(corpus_root):
    """Our LibriPhone and SNIPS datasets, built as s3prl's ctc data.py builds them, with its own tokenizers."""
    from s3prl.downstream.ctc.text import load_text_encoder

    import gendistiller_upstream

    gendistiller_upstream.register()
    from s3prl.downstream.ctc.corpus.libriphone import LibriPhoneDataset
    from s3prl.downstream.ctc.corpus.snips import SnipsDataset

    librispeech = corpus_root / "librispeech"
    phonemes = load_text_encoder("word", str(librispeech / "phoneme.txt"))
    pr = LibriPhoneDataset(["train-clean-100"], phonemes, 2, path=str(librispeech), lexicon=[str(librispeech / "lexicon.txt")])
    bucket = pr[0]
    assert len(bucket) == 2 and all(Path(path).suffix == ".flac" and Path(path).is_file() and tokens[-1] == phonemes.eos_idx
                                    and phonemes.unk_idx not in tokens for path, tokens in bucket)
    assert len(pr[0][0][1]) >= len(pr[len(pr) - 1][0][1])  # longest first

    snips = corpus_root / "snips"
    slots = load_text_encoder("character-slot", str(snips / "character.txt"), str(snips / "slots.txt"))
    sf = SnipsDataset(["valid"], slots, 1, path=str(snips), valid_speakers=["Aditi", "Amy"])
    path, tokens = sf[0]
    assert Path(path).name.startswith("Aditi-snips-valid") and any(t in slots.id2slot for t in tokens)  # slot tokens


def test_mtwv_against_a_hand_computed_case():
    truth = GroundTruth(["q1", "q2"], ["d1", "d2", "d3", "d4"], {("q1", "d1"), ("q2", "d2"), ("q2", "d3")})
    perfect = {("q1", "d1"): 3.0, ("q1", "d2"): 0.0, ("q1", "d3"): 0.0, ("q1", "d4"): 0.0,
               ("q2", "d1"): 0.0, ("q2", "d2"): 2.0, ("q2", "d3"): 2.5, ("q2", "d4"): 0.0}
    assert mtwv(perfect, truth)[0] == pytest.approx(1.0)
    # q2's d3 below every non-target: at threshold 2.0, q1 is found and q2 half found, no false alarm
    swapped = {**perfect, ("q2", "d3"): -1.0}
    assert mtwv(swapped, truth)[0] == pytest.approx(1.0 - 0.5 * (0.0 + 0.5))
    # detecting everything costs beta * 1 per query: worse than detecting nothing (TWV 0)
    assert mtwv({key: 0.0 for key in perfect}, truth)[0] == 0.0 and BETA == pytest.approx(12.49)


def test_new_parts_are_in_the_layouts_s3prl_reads(corpus_root):
    ground_truth = read_ground_truth(corpus_root / "quesst14" / "scoring" / "groundtruth_quesst14_dev")
    assert ground_truth.queries and ground_truth.documents and ground_truth.occurrences
    folds = sorted((corpus_root / "iemocap" / "meta_data").glob("Session*/test_meta_data.json"))
    assert len(folds) == 5
    meta = json.loads(folds[0].read_text())
    assert set(meta["labels"]) == {"neu", "hap", "ang", "sad"} and (corpus_root / "iemocap" / meta["meta_data"][0]["path"]).is_file()
    trials = (corpus_root / "voxceleb1" / "veri_test.txt").read_text().splitlines()
    assert {line.split()[0] for line in trials} == {"0", "1"}
    sd = corpus_root / "librimix" / "test"
    assert all((sd / name).is_file() for name in ("wav.scp", "segments", "utt2spk", "spk2utt", "reco2dur", "rttm"))
    for task in load_tasks().values():
        keys = s3prl_overrides(str(task.corpus), corpus_root / str(task.corpus))[task.downstream]
        assert set(task.data_keys) <= set(keys), task.name


def test_hard_coded_cuda_follows_the_device():
    import torch

    from distill.commands.superb import _cuda_calls_follow

    with _cuda_calls_follow("cpu"):
        assert torch.ones(2).cuda().device.type == "cpu"
    assert torch.Tensor.cuda.__name__ == "cuda"  # restored


def test_speaker_file_lists_are_kept_per_run(tmp_path):
    """Two runs at once on different corpora each get their own voxceleb1 file-list cache; the package's is restored."""
    import pickle

    from s3prl.downstream.voxceleb1 import dataset

    from distill.commands.superb import _speaker_file_lists_of_this_run

    package_cache = dataset.CACHE_PATH
    with _speaker_file_lists_of_this_run():
        first = dataset.CACHE_PATH
        with open(os.path.join(first, "test.pkl"), "wb") as handle:
            pickle.dump(["corpus-a.wav"], handle)
        with _speaker_file_lists_of_this_run():
            assert dataset.CACHE_PATH != first and not os.listdir(dataset.CACHE_PATH)
        assert dataset.CACHE_PATH == first
    assert dataset.CACHE_PATH == package_cache and not os.path.exists(first)


def test_sd_mixtures_overlap(corpus_root):
    segments = [line.split() for line in (corpus_root / "librimix" / "train" / "segments").read_text().splitlines()]
    by_recording: dict[str, list[tuple[float, float]]] = {}
    for _, recording, start, end in segments:
        by_recording.setdefault(recording, []).append((float(start), float(end)))
    for spans in by_recording.values():
        (a0, a1), (b0, b1) = sorted(spans)
        assert a0 < b0 < a1 < b1  # the second speaker starts while the first still speaks
