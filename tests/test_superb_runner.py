"""`gendistiller superb`: s3prl's own downstream runner, end to end on a tiny Speech Commands corpus."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("s3prl.hub")
pytest.importorskip("catalyst")  # s3prl's speech_commands expert imports it

from distill.commands.superb import LauncherError, runner_argv
from distill.deploy.s3prl_distiller import export_s3prl_distiller
from distill.superb.tasks import RECIPES_DIR
from tests.conftest import trained_student

ROOT = Path(__file__).resolve().parents[1]
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


# ---- argument defaults (no runner) ------------------------------------------------------------------------

def test_defaults_come_first_so_given_flags_win():
    argv = ["-m", "train", "-u", "gendistiller_local", "-k", "s.pt", "-d", "speech_commands"]
    full = runner_argv(argv, environ={})
    assert full == ["--device", DEVICE, "-c", str(RECIPES_DIR / "ks" / "config.yaml"), *argv]
    given = ["-m", "train", "-d", "speech_commands", "-c", "mine.yaml", "--device", "cpu"]
    assert runner_argv(given, environ={}) == given


def test_default_recipe_per_downstream_comes_from_the_task_table():
    expected = {"ctc": "pr", "speech_commands": "ks", "fluent_commands": "ic", "voxceleb1": "sid", "emotion": "er",
                "asr": "asr", "quesst14_dtw": "qbe", "sv_voxceleb1": "asv", "diarization": "sd"}
    for downstream, task in expected.items():
        full = runner_argv(["-m", "train", "-d", downstream], environ={})
        assert full[2:4] == ["-c", str(RECIPES_DIR / task / "config.yaml")], downstream


def test_torchrun_local_rank_and_help_pass_through():
    argv = ["-m", "train", "-e", "result/ks"]
    assert runner_argv(argv, environ={"LOCAL_RANK": "3"}) == ["--device", DEVICE, "--local_rank", "3", *argv]
    assert runner_argv(["-m", "train", "-e", "x", "--local_rank", "1"], environ={"LOCAL_RANK": "3"})[-2:] == ["--local_rank", "1"]
    assert runner_argv(["-h"], environ={}) == ["-h"]


def test_missing_recipe_or_downstream_is_reported():
    with pytest.raises(LauncherError, match="no recipe config for downstream 'mosei'.*pass -c"):
        runner_argv(["-m", "train", "-d", "mosei"], environ={})
    with pytest.raises(LauncherError, match="pass -d DOWNSTREAM"):
        runner_argv(["-m", "train", "-u", "gendistiller_local"], environ={})
    assert runner_argv(["-m", "train", "-d", "mosei", "-c", "mosei.yaml"], environ={})[-1] == "mosei.yaml"


# ---- end to end: s3prl's runner in a subprocess -------------------------------------------------------------

@pytest.fixture(scope="module")
def speech_commands(tmp_path_factory) -> Path:
    from distill.corpora.synthetic import build_corpus

    return build_corpus(tmp_path_factory.mktemp("superb_data"), parts=("speech_commands",), size="tiny", progress=False)["speech_commands"]


def superb(*args: str, cwd: Path) -> str:
    """`gendistiller superb ARGS` in a fresh process (s3prl's runner patches builtins, so never in pytest's)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               OMP_NUM_THREADS="1")  # tiny tensors on shared CPUs: a second OpenMP thread only waits
    result = subprocess.run([sys.executable, "-m", "distill.cli", "superb", *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"gendistiller superb {' '.join(args)} failed:\n{result.stderr[-4000:]}"
    return result.stdout + result.stderr


def ks_overrides(data: Path, steps: int) -> str:
    return ",,".join([
        f"config.downstream_expert.datarc.speech_commands_root={data / 'train'}",
        f"config.downstream_expert.datarc.speech_commands_test_root={data / 'test'}",
        "config.downstream_expert.datarc.batch_size=8",
        "config.downstream_expert.datarc.num_workers=0",
        f"config.runner.total_steps={steps}",
        "config.runner.log_step=10",
        f"config.runner.eval_step={steps}",
        f"config.runner.save_step={steps}",
        "config.optimizer.lr=1.0e-3",
    ])


def test_keyword_spotting_train_evaluate_resume(speech_commands, tmp_path_factory, tiny_wavlm_path, tmp_path):
    student = trained_student(tmp_path_factory, tiny_wavlm_path, "gendistiller")
    expdir = tmp_path / "ks"
    test_files = sorted((speech_commands / "test").glob("*/*.wav"))

    # Train (the recipe config is the default -c), evaluating dev and test at the last step.
    superb("-m", "train", "-u", "gendistiller_local", "-k", str(student), "-d", "speech_commands", "-p", str(expdir),
           "-o", ks_overrides(speech_commands, 30), cwd=tmp_path)
    log = (expdir / "log.log").read_text()
    assert "test at step 30:" in log and "dev at step 30:" in log
    assert (expdir / "states-30.ckpt").is_file() and (expdir / "dev-best.ckpt").is_file()
    predictions = (expdir / "test_predict.txt").read_text().splitlines()
    assert len(predictions) == len(test_files)
    assert "upstream: gendistiller_local" in next(expdir.glob("args_*.yaml")).read_text()

    # Evaluate from the checkpoint (torch's weights_only default must accept s3prl's Args).
    (expdir / "test_predict.txt").unlink()
    superb("-m", "evaluate", "-e", str(expdir / "states-30.ckpt"), "-t", "test", cwd=tmp_path)
    assert "test at step 0:" in (expdir / "log.log").read_text()
    assert len((expdir / "test_predict.txt").read_text().splitlines()) == len(test_files)

    # Resume training from the experiment folder with a longer schedule.
    output = superb("-m", "train", "-e", str(expdir), "-o", "config.runner.total_steps=40,,config.runner.eval_step=40,,"
                    "config.runner.save_step=40", cwd=tmp_path)
    assert "Resume from" in output and "Loading Optimizer weights" in output
    log = (expdir / "log.log").read_text()
    assert "train at step 40:" in log and "test at step 40:" in log
    assert (expdir / "states-40.ckpt").is_file()


def test_s3prl_distiller_on_exported_baseline(speech_commands, tmp_path_factory, tiny_wavlm_path, tmp_path):
    exported = export_s3prl_distiller(trained_student(tmp_path_factory, tiny_wavlm_path, "distilhubert"),
                                      tmp_path / "distilhubert.ckpt")
    expdir = tmp_path / "ks_distiller"
    superb("-m", "train", "-u", "distiller_local", "-k", str(exported), "-s", "paper", "-d", "speech_commands",
           "-p", str(expdir), "-o", ks_overrides(speech_commands, 20), cwd=tmp_path)
    assert "test at step 20:" in (expdir / "log.log").read_text()
    assert (expdir / "test_predict.txt").is_file()


def test_sweep_test_in_run_equals_evaluating_the_best_dev_checkpoint(speech_commands, tmp_path_factory, tiny_wavlm_path,
                                                                       tmp_path, monkeypatch):
    import json

    from distill.superb.intervals import kept_correct
    from distill.superb.sweep import evaluate_test, parse_upstream, read_results, sweep
    from distill.superb.tasks import load_tasks

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    student = trained_student(tmp_path_factory, tiny_wavlm_path, "gendistiller")
    overrides = ["config.downstream_expert.datarc.batch_size=8", "config.downstream_expert.datarc.num_workers=0",
                 "config.runner.total_steps=20", "config.runner.eval_step=10", "config.runner.save_step=10",
                 "config.runner.log_step=10"]
    results = tmp_path / "results.csv"
    [row] = sweep([parse_upstream(f"gendistiller:{student}")], ["ks"], [1e-3], results, tmp_path / "sweep", overrides,
                  speech_commands.parent, test_in_run=True)
    run_dir = Path(row["expdir"])
    record = json.loads((run_dir / "sweep.json").read_text())
    assert sorted(record["dev_scores"]) == ["10", "20"] and record["best_step"] in (10, 20)
    assert float(row["test"]) == record["test_at_best_dev"] and float(row["dev"]) == record["best_dev"]
    assert (run_dir / "dev-best.ckpt").is_file()

    # The per-item test results of the score taken are kept: the expert's last ones when step 20 was the best dev
    # step, else those of one more `-m evaluate` of dev-best.ckpt (logged as step 0).
    correct = kept_correct(load_tasks()["ks"], run_dir)
    assert len(correct) == len(list((speech_commands / "test").glob("*/*.wav")))
    assert sum(correct.values()) / len(correct) == pytest.approx(float(row["test"]), abs=1e-9)
    assert ("test at step 0:" in (run_dir / "log.log").read_text()) == (record["best_step"] != 20)

    # The same number from a separate `-m evaluate` of dev-best.ckpt, the path a plain sweep takes.
    del record["test_at_best_dev"]
    (run_dir / "sweep.json").write_text(json.dumps(record))
    assert evaluate_test(load_tasks()["ks"], run_dir) == pytest.approx(float(row["test"]), abs=1e-6)
    assert (run_dir / "test.json").is_file()
    assert read_results(results) == [row]  # a finished combination is not rerun
    assert sweep([parse_upstream(f"gendistiller:{student}")], ["ks"], [1e-3], results, tmp_path / "sweep", overrides,
                 speech_commands.parent, test_in_run=True) == [row]


def test_sweep_seed_reaches_s3prl_runner(speech_commands, tmp_path_factory, tiny_wavlm_path, tmp_path, monkeypatch):
    """`superb-sweep --seed N` trains with s3prl's own --seed N (recorded in the experiment's args file)."""
    from distill.superb.sweep import parse_upstream, sweep

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    student = trained_student(tmp_path_factory, tiny_wavlm_path, "gendistiller")
    overrides = ["config.downstream_expert.datarc.batch_size=8", "config.downstream_expert.datarc.num_workers=0",
                 "config.runner.total_steps=4", "config.runner.eval_step=4", "config.runner.save_step=4",
                 "config.runner.log_step=4"]
    [row] = sweep([parse_upstream(f"gendistiller:{student}")], ["ks"], [1e-3], tmp_path / "results.csv", tmp_path / "sweep",
                  overrides, speech_commands.parent, test_in_run=True, seed=7)
    args_file = next(Path(row["expdir"]).glob("args_*.yaml")).read_text()
    assert "seed: 7" in args_file.splitlines()
