"""superb_recipes/: the ten task configs against s3prl 0.4.18's experts, the task table, and reading scores back."""
from __future__ import annotations

import inspect
import math
import os
import re
import shutil
import subprocess
import sys
from argparse import Namespace
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from distill.superb.tasks import RECIPES_DIR, TASKS_FILE, TaskTableError, load_tasks, parse_scores, task_for_downstream

s3prl = pytest.importorskip("s3prl")
S3PRL = Path(s3prl.__file__).parent
ROOT = Path(__file__).resolve().parents[1]
TASKS = load_tasks()
DE = "downstream_expert"

# ---- the keys each expert reads -------------------------------------------------------------------------------
# Derived by reading s3prl 0.4.18: downstream/runner.py and optimizers.py (RUNNER), and per task its
# downstream/<d>/expert.py + dataset.py (+ ctc/corpus/*.py from the git repository for PR and SF).
# required: s3prl fails without it (read with [], or with .get and no usable default, e.g.
# runner.gradient_accumulate_steps, asr's datarc.decoder_args); optional: read with a default.
# arguments: sections handed to a class as **kwargs; they are checked against the class's signature (its
# parameters without defaults must be given; without **kwargs nothing else may be), not listed key by key.

RUNNER = {"runner.total_steps", "runner.gradient_clipping", "runner.gradient_accumulate_steps", "runner.log_step",
          "runner.eval_step", "runner.save_step", "runner.max_keep", "runner.eval_dataloaders",
          "optimizer.name", "optimizer.torch_optim_name", "optimizer.lr"}
RUNNER_OPTIONAL = {"runner.fp16", "runner.train_dataloader", "runner.evaluate_ratio"}


def _de(*keys: str) -> set[str]:
    return {f"{DE}.{key}" for key in keys}


# Resolvers for the **kwargs sections: config -> (dotted key of the section, class, arguments the expert supplies).
def _utterance_model(config):
    from s3prl.downstream import model

    select = config[DE]["modelrc"]["select"]
    return f"{DE}.modelrc.{select}", getattr(model, select), {"input_dim", "output_dim"}


def _rnn_or_linear(section: str):
    def resolve(config):  # ctc: eval(select)(project_dim, vocab_size, upstream_rate=...); asr: the same, positionally
        from s3prl.downstream import model
        from s3prl.downstream.asr import model as asr_model

        select = _get(config, section)["select"]
        cls = getattr(model, select, None) or getattr(asr_model, select)
        return f"{section}.{select}", cls, set(list(inspect.signature(cls).parameters)[:2]) | {"upstream_rate"}
    return resolve


def _specaug(config):
    from s3prl.downstream.specaug import SpecAug

    return "specaug", SpecAug, set()


def _sv_module(config):  # Model(...) builds eval(module)(**hparams, input_dim=...)
    from s3prl.downstream.sv_voxceleb1 import model

    name = config[DE]["modelrc"]["module"]
    return f"{DE}.modelrc.module_config.{name}", getattr(model, name), {"input_dim"}


def _sv_loss(config):  # eval(ObjectiveLoss)(speaker_num=..., hidden_dim=..., **LossConfig[ObjectiveLoss])
    from s3prl.downstream.sv_voxceleb1 import model

    name = config[DE]["modelrc"]["ObjectiveLoss"]
    return f"{DE}.modelrc.LossConfig.{name}", getattr(model, name), {"hidden_dim", "speaker_num"}


def _sd_dataset(config):  # DiarizationDataset(mode, data_dir, **datarc)
    from s3prl.downstream.diarization.dataset import DiarizationDataset

    return f"{DE}.datarc", DiarizationDataset, {"mode", "data_dir"}


def _sd_model(config):  # Model(input_dim=..., output_class_num=..., **modelrc)
    from s3prl.downstream.diarization.model import Model

    return f"{DE}.modelrc", Model, {"input_dim", "output_class_num"}


