"""Nothing a user feeds the CLI corrupts a run or hangs: bad audio, bad config values, bad files, a second run into
the same folder, signals and kills. Each case ends in one named line (exit 2), or in a documented recovery."""
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from distill.cli import main as cli
from distill.io.checkpoint_files import CheckpointError
from distill.io.run_folder import RunLock, RunLockError
from distill.models.student_checkpoint import load_student, read_student_checkpoint
from distill.models.student_config import EXPOSURE_OPTIONS
from distill.training.guards import NoProgressError, StepGuard
from distill.training.runs import latest_checkpoint
from distill.training.trainer import load_config, train
from tests.conftest import time_limit, write_nan_audio, write_tone_corpus

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
# A run long enough to be signalled in its middle: one checkpoint per step.
LONG = ["optim.total_steps=120", "run.log_every=1", "run.checkpoint_every=1"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_tone_corpus(tmp_path_factory.mktemp("reliability") / "audio", num_files=8)


@pytest.fixture(scope="module")
def nan_corpus(corpus, tmp_path_factory) -> Path:
    """Three good files and a float WAV that is NaN throughout (shorter than a crop: every crop of it holds NaN): with
    the tiny configs' batch of 4, every batch holds it."""
    data = tmp_path_factory.mktemp("nan") / "audio"
    data.mkdir()
    for path in sorted(corpus.iterdir())[:3]:
        shutil.copy(path, data)
    write_nan_audio(data / "bad.wav")
    return data


def overrides(teacher: Path, data: Path, out: Path, *more: str) -> list[str]:
    return [f"teacher={teacher}", f"data.train={data}", f"run.output_dir={out}", "run.progress=false", *more]


def distill(teacher: Path, data: Path, out: Path, *more: str, config: str = "tiny_gendistiller") -> list[str]:
    """`gendistiller distill` arguments."""
    return ["distill", "--config", config, *overrides(teacher, data, out, *more)]


def one_line(err: str) -> str:
    """The CLI's one error line (other stderr lines are progress and warnings); never a traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("gendistiller ")]
    assert len(lines) == 1, err
    return lines[0]


def metrics(out: Path) -> list[dict]:
    path = out / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.is_file() else []


def wait_for(condition, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, "timed out waiting"
        time.sleep(0.05)


def start_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "distill.cli", *args], env=ENV, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def same_weights(a: Path, b: Path) -> None:
    first, second = read_student_checkpoint(a)["student"], read_student_checkpoint(b)["student"]
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, tiny_wavlm_path, corpus) -> Path:
    """The LONG run, uninterrupted: what every stopped and resumed run must equal."""
    out = tmp_path_factory.mktemp("straight")
    return train(load_config("tiny_gendistiller", overrides(tiny_wavlm_path, corpus, out, *LONG)))


# ---- 1. finite values --------------------------------------------------------------------------------------

def test_nan_audio_is_skipped_and_the_run_trains_on_the_rest(tmp_path, tiny_wavlm_path, nan_corpus, capsys):
    assert cli(distill(tiny_wavlm_path, nan_corpus, tmp_path, "optim.total_steps=6")) == 0
    log = capsys.readouterr().out
    assert f"skipped {nan_corpus / 'bad.wav'}: non-finite samples (NaN or inf)" in log
    checkpoint = read_student_checkpoint(latest_checkpoint(tmp_path))  # refused if any weight were not finite
    assert checkpoint["step"] == 6
    assert all(value.isfinite().all() for value in checkpoint["student"].values() if value.is_floating_point())


def test_nonfinite_steps_are_not_applied_and_logged_with_their_files(tmp_path, tiny_wavlm_path, nan_corpus, monkeypatch,
                                                                      capsys):
    """With the read-time check off, NaN reaches the model: such a step is skipped, said with its batch, counted."""
    monkeypatch.setattr("distill.training.data.all_finite", lambda samples: True)
    assert cli(distill(tiny_wavlm_path, nan_corpus, tmp_path, "optim.total_steps=12", "run.log_every=1",
                       "data.batch_size=2", "run.max_nonfinite_steps=12")) == 0
    log = capsys.readouterr().out
    skipped = [line for line in log.splitlines() if "not applied" in line]
    assert skipped and all("bad.wav" in line and "loss nan" in line for line in skipped), log
    assert metrics(tmp_path)[-1]["nonfinite_steps"] == len(skipped)
    assert read_student_checkpoint(latest_checkpoint(tmp_path))["step"] == 12


def test_nonfinite_steps_in_a_row_stop_the_run_keeping_the_last_good_checkpoint(tmp_path, tiny_wavlm_path, corpus,
                                                                                 monkeypatch, capsys):
    assert cli(distill(tiny_wavlm_path, corpus, tmp_path, "optim.total_steps=2")) == 0
    good = latest_checkpoint(tmp_path)
    broken = tmp_path / "broken"
    for index in range(4):
        write_nan_audio(broken / f"nan{index}.wav")
    monkeypatch.setattr("distill.training.data.all_finite", lambda samples: True)
    capsys.readouterr()
    with time_limit(120):
        code = cli([*distill(tiny_wavlm_path, broken, tmp_path, "optim.total_steps=8"), "--resume"])
    line = one_line(capsys.readouterr().err)
    assert code == 2 and "3 batches in a row gave a non-finite loss or gradient norm at step 3" in line, line
    assert "nan0.wav" in line and str(good) in line, line
    assert latest_checkpoint(tmp_path) == good and load_student(good)[1]["step"] == 2


def test_weights_that_turn_nonfinite_are_never_written(tmp_path, tiny_wavlm_path, corpus, monkeypatch, capsys):
    """Weights that overflow in a step whose gradients were finite: the run stops at its checkpoint, which is not
    written."""
    from distill.training import trainer

    real_step = trainer.train_step

    def overflowing_step(model, student, *args, **kwargs):
        result = real_step(model, student, *args, **kwargs)
        next(student.parameters()).data.fill_(float("inf"))
        return result

    monkeypatch.setattr(trainer, "train_step", overflowing_step)
    code = cli(distill(tiny_wavlm_path, corpus, tmp_path, "run.checkpoint_every=1"))
    line = one_line(capsys.readouterr().err)
    assert code == 2 and "the weights are not finite after step 1" in line and "nothing written" in line, line
    assert latest_checkpoint(tmp_path) is None


def test_a_checkpoint_with_nonfinite_weights_is_refused_by_name(tmp_path, gendistiller_ckpt, capsys):
    checkpoint = torch.load(gendistiller_ckpt, weights_only=False)
    name = next(iter(checkpoint["student"]))
    checkpoint["student"][name] = torch.full_like(checkpoint["student"][name], float("nan"))
    poisoned = tmp_path / "poisoned.pt"
    torch.save(checkpoint, poisoned)
    with pytest.raises(CheckpointError, match=f"poisoned.pt: non-finite weights .* in {name}"):
        load_student(poisoned)
    assert cli(["info", str(poisoned)]) == 2
    assert "non-finite weights" in one_line(capsys.readouterr().err)


def test_a_teacher_with_nonfinite_weights_is_refused_by_name(tmp_path, tiny_wavlm_path, capsys):
    """A teacher whose weights hold NaN gives only NaN targets: refused on load, before any training step."""
    from distill.teachers import load_teacher

    checkpoint = torch.load(tiny_wavlm_path, weights_only=False)
    weights = checkpoint["model"]
    name = next(key for key, value in weights.items() if value.is_floating_point() and "layers.1." in key)
    weights[name] = torch.full_like(weights[name], float("inf"))
    poisoned = tmp_path / "poisoned_teacher.pt"
    torch.save(checkpoint, poisoned)
    with pytest.raises(CheckpointError, match="poisoned_teacher.pt: non-finite weights .* in "):
        load_teacher(str(poisoned))
    assert cli(["teacher-info", str(poisoned)]) == 2
    assert "non-finite weights" in one_line(capsys.readouterr().err)


def test_pretraining_and_fidelity_skip_nan_files(tmp_path, tiny_wavlm_path, gendistiller_ckpt, nan_corpus, capsys):
    from distill.teachers import load_teacher
    from distill.training.fidelity import heldout_fidelity
    from distill.training.pretrain import load_config as pretrain_config
    from distill.training.pretrain import pretrain
    from tests.test_pretrain import SMALL

    result = pretrain(pretrain_config("pretrain_tiny_wavlm", [*SMALL, f"data.train={nan_corpus}",
                                                              "optim.total_steps=3"]), tmp_path / "teacher.pt")
    log = capsys.readouterr().out
    assert f"[pretrain] units: skipped {nan_corpus / 'bad.wav'}: non-finite samples" in log
    assert f"[pretrain] skipped {nan_corpus / 'bad.wav'}: non-finite samples" in log
    assert all(value.isfinite().all() for value in torch.load(result.teacher, weights_only=True)["model"].values())

    files = [sorted(nan_corpus.glob("*.flac"))[0], nan_corpus / "bad.wav"]
    layers = heldout_fidelity(load_student(gendistiller_ckpt)[0], load_teacher(str(tiny_wavlm_path)), files)
    assert f"[fidelity] skipped {files[1]}: non-finite samples" in capsys.readouterr().out
    assert all(np.isfinite(measured.l1) for measured in layers.values())


@pytest.fixture(scope="module")
def exported(gendistiller_ckpt, tmp_path_factory) -> Path:
    from distill.deploy.onnx_export import export_onnx

    return export_onnx(gendistiller_ckpt, tmp_path_factory.mktemp("onnx") / "student.onnx")


def test_embed_skips_a_nan_file_and_writes_the_others(tmp_path, exported, capsys):
    audio = write_tone_corpus(tmp_path / "audio", num_files=2)
    write_nan_audio(audio / "bad.wav")
    assert cli(["embed", "--model", str(exported), str(audio), "--out", str(tmp_path / "features")]) == 1
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("[embed]")] == [
        f"[embed] skipped: {audio / 'bad.wav'}: non-finite samples (NaN or inf)"]
    assert sorted(path.name for path in (tmp_path / "features").iterdir()) == ["utt000.npy", "utt001.npy"]


def test_embed_writes_partial_files_and_renames_them_only_when_complete(tmp_path, exported, monkeypatch, capsys):
    """A recording whose run fails in its middle leaves neither NAME.npy nor NAME.npy.partial behind."""
    from distill.deploy.runtime import OnnxStudent

    audio = write_tone_corpus(tmp_path / "audio", num_files=1)
    real = OnnxStudent.windows

    def fails_after_the_first_window(self, samples):
        for number, window in enumerate(real(self, samples)):
            assert (tmp_path / "features" / "utt000.npy.partial").is_file()
            if number == 1:
                raise KeyboardInterrupt
            yield window

    monkeypatch.setattr(OnnxStudent, "windows", fails_after_the_first_window)
    assert cli(["embed", "--model", str(exported), str(audio), "--out", str(tmp_path / "features"), "--window", "0.5",
                "--context", "0.1"]) == 130
    assert one_line(capsys.readouterr().err) == "gendistiller embed: interrupted"
    assert list((tmp_path / "features").iterdir()) == []


# ---- 2. one run per folder; signals and kills --------------------------------------------------------------

def test_sigint_stops_after_the_step_with_a_checkpoint_and_a_second_run_is_refused(
        tmp_path, tiny_wavlm_path, corpus, straight_run, capsys):
    out = tmp_path / "run"
    process = start_cli(*distill(tiny_wavlm_path, corpus, out, *LONG))
    wait_for(lambda: len(metrics(out)) >= 3)
    started = time.time()
    with pytest.raises(RunLockError, match=re.escape(f"{out} is in use by another run (PID {process.pid}, started")):
        train(load_config("tiny_gendistiller", overrides(tiny_wavlm_path, corpus, out, "run.seed=1")))
    assert time.time() - started < 1.0  # refused before the teacher is loaded or the data scanned
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    step = read_student_checkpoint(latest_checkpoint(out))["step"]
    assert process.returncode == 130
    assert one_line(err).startswith(f"gendistiller distill: SIGINT: stopped at step {step}; resume with --resume"), err
    assert cli([*distill(tiny_wavlm_path, corpus, out, *LONG), "--resume"]) == 0
    assert f"[distill] resuming from step {step} of 120" in capsys.readouterr().out
    same_weights(latest_checkpoint(out), straight_run)


def test_sigterm_stops_like_sigint_and_resume_is_exact(tmp_path, tiny_wavlm_path, corpus, straight_run):
    process = start_cli(*distill(tiny_wavlm_path, corpus, tmp_path, *LONG))
    wait_for(lambda: len(metrics(tmp_path)) >= 3)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143 and "SIGTERM: stopped at step" in one_line(err), err
    train(load_config("tiny_gendistiller", overrides(tiny_wavlm_path, corpus, tmp_path, *LONG)), resume=True)
    same_weights(latest_checkpoint(tmp_path), straight_run)


def test_sigkill_at_random_times_leaves_a_loadable_latest_and_resume_is_exact(tmp_path, tiny_wavlm_path, corpus,
                                                                             straight_run):
    """Killed three times at random moments (the lock goes with the process): `latest` always loads, every step file
    is whole, and the resumed run equals the uninterrupted one."""
    rng = random.Random(0)
    for _ in range(3):
        resume = ["--resume"] if latest_checkpoint(tmp_path) else []
        process = start_cli(*distill(tiny_wavlm_path, corpus, tmp_path, *LONG), *resume)
        done = len(metrics(tmp_path))
        wait_for(lambda: len(metrics(tmp_path)) > done)
        time.sleep(rng.uniform(0.0, 0.4))
        process.kill()
        process.communicate()
        for path in (tmp_path / "checkpoints").glob("step_*.pt"):
            read_student_checkpoint(path)
        assert read_student_checkpoint(latest_checkpoint(tmp_path))["step"] < 120
    train(load_config("tiny_gendistiller", overrides(tiny_wavlm_path, corpus, tmp_path, *LONG)), resume=True)
    same_weights(latest_checkpoint(tmp_path), straight_run)


def test_pretraining_stops_on_sigterm_with_a_checkpoint(tmp_path, corpus):
    from tests.test_pretrain import SMALL

    out = tmp_path / "teacher.pt"
    run_dir = tmp_path / "teacher_pretraining"
    args = ["pretrain-teacher", "--data", str(corpus), "--out", str(out), *SMALL, "optim.total_steps=400",
            "run.log_every=1"]
    process = start_cli(*args)
    wait_for(lambda: len(metrics(run_dir)) >= 2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    step = torch.load(latest_checkpoint(run_dir), weights_only=False)["step"]
    assert process.returncode == 143
    assert one_line(err).startswith(f"gendistiller pretrain-teacher: SIGTERM: stopped at step {step}; resume with"), err


@pytest.mark.parametrize("command", ["superb-sweep", "demo", "pretrain-teacher"])
def test_other_long_commands_hold_their_folder(tmp_path, corpus, command, capsys):
    from distill.training.pretrain import default_run_dir
    from tests.test_pretrain import SMALL

    args, held = {
        "superb-sweep": (["--upstreams", "gendistiller:x.pt", "--tasks", "ks", "--results", str(tmp_path / "r.csv")],
                         RunLock.file(tmp_path / "r.csv", "--results")),
        "demo": (["--work", str(tmp_path / "work")], RunLock.folder(tmp_path / "work", "--work")),
        "pretrain-teacher": (["--data", str(corpus), "--out", str(tmp_path / "t.pt"), *SMALL],
                             RunLock.folder(default_run_dir(tmp_path / "t.pt"), "run.output_dir")),
    }[command]
    with held:
        assert cli([command, *args]) == 2
    assert f"is in use by another run (PID {os.getpid()}, started" in one_line(capsys.readouterr().err)


# ---- 3-6. every bad value, file and option: one named line -------------------------------------------------

@pytest.mark.parametrize("override, message", [
    ("data.batch_size=-1", "config key data.batch_size: must be >= 1, got -1"),
    ("data.batch_size=0", "config key data.batch_size: must be >= 1, got 0"),
    ("data.crop_samples=100", "config key data.crop_samples: must be at least the CNN's receptive field, 400 samples "
                              "(25 ms at 16 kHz), got 100"),
    ("optim.total_steps=0", "config key optim.total_steps: must be >= 1, got 0"),
    ("optim.total_steps=-5", "config key optim.total_steps: must be >= 1, got -5"),
    ("run.checkpoint_every=0", "config key run.checkpoint_every: must be >= 1, got 0"),
    ("run.log_every=0", "config key run.log_every: must be >= 1, got 0"),
    ("optim.lr=.nan", "config key optim.lr: must be a finite number, got nan"),
    ("run.device=tpu", "config key run.device: must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    ("student.encoder_layers=9", "unknown config key(s) student.encoder_layers"),
])
def test_bad_values_are_one_named_line(tmp_path, tiny_wavlm_path, corpus, override, message, capsys):
    with time_limit(60):
        code = cli(distill(tiny_wavlm_path, corpus, tmp_path / "out", override))
    assert code == 2 and one_line(capsys.readouterr().err).startswith(f"gendistiller distill: error: {message}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_one_named_line(tmp_path, tiny_wavlm_path, corpus, capsys):
    assert cli(distill(tiny_wavlm_path, corpus, tmp_path, "run.device=cuda")) == 2
    line = one_line(capsys.readouterr().err)
    assert "config key run.device: cuda requested, but this machine has no CUDA device" in line


def test_a_corpus_whose_every_crop_fails_stops_naming_the_folder(tmp_path, tiny_wavlm_path, capsys):
    for index in range(6):
        write_nan_audio(tmp_path / "nan" / f"nan{index}.wav")
    with time_limit(120):
        code = cli(distill(tiny_wavlm_path, tmp_path / "nan", tmp_path / "out"))
    line = one_line(capsys.readouterr().err)
    assert code == 2 and f"of {tmp_path / 'nan'}" in line and "non-finite samples" in line, line


def test_an_epoch_without_a_step_is_the_end():
    guard = StepGuard(3, "data/", "distill")
    guard.end_of_epoch()  # the rest of a resumed epoch may hold no batch
    with pytest.raises(NoProgressError, match="a whole epoch of data/ gave no batch to train on"):
        guard.end_of_epoch()


def test_output_folder_paths_and_the_demo_teacher_are_named(tmp_path, tiny_wavlm_path, corpus, monkeypatch, capsys):
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "run"):
        assert cli(distill(tiny_wavlm_path, corpus, out)) == 2
        assert one_line(capsys.readouterr().err).endswith(f"config key run.output_dir: {tmp_path / 'file'} is a file; "
                                                          "give a folder")
    monkeypatch.chdir(tmp_path)  # no runs/demo/ here: the shipped config's default teacher is missing
    assert cli(["distill", "--config", "tiny_gendistiller", f"data.train={corpus}"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "config key teacher: runs/demo/teacher/tiny_wavlm.pt not found" in line and "gendistiller demo" in line


def test_yaml_syntax_error_names_line_and_column(tmp_path, capsys):
    config = tmp_path / "broken.yaml"
    config.write_text("teacher: t.pt\nstudent:\n  kind: [gendistiller\ndata:\n  batch_size: 4\n")
    assert cli(["distill", "--config", str(config)]) == 2
    assert one_line(capsys.readouterr().err) == (f"gendistiller distill: error: {config}, line 4, column 5: YAML "
                                                 "syntax error: expected ',' or ']', but got ':'")
    assert cli(["distill", "--config", "tiny_gendistiller", "optim.lr=[1"]) == 2
    assert "override 'optim.lr=[1', line 1, column 3: YAML syntax error" in one_line(capsys.readouterr().err)


def test_out_of_memory_names_the_settings_to_lower(tmp_path, tiny_wavlm_path, corpus, monkeypatch, capsys):
    def out_of_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried "
                           "to allocate 73014444032 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr("distill.training.trainer.train_step", out_of_memory)
    assert cli(distill(tiny_wavlm_path, corpus, tmp_path)) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("gendistiller distill: error: out of memory (") and line.endswith(
        "; lower data.batch_size or data.crop_samples"), line


def test_ctrl_c_outside_a_training_loop_and_debug_tracebacks(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    results = tmp_path / "results.csv"
    results.write_text("upstream\n")
    monkeypatch.setattr("distill.commands.superb_report.read_report_results", interrupted)
    assert cli(["superb-report", str(results)]) == 130
    assert one_line(capsys.readouterr().err) == "gendistiller superb-report: interrupted"
    monkeypatch.undo()
    with pytest.raises(ValueError, match="no results"):
        cli(["--debug", "superb-report", str(results)])


@pytest.mark.parametrize("content, message", [
    ("", "no results (an empty CSV)"),
    ("upstream,task,seed,metric,higher_is_better,lr,dev,test,params,ckpt,expdir,finished_at\n", "no results"),
    ("task,metric,test\nks,acc,0.5\n", "missing column(s) upstream, higher_is_better, lr, params, expdir"),
])
def test_superb_report_refuses_an_empty_or_foreign_csv(tmp_path, content, message, capsys):
    results = tmp_path / "results.csv"
    results.write_text(content)
    assert cli(["superb-report", str(results), "--out", str(tmp_path / "report")]) == 2
    assert message in one_line(capsys.readouterr().err)
    assert not (tmp_path / "report").exists()


def test_embed_out_must_be_a_folder(tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    for out in (tmp_path / "taken", tmp_path / "taken" / "features"):
        assert cli(["embed", "--model", "student.onnx", str(tmp_path), "--out", str(out)]) == 2
        assert one_line(capsys.readouterr().err) == (f"gendistiller embed: error: --out {out}: {tmp_path / 'taken'} "
                                                     "is a file; give a folder for the .npy files")


def test_superb_reads_its_checkpoint_before_the_runner(tmp_path, gendistiller_ckpt, tiny_wavlm_path, capsys):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(gendistiller_ckpt.read_bytes()[:5000])
    for checkpoint, message in [(truncated, "not a readable PyTorch checkpoint"),
                                (tiny_wavlm_path, "not a GenDistiller student checkpoint"),
                                (tmp_path / "missing.pt", "checkpoint not found")]:
        assert cli(["superb", "-m", "train", "-u", "gendistiller_local", "-k", str(checkpoint), "-d",
                    "speech_commands", "-p", str(tmp_path / "exp")]) == 2
        line = one_line(capsys.readouterr().err)
        assert line.startswith(f"gendistiller superb: error: {checkpoint}: ") and message in line, line


def test_resume_refuses_another_student_and_says_where_it_continues(tmp_path, tiny_wavlm_path, corpus, capsys):
    assert cli(distill(tiny_wavlm_path, corpus, tmp_path, "optim.total_steps=2")) == 0
    capsys.readouterr()
    assert cli([*distill(tiny_wavlm_path, corpus, tmp_path, "optim.total_steps=3", config="tiny_distilhubert"),
                "--resume"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "--resume: the config changes the student of the run" in line and "student.kind: 'distilhubert' " \
           "(checkpoint: 'gendistiller')" in line, line
    assert cli([*distill(tiny_wavlm_path, corpus, tmp_path, "optim.total_steps=3", "student.generator_layers=2"),
                "--resume"]) == 2
    assert "student.generator_layers: 2 (checkpoint: 1)" in one_line(capsys.readouterr().err)
    assert cli([*distill(tiny_wavlm_path, corpus, tmp_path, "optim.total_steps=3"), "--resume"]) == 0
    assert "[distill] resuming from step 2 of 3" in capsys.readouterr().out


def test_resume_takes_the_exposed_states_from_the_config(tmp_path, tiny_wavlm_path, corpus):
    """Which states a GenDistiller exposes changes no weight: a run resumes with the config's choice, and its next
    checkpoint keeps the trained weights and exposes what the config says."""
    assert cli(distill(tiny_wavlm_path, corpus, tmp_path, "optim.total_steps=2", "student.generator_states=false")) == 0
    before = read_student_checkpoint(latest_checkpoint(tmp_path))
    assert cli([*distill(tiny_wavlm_path, corpus, tmp_path, "optim.total_steps=3", "student.generator_states=true",
                         "student.front_end_state=true"), "--resume"]) == 0
    after = read_student_checkpoint(latest_checkpoint(tmp_path))
    assert after["step"] == 3 and before["config"]["student"]["generator_states"] is False
    assert after["config"]["student"]["generator_states"] is True and after["config"]["student"]["front_end_state"] is True
    assert after["student"].keys() == before["student"].keys()
    assert {key: value for key, value in after["config"]["student"].items() if key not in EXPOSURE_OPTIONS} == \
           {key: value for key, value in before["config"]["student"].items() if key not in EXPOSURE_OPTIONS}
