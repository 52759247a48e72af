"""Property tests of the config boundary: whatever values the keys of every section are given (drawn from their
types, their edges and plain junk), `gendistiller distill` and `gendistiller pretrain-teacher` either start training
(the first step completes) or exit 2 with one line naming the key; never a traceback, never a hang."""
import contextlib
import io
import math
import tempfile
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from distill.cli import main as cli
from distill.models.student_config import DistilHuBERTConfig, GenDistillerConfig
from distill.teachers.tiny import TINY_WAVLM_CFG
from distill.training.config import DataConfig, OptimConfig, RunConfig, TrainingConfig
from distill.training.pretrain import ObjectiveConfig, PretrainOptimConfig, UnitsConfig
from tests.conftest import time_limit, write_tone_corpus
from tests.test_pretrain import SMALL

# Few examples, each a tiny run cut at its first step: the whole file stays within a minute or two on 2 cores.
PROPERTY = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])
SECONDS = 60  # per example: longer is a hang


class Started(BaseException):
    """The first training step completed: the run started (BaseException: no error boundary takes it for its own)."""


JUNK = st.sampled_from([None, "x", "", [1, "a"], {"a": 1}, True, -1, 0.5, [], {}])
INTS = st.one_of(st.integers(-3, 8), st.sampled_from([401, 10**6, 2**40]))
FLOATS = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, -1.0, 0.0, 1e-3, 0.5, 1.0, 2.0, 1e30]),
                   st.floats(-2, 2, allow_nan=False))
STRINGS = st.sampled_from(["", "auto", "x", "cpu", "bf16", "scheduled", "early"])


def values_of(annotation: str) -> st.SearchStrategy:
    """Values of a field's type (its edges included), and now and then junk of another type."""
    kinds = {"int": INTS, "float": FLOATS, "bool": st.booleans(), "str": STRINGS,
             "list[int]": st.lists(INTS, max_size=4), "list[float]": st.lists(FLOATS, max_size=4),
             "dict[str, Any]": st.dictionaries(st.sampled_from(["dim", "num_layers", "conv_layers", "x"]), INTS,
                                               max_size=2)}
    options = [strategy for name, strategy in kinds.items() if name in annotation.split(" | ")] or [JUNK]
    return st.one_of(*options, JUNK)


def keys_of(section: str, *classes: type) -> dict[str, st.SearchStrategy]:
    return {f"{section}.{item.name}": values_of(str(item.type)) for cls in classes for item in fields(cls)}


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("properties")
    (root / "a_file").write_text("x")
    return {"root": root, "corpus": write_tone_corpus(root / "corpus", num_files=8), "file": root / "a_file"}


def distill_keys(teacher: Path, places: dict[str, Path]) -> dict[str, st.SearchStrategy]:
    paths = st.sampled_from(["", str(places["file"]), str(places["file"] / "under"), str(places["root"] / "missing")])
    return {"teacher": st.one_of(paths, st.sampled_from([str(teacher), "module:no_such_module:factory"]), JUNK),
            "student.kind": st.one_of(st.sampled_from(["gendistiller", "distilhubert", "rnn"]), JUNK),
            **keys_of("student", GenDistillerConfig, DistilHuBERTConfig), **keys_of("training", TrainingConfig),
            **keys_of("data", DataConfig), **keys_of("optim", OptimConfig), **keys_of("run", RunConfig),
            "data.train": st.one_of(paths, st.just(str(places["corpus"]))),
            "run.output_dir": st.one_of(paths, JUNK)}


def pretrain_keys(places: dict[str, Path]) -> dict[str, st.SearchStrategy]:
    model = {f"model.{key}": st.one_of(values_of(type(value).__name__), JUNK) for key, value in TINY_WAVLM_CFG.items()}
    return {**model, **keys_of("units", UnitsConfig), **keys_of("objective", ObjectiveConfig),
            **keys_of("data", DataConfig), **keys_of("optim", PretrainOptimConfig), **keys_of("run", RunConfig),
            "run.output_dir": st.sampled_from([str(places["file"]), str(places["file"] / "under")])}


def drawn(keys: dict[str, st.SearchStrategy]) -> st.SearchStrategy:
    """One to three distinct keys with a value each."""
    names = st.lists(st.sampled_from(sorted(keys)), min_size=1, max_size=3, unique=True)
    return names.flatmap(lambda chosen: st.tuples(*(st.tuples(st.just(name), keys[name]) for name in chosen)))


def override(key: str, value: object) -> str:
    import yaml

    return f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"


def run_cli(args: list[str]) -> tuple[str, int | None]:
    """('started', None) or ('exit', status) with stderr checked: one line, no traceback."""
    err = io.StringIO()
    with time_limit(SECONDS), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            status = cli(args)
        except Started:
            return "started", None
    return err.getvalue(), status


def assert_started_or_named(outcome: tuple[str, int | None], chosen: tuple[tuple[str, object], ...]) -> None:
    err, status = outcome
    if status is None:
        event("started")
        return
    assert status == 2, (status, chosen, err)
    assert "Traceback" not in err, (chosen, err)
    lines = [line for line in err.splitlines() if line.startswith("gendistiller ")]
    assert len(lines) == 1, (chosen, err)
    # The key given, or another key of its section that the value made wrong (e.g. a kind without that key).
    named = [key for key, _ in chosen if key in lines[0] or f"{key.partition('.')[0]}." in lines[0]
             or f"config key {key.partition('.')[0]}" in lines[0]]
    assert named, (chosen, lines[0])
    event(f"exit 2 naming {named[0]}")


@pytest.fixture
def first_step_starts(monkeypatch):
    """The first training step of either loop completes, then raises Started: every example stays one step long."""
    from distill.training import pretrain, trainer

    def started(real):
        def step(*args, **kwargs):
            real(*args, **kwargs)
            raise Started
        return step

    monkeypatch.setattr(trainer, "train_step", started(trainer.train_step))
    monkeypatch.setattr(pretrain, "pretrain_step", started(pretrain.pretrain_step))


@PROPERTY
@given(data=st.data())
def test_any_distill_config_starts_or_names_its_key(data, tiny_wavlm_path, places, first_step_starts):
    chosen = data.draw(drawn(distill_keys(tiny_wavlm_path, places)))
    out = tempfile.mkdtemp(dir=places["root"])
    args = ["distill", "--config", "tiny_gendistiller", f"teacher={tiny_wavlm_path}", f"data.train={places['corpus']}",
            f"run.output_dir={out}", "run.progress=false", *(override(key, value) for key, value in chosen)]
    assert_started_or_named(run_cli(args), chosen)


@PROPERTY
@given(data=st.data())
def test_any_pretraining_config_starts_or_names_its_key(data, places, first_step_starts):
    chosen = data.draw(drawn(pretrain_keys(places)))
    out = Path(tempfile.mkdtemp(dir=places["root"])) / "teacher.pt"
    args = ["pretrain-teacher", "--data", str(places["corpus"]), "--out", str(out), *SMALL,
            *(override(key, value) for key, value in chosen)]
    assert_started_or_named(run_cli(args), chosen)