EXPECTED = {
    "ks": dict(required=RUNNER | _de("datarc.speech_commands_root", "datarc.speech_commands_test_root",
                                     "datarc.batch_size", "datarc.num_workers", "modelrc.select", "modelrc.projector_dim"),
               arguments=[_utterance_model]),
    "ic": dict(required=RUNNER | _de("datarc.file_path", "datarc.train_batch_size", "datarc.eval_batch_size",
                                     "datarc.num_workers", "modelrc.select", "modelrc.projector_dim"),
               arguments=[_utterance_model]),
    "sid": dict(required=RUNNER | _de("datarc.file_path", "datarc.meta_data", "datarc.max_timestep",
                                      "datarc.train_batch_size", "datarc.eval_batch_size", "datarc.num_workers",
                                      "modelrc.select", "modelrc.projector_dim"),
                arguments=[_utterance_model]),
    "er": dict(required=RUNNER | _de("datarc.root", "datarc.meta_data", "datarc.pre_load", "datarc.valid_ratio",
                                     "datarc.train_batch_size", "datarc.eval_batch_size", "datarc.num_workers",
                                     "modelrc.select", "modelrc.projector_dim"),
               optional=_de("datarc.test_fold"), arguments=[_utterance_model]),
    "pr": dict(required=RUNNER | _de("corpus.name", "corpus.path", "corpus.lexicon", "corpus.train", "corpus.dev",
                                     "corpus.test", "corpus.bucketing", "corpus.batch_size", "text.mode",
                                     "text.vocab_file", "model.project_dim", "model.zero_infinity", "model.select",
                                     "metric", "metric_higher_better"),
               optional=_de("corpus.num_workers", "save_best_on"),
               arguments=[_rnn_or_linear(f"{DE}.model")]),
    "sf": dict(required=RUNNER | _de("corpus.name", "corpus.path", "corpus.train", "corpus.dev", "corpus.test",
                                     "corpus.bucketing", "corpus.batch_size", "corpus.train_speakers",
                                     "corpus.valid_speakers", "corpus.test_speakers", "text.mode", "text.vocab_file",
                                     "text.slots_file", "model.project_dim", "model.zero_infinity", "model.select",
                                     "metric", "metric_higher_better"),
               optional=_de("corpus.num_workers", "save_best_on"),
               arguments=[_rnn_or_linear(f"{DE}.model"), _specaug]),
    # dict_path is optional in s3prl, but its default (the package's char.dict) is not in the PyPI package.
    "asr": dict(required=RUNNER | _de("datarc.libri_root", "datarc.bucket_file", "datarc.dict_path",
                                      "datarc.batch_size", "datarc.eval_batch_size", "datarc.num_workers",
                                      "datarc.zero_infinity", "datarc.decoder_args.decoder_type", "datarc.train",
                                      "datarc.dev-clean", "datarc.test-clean", "modelrc.project_dim", "modelrc.select"),
                arguments=[_rnn_or_linear(f"{DE}.modelrc"), _specaug]),
    "qbe": dict(required={"runner"} | _de("max_workers", "feature_normalization", "silence_frame", "datarc.dataset_root",
                                          "datarc.batch_size", "datarc.num_workers", "dtwrc.dist_method",
                                          "dtwrc.minmax_norm", "dtwrc.step_pattern", "dtwrc.subsequence")),
    "asv": dict(required=RUNNER | _de("datarc.file_path", "datarc.vad_config.min_sec", "datarc.train_meta_data",
                                      "datarc.dev_meta_data", "datarc.test_meta_data", "datarc.max_timestep",
                                      "datarc.train_batch_size", "datarc.eval_batch_size", "datarc.num_workers",
                                      "modelrc.input_dim", "modelrc.module", "modelrc.agg_module",
                                      "modelrc.utter_module", "modelrc.ObjectiveLoss"),
                arguments=[_sv_module, _sv_loss]),
    "sd": dict(required=RUNNER | _de("datarc.num_speakers", "loaderrc.train_batchsize", "loaderrc.eval_batchsize",
                                     "loaderrc.num_workers", "loaderrc.train_dir", "loaderrc.dev_dir",
                                     "loaderrc.test_dir", "scorerc.save_predictions"),
               arguments=[_sd_dataset, _sd_model]),
}


def _leaves(node, prefix: str = "") -> set[str]:
    if isinstance(node, dict) and node:
        return set().union(*(_leaves(value, f"{prefix}{key}.") for key, value in node.items()))
    return {prefix[:-1]}


def _get(config: dict, dotted: str):
    for part in dotted.split("."):
        config = config[part]
    return config


def _argument_sections(name: str, config: dict) -> dict[str, tuple[type, set[str]]]:
    """{dotted key: (class, arguments the expert supplies)} for the task's **kwargs sections."""
    sections = {}
    for resolve in EXPECTED[name].get("arguments", []):
        key, cls, supplied = resolve(config)
        sections[key] = (cls, supplied)
    return sections


@pytest.mark.parametrize("name", list(TASKS))
def test_config_has_exactly_the_keys_its_expert_reads(name):
    task = TASKS[name]
    config = task.load_config()
    present = _leaves(config)
    expected = EXPECTED[name]
    required, optional = expected["required"], expected.get("optional", set()) | RUNNER_OPTIONAL
    if config.get("optimizer", {}).get("name") != "TorchOptim":
        required = required - {"optimizer.torch_optim_name"}
    missing = sorted(key for key in required if not any(p == key or p.startswith(key + ".") for p in present))
    assert not missing, f"{task.config} lacks keys its expert/runner read: {missing}"

    sections = _argument_sections(name, config)
    for key, (cls, supplied) in sections.items():
        given = _get(config, key) if _has(config, key) else {}
        parameters = inspect.signature(cls).parameters
        needed = {p for p, v in parameters.items() if v.default is inspect.Parameter.empty
                  and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)} - supplied - {"self"}
        assert needed <= set(given), f"{task.config}: {key} lacks arguments {sorted(needed - set(given))} of {cls.__name__}"
        if not any(v.kind is v.VAR_KEYWORD for v in parameters.values()):
            unknown = set(given) - set(parameters)
            assert not unknown, f"{task.config}: {key} has {sorted(unknown)}, which {cls.__name__} does not take"
    unread = sorted(leaf for leaf in present if leaf not in required | optional
                    and not any(leaf == s or leaf.startswith(s + ".") for s in sections))
    assert not unread, f"{task.config} has keys s3prl 0.4.18 never reads: {unread}"


def _has(config: dict, dotted: str) -> bool:
    try:
        _get(config, dotted)
        return True
    except (KeyError, TypeError):
        return False


# The literal key reads in each expert's source, e.g. self.datarc["batch_size"] -> downstream_expert.datarc.batch_size;
# every one must be covered by the lists above (so the lists cannot fall behind the source they were read from).
_READS = [
    (r"self\.datarc\[['\"]([\w-]+)['\"]\]", f"{DE}.datarc."),
    (r"self\.datarc\.get\(['\"]([\w-]+)['\"]", f"{DE}.datarc."),
    (r"self\.modelrc\[['\"](\w+)['\"]\]", f"{DE}.modelrc."),
    (r"self\.(dtwrc|loaderrc|scorerc)\[['\"](\w+)['\"]\]", f"{DE}."),
    (r"downstream_expert\[['\"](\w+)['\"]\](?:\[['\"](\w+)['\"]\])?", f"{DE}."),
    (r"downstream_expert\.get\(['\"](\w+)['\"]", f"{DE}."),
    (r"(?<!self\.)\bmodelrc\[['\"](\w+)['\"]\]", f"{DE}.model."),  # ctc: modelrc = downstream_expert["model"]
    (r"self\.corpus\[['\"](\w+)['\"]\]", f"{DE}.corpus."),  # ctc: self.corpus = downstream_expert["corpus"]
]


@pytest.mark.parametrize("name", list(TASKS))
def test_key_lists_cover_every_literal_read_in_the_expert_source(name):
    task = TASKS[name]
    source = (S3PRL / "downstream" / task.downstream / "expert.py").read_text()
    reads = set()
    for pattern, prefix in _READS:
        if prefix == f"{DE}.model." and task.downstream != "ctc":
            continue
        for match in re.finditer(pattern, source):
            reads.add(prefix + ".".join(group for group in match.groups() if group))
    assert len(reads) >= 3, f"the source scan found too little in {task.downstream}/expert.py: {reads}"
    expected = EXPECTED[name]
    known = expected["required"] | expected.get("optional", set()) | set(_argument_sections(name, task.load_config()))
    uncovered = sorted(read for read in reads
                       if not any(k == read or k.startswith(read + ".") or read.startswith(k + ".") for k in known))
    assert not uncovered, f"{task.downstream}/expert.py reads keys the test's list for {name} misses: {uncovered}"

    runner = (S3PRL / "downstream" / "runner.py").read_text()
    indexed = re.findall(r"self\.config\[['\"]runner['\"]\]\[['\"](\w+)['\"]\]", runner)
    got = re.findall(r"self\.config\[['\"]runner['\"]\]\.get\(['\"](\w+)['\"]", runner)  # incl. .get without default
    assert {f"runner.{key}" for key in indexed + got} == {k for k in RUNNER | RUNNER_OPTIONAL if k.startswith("runner.")}


# ---- the table --------------------------------------------------------------------------------------------------

def test_table_covers_the_ten_superb_tasks():
    assert list(TASKS) == ["pr", "ks", "ic", "sid", "er", "asr", "qbe", "sf", "asv", "sd"]
    assert {t.name: t.downstream for t in TASKS.values()} == {
        "pr": "ctc", "ks": "speech_commands", "ic": "fluent_commands", "sid": "voxceleb1", "er": "emotion",
        "asr": "asr", "qbe": "quesst14_dtw", "sf": "ctc", "asv": "sv_voxceleb1", "sd": "diarization"}
    for task in TASKS.values():
        assert task.config == RECIPES_DIR / task.name / "config.yaml"
        assert (S3PRL / "downstream" / task.downstream / "expert.py").is_file()
        for key in task.data_keys:  # placeholders, so a forgotten override fails loudly
            values = _get(task.load_config(), key)
            assert all(str(v).startswith("/path/to/") for v in (values if isinstance(values, list) else [values])), key
    assert task_for_downstream("ctc").name == "pr" and task_for_downstream("speech_commands").name == "ks"
    assert task_for_downstream("mosei") is None
    assert TASKS["er"].folds == ("fold1", "fold2", "fold3", "fold4", "fold5")
    assert TASKS["er"].fold_overrides("fold4") == ["config.downstream_expert.datarc.test_fold=fold4"]
    assert TASKS["asr"].test_split == "test-clean" and TASKS["asr"].best_checkpoint == "dev-clean-best.ckpt"


def test_cache_paths_are_where_s3prl_caches():
    pytest.importorskip("librosa")
    import s3prl.downstream.voxceleb1.dataset as vox_dataset

    assert [str(p) for p in TASKS["sid"].cache_paths()] == [str(Path(vox_dataset.CACHE_PATH))]
    sv_source = (S3PRL / "downstream" / "sv_voxceleb1" / "dataset.py").read_text()
    assert "Path(os.path.dirname(__file__)) / '.wav_lengths'" in sv_source
    assert TASKS["asv"].cache_paths() == [S3PRL / "downstream" / "sv_voxceleb1" / ".wav_lengths"]
    assert all(not TASKS[name].cache_paths() for name in TASKS if name not in ("sid", "asv"))


def test_corpus_overrides_reuse_the_corpus_module(tmp_path):
    from distill.corpora.synthetic import s3prl_overrides

    for task in TASKS.values():  # every task has a local stand-in, and its overrides set exactly its data keys
        keys = s3prl_overrides(task.corpus, tmp_path / task.corpus)[task.downstream]
        assert task.corpus_overrides(tmp_path) == [f"config.{k}={v if isinstance(v, str) else repr(v)}"
                                                   for k, v in keys.items()]
        assert {item.split("=")[0][len("config."):] for item in task.corpus_overrides(tmp_path)} == set(task.data_keys)
    assert "snips" in TASKS["sf"].corpus_overrides(tmp_path)[0]  # shares -d ctc with PR, but not its LibriSpeech data


def _write_table(tmp_path: Path, edit) -> Path:
    table = yaml.safe_load(TASKS_FILE.read_text())
    for entry in table.values():
        entry["config"] = str(RECIPES_DIR / entry["config"])
    edit(table)
    path = tmp_path / "tasks.yaml"
    path.write_text(yaml.safe_dump(table))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda t: t["ks"].update(metrc="acc"), r"ks\.metrc"),
    (lambda t: t["ic"].pop("metric"), r"missing key\(s\) ic\.metric"),
    (lambda t: t["sid"].update(higher_is_better="yes"), r"sid\.higher_is_better: expected bool"),
    (lambda t: t["er"].update(score_source="tensorboard"), r"er\.score_source must be one of"),
    (lambda t: t["ks"].update(score_pattern="at step (?P<step>\\d+)"), r"ks\.score_pattern must contain \{split\}"),
    (lambda t: t["ks"].update(score_pattern="{split} (?P<value>{number})"), r"ks\.score_pattern needs a \(\?P<score>"),
    (lambda t: t["ks"].update(config="nowhere.yaml"), r"ks\.config names a missing file"),
    (lambda t: t["ks"].update(data_keys=["downstream_expert.datarc.nope"]), r"ks\.data_keys names 'downstream_expert"),
    (lambda t: t["ks"].update(dev_split="valid"), r"ks\.dev_split 'valid' is not in the recipe"),
    (lambda t: t["er"].update(fold_override=None), r"er\.fold_override must be given"),
    (lambda t: t["sf"].update(default_for_downstream=True), r"share downstream 'ctc'"),
    (lambda t: t["asr"].update(corpus="timit"), r"asr\.corpus must be one of"),
    (lambda t: t["ks"].update(item_files=["test_predict.txt"]), r"ks\.item_files must be \[predictions, truth\]"),
    (lambda t: t["ic"].update(item_separator=""), r"ic\.item_separator must not be empty"),
])
def test_table_errors_name_the_bad_key(tmp_path, edit, message):
    with pytest.raises(TaskTableError, match=message):
        load_tasks(_write_table(tmp_path, edit))


# ---- scores -----------------------------------------------------------------------------------------------------
# Each expert's own print/write statement (asserted to be in its source), rendered with str.format the way Python
# renders the f-string, then read back.
LINES = {
    "ks": ("f.write(f'{mode} at step {global_step}: {average}\\n')", "{mode} at step {global_step}: {average}"),
    "ic": ("f.write(f'{mode} at step {global_step}: {average}\\n')", "{mode} at step {global_step}: {average}"),
    "sid": ("f.write(f'{mode} at step {global_step}: {average}\\n')", "{mode} at step {global_step}: {average}"),
    "er": ("f.write(f'{mode} at step {global_step}: {average}\\n')", "{mode} at step {global_step}: {average}"),
    "pr": ('print(f"{split} {key}: {value}")', "{mode} per: {average}"),
    "sf": ('print(f"{split} {key}: {value}")', "{mode} slot_type_f1: {average}"),
    "asr": ('print(f"{split} wer: {wer}")', "{mode} wer: {average}"),
    "asv": ("print(f'sv-voxceleb1/{mode}-EER: {eer}')", "sv-voxceleb1/{mode}-EER: {average}"),
    "sd": ('print("mode {} acc {} der {}".format(mode, average_acc, average_der))', "mode {mode} acc 0.5 der {average}"),
}


@pytest.mark.parametrize("name", [n for n in TASKS if TASKS[n].score_source in ("log.log", "stdout")])
def test_parse_scores_reads_the_experts_own_lines(name):
    task = TASKS[name]
    statement, template = LINES[name]
    assert statement in (S3PRL / "downstream" / task.downstream / "expert.py").read_text()
    other = "train" if task.dev_split != "train" else "test"
    splits = [s for s in (task.dev_split, task.test_split) if s]
    evaluations = [(s, step, 0.25 + step / 1e5) for step in (1000, 2000) for s in splits] + [(other, 2000, 0.99)]
    text = "\n".join(template.format(mode=s, global_step=step, average=v) for s, step, v in evaluations) + "\n"
    if task.score_source == "stdout":  # tqdm's carriage-return redraws may precede a line
        text = "\rdev: 100%|##########| 3/3 [00:00<00:00, 9.1it/s]" + text
    for split in splits:
        expected = [v for s, _, v in evaluations if s == split]
        keys = (1000, 2000) if task.score_has_step else (0, 1)
        assert parse_scores(text, task, split) == dict(zip(keys, expected))
    assert parse_scores(text, task, "nosuchsplit") == {}
    if task.score_source == "log.log":
        assert parse_scores(f"New best on dev at step 7: 0.5\n{text}", task, task.dev_split).keys() == {1000, 2000}
        assert math.isnan(parse_scores("test at step 0: 1e-05\ntest at step 0: nan\n", task, "test")[0])  # last wins


def test_parse_scores_distinguishes_asr_splits_and_refuses_qbe():
    text = "dev-clean wer: 12.5\ndev-other wer: 30.0\ntest-clean wer: 11.0\n"
    assert parse_scores(text, TASKS["asr"], "dev-clean") == {0: 12.5}
    assert parse_scores(text, TASKS["asr"], "test-clean") == {0: 11.0}
    with pytest.raises(TaskTableError, match="qbe"):
        parse_scores("", TASKS["qbe"], "dev")


# ---- s3prl's real experts on the local corpus -------------------------------------------------------------------

needs_corpus = pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                                  reason="the local corpus needs the espeak-ng and sox system packages")


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory) -> Path:
    from distill.corpora.synthetic import build_corpus

    root = tmp_path_factory.mktemp("mini_superb")
    build_corpus(root, parts=("speech_commands", "fluent_commands", "voxceleb1"), size="tiny", progress=False)
    return root


class _Logger:
    def add_scalar(self, *args, **kwargs):
        pass


@needs_corpus
@pytest.mark.parametrize("name", ["ks", "ic", "sid"])
def test_s3prl_expert_runs_our_recipe_on_the_local_corpus(name, corpus_root, tmp_path, monkeypatch):
    """The recipe + Task.corpus_overrides through s3prl's own override parser, then its DownstreamExpert as the
    runner builds it: a batch of every split, a forward pass, and the log line parse_scores reads."""
    import importlib

    import torch
    from s3prl.utility.helper import override

    task = TASKS[name]
    for module in task.requires:
        pytest.importorskip(module)
    if name == "sid":  # s3prl caches voxceleb1 file lists inside its package; keep them out of it
        import s3prl.downstream.voxceleb1.dataset as vox_dataset

        monkeypatch.setattr(vox_dataset, "CACHE_PATH", str(tmp_path / "cache"))
    config = task.load_config()
    small = {"ks": ["batch_size=4"], "ic": ["train_batch_size=4", "eval_batch_size=4"],
             "sid": ["train_batch_size=4", "eval_batch_size=2"]}[name]
    items = task.corpus_overrides(corpus_root) + [f"config.{DE}.datarc.num_workers=0"]
    items += [f"config.{DE}.datarc.{item}" for item in small]
    override(",,".join(items), Namespace(), config)

    expert_module = importlib.import_module(f"s3prl.downstream.{task.downstream}.expert")
    expert = expert_module.DownstreamExpert(upstream_dim=8, upstream_rate=320, expdir=str(tmp_path), **config)
    torch.manual_seed(0)
    for split, step in (("train", 3), (task.dev_split, 3), (task.test_split, 0)):
        wavs, *others = next(iter(expert.get_dataloader(split)))
        assert len(wavs) > 0 and all(w.ndim == 1 and len(w) >= 8000 for w in wavs)
        features = [torch.randn(len(w) // 320, 8) for w in wavs]
        records = defaultdict(list)
        loss = expert(split, features, *others, records=records)
        assert torch.isfinite(loss)
        expert.log_records(split, records=records, logger=_Logger(), global_step=step)
        accuracy = sum(records["acc"]) / len(records["acc"])
        scores = parse_scores((tmp_path / "log.log").read_text(), task, split)
        assert scores[step] == pytest.approx(accuracy)


@needs_corpus
def test_keyword_spotting_through_the_launcher_default_recipe(corpus_root, tmp_path):
    """`gendistiller superb -d speech_commands` (no -c: ks/config.yaml from tasks.yaml) with s3prl's fbank upstream;
    parse_scores on the log.log and stdout the real runner wrote."""
    pytest.importorskip("catalyst")
    task = TASKS["ks"]
    expdir = tmp_path / "ks"
    options = task.corpus_overrides(corpus_root) + [
        f"config.{DE}.datarc.batch_size=8", f"config.{DE}.datarc.num_workers=0", "config.runner.total_steps=4",
        "config.runner.log_step=2", "config.runner.eval_step=4", "config.runner.save_step=4"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", "distill.cli", "superb", "-m", "train", "-u", "fbank_no_cmvn",
                             "-d", "speech_commands", "--device", "cpu", "-p", str(expdir), "-o", ",,".join(options)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"-c {task.config}" in result.stderr  # the launcher's echo of the full argv
    log = (expdir / "log.log").read_text()
    dev, test = parse_scores(log, task, "dev"), parse_scores(log, task, "test")
    assert list(dev) == [4] and list(test) == [4] and 0.0 <= test[4] <= 1.0
    assert set(parse_scores(log, task, "train")) == {2, 4}
    printed = re.findall(r"^test acc: (\S+)$", result.stdout, re.MULTILINE)
    assert [float(value) for value in printed] == [test[4]]


def _write_iemocap_layout(root: Path, sessions: int = 2, per_session: int = 6) -> None:
    """IEMOCAP's folder and label-file layout (noise audio: s3prl's readers only need the structure)."""
    import numpy as np
    import soundfile

    rng = np.random.default_rng(0)
    labels = ["neu", "hap", "ang", "sad", "exc", "fru"]  # fru is not one of the 4 classes: dropped by s3prl
    for session in range(1, sessions + 1):
        dialog = f"Ses0{session}F_impro01"
        wav_dir = root / f"Session{session}" / "sentences" / "wav" / dialog
        label_dir = root / f"Session{session}" / "dialog" / "EmoEvaluation"
        wav_dir.mkdir(parents=True)
        label_dir.mkdir(parents=True)
        lines = ["% header line, ignored"]
        for i in range(per_session):
            utterance = f"{dialog}_F{i:03d}"
            soundfile.write(wav_dir / f"{utterance}.wav", 0.1 * rng.standard_normal(12000 + 800 * i), 16000)
            lines.append(f"[{i}.0000 - {i}.7500]\t{utterance}\t{labels[i % len(labels)]}\t[2.5000, 2.5000, 2.5000]")
        (label_dir / f"{dialog}.txt").write_text("\n".join(lines) + "\n")


def test_s3prl_emotion_expert_runs_our_recipe_per_fold(tmp_path):
    """ER: s3prl's own IEMOCAP_preprocess writes the per-fold meta files; the expert builds the fold's splits."""
    pytest.importorskip("librosa")
    import torch
    from s3prl.downstream.emotion import IEMOCAP_preprocess
    from s3prl.downstream.emotion.expert import DownstreamExpert
    from s3prl.utility.helper import override

    root = tmp_path / "IEMOCAP_full_release"
    _write_iemocap_layout(root)
    IEMOCAP_preprocess.main(str(root))
    task = TASKS["er"]
    config = task.load_config()
    items = [f"config.{DE}.datarc.root={root}", f"config.{DE}.datarc.meta_data={root / 'meta_data'}",
             f"config.{DE}.datarc.num_workers=0", f"config.{DE}.datarc.pre_load=False", *task.fold_overrides("fold2")]
    override(",,".join(items), Namespace(), config)
    expert = DownstreamExpert(upstream_dim=8, upstream_rate=320, expdir=str(tmp_path), **config)
    assert expert.fold == "fold2"
    assert len(expert.train_dataset) + len(expert.dev_dataset) == 5 and len(expert.test_dataset) == 5  # Session1 / 2
    for split in ("train", task.dev_split, task.test_split):
        wavs, *others = next(iter(expert.get_dataloader(split)))
        records = defaultdict(list)
        expert(split, [torch.randn(len(w) // 320, 8) for w in wavs], *others, records=records)
        expert.log_records(split, records=records, logger=_Logger(), global_step=5)
        scores = parse_scores((tmp_path / "log.log").read_text(), task, split)
        assert scores == {5: pytest.approx(sum(records["acc"]) / len(records["acc"]))}
