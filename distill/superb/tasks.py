"""The SUPERB task table (`superb_recipes/tasks.yaml`): which s3prl downstream and config run each task, and how
its score is read back from what s3prl's runner writes.

    tasks = load_tasks()                     # {"pr": Task, "ks": Task, ...}, in file order
    task = task_for_downstream("ctc")        # PR (the table marks it default_for_downstream over SF)
    parse_scores(Path(expdir, "log.log").read_text(), tasks["ks"], "dev")   # {5000: 0.9123, 10000: 0.9387, ...}

Where a score appears depends on the expert (s3prl 0.4.18):
- `log.log` (EXPDIR/log.log): KS, IC, SID and ER write "dev at step 5000: 0.9123" for every evaluation (and
  "train at step N: ..." every log_step; `-m evaluate` writes step 0);
- `stdout` (the runner's standard output, captured on its own: tqdm draws on stderr): PR/SF (`-d ctc`) print
  "dev per: 0.1234", ASR "dev-clean wer: 12.3", ASV "sv-voxceleb1/test-EER: 0.05", SD "mode dev acc 0.9 der 0.1",
  with no step;
- `mtwv`: QbE writes a detection list (EXPDIR/benchmark.stdlist.xml) that `distill.superb.qbe_scoring` scores (MTWV)
  against the QUESST 2014 ground truth under the data root;
- `none`: no score is read back.
Values are as logged (accuracy as a fraction, ASR WER in percent); `Task.scale` converts them to SUPERB's units.
KS, IC and SID also write one line per item at every evaluation (`Task.item_files`; read by `distill.superb.intervals`).
"""
from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import yaml

from distill.io.configuration import from_dict

RECIPES_DIR = Path(__file__).resolve().parents[2] / "superb_recipes"
TASKS_FILE = RECIPES_DIR / "tasks.yaml"

SCORE_SOURCES = ("log.log", "stdout", "mtwv", "none")
# A number as Python prints a float (or an int): 0.9123, 1e-05, 12, nan, inf.
NUMBER = r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)"


class TaskTableError(ValueError):
    """tasks.yaml (or a config it names) does not have the shape this module expects."""


@dataclass(frozen=True)
class _Entry:
    """One task of tasks.yaml exactly as written (field names = YAML keys; see the comments there)."""

    title: str
    downstream: str
    config: str
    metric: str
    higher_is_better: bool
    score_source: str
    dev_split: str | None
    test_split: str
    scale: float = 1.0
    score_pattern: str | None = None
    best_checkpoint: str | None = None
    overrides: list[str] = field(default_factory=list)
    extra_args: list[str] = field(default_factory=list)
    folds: list[str] = field(default_factory=list)
    fold_override: str | None = None
    corpus: str | None = None
    data_keys: list[str] = field(default_factory=list)
    requires: list[str] = field(default_factory=list)
    s3prl_caches: list[str] = field(default_factory=list)
    item_files: list[str] = field(default_factory=list)
    item_separator: str = " "
    trains: bool = True
    default_for_downstream: bool = False


_LISTS = ("overrides", "extra_args", "folds", "data_keys", "requires", "s3prl_caches", "item_files")
_REQUIRED = ("title", "downstream", "config", "metric", "higher_is_better", "score_source", "dev_split", "test_split")


@dataclass(frozen=True)
class Task:
    """A SUPERB task as s3prl's runner runs it."""

    name: str  # table key: pr, ks, ic, sid, er, asr, qbe, sf, asv, sd
    title: str  # e.g. "Keyword Spotting"
    downstream: str  # s3prl's -d
    config: Path  # the recipe (-c), absolute
    metric: str  # s3prl's name of the score: acc, per, wer, EER, der, slot_type_f1, mtwv
    higher_is_better: bool
    scale: float  # logged value x scale = SUPERB's unit (percent for all but QbE)
    score_source: str  # "log.log", "stdout", "mtwv" or "none" (see the module docstring)
    score_pattern: Optional[str]  # regex template: {split} and {number} are filled in; groups `score`, optional `step`
    dev_split: Optional[str]  # split that selects the learning rate / checkpoint; None: the task has no dev set (ASV)
    test_split: str  # the split to pass as `-t` when evaluating
    best_checkpoint: Optional[str]  # file the expert saves on a new best dev score; None: none (ASV, QbE)
    overrides: tuple[str, ...]  # `-o` items ("config.a.b=value") every run of the task needs
    extra_args: tuple[str, ...]  # more runner flags every run needs
    folds: tuple[str, ...]  # cross-validation folds, each a separate run whose test scores are averaged (ER)
    fold_override: Optional[str]  # `-o` item selecting a fold, with {fold}
    corpus: Optional[str]  # `gendistiller make-corpus` part this task runs on locally (None: no local corpus)
    data_keys: tuple[str, ...]  # config keys that point at the task's data (placeholders in the recipe)
    requires: tuple[str, ...]  # modules the expert needs beyond s3prl's core (importable names)
    s3prl_caches: tuple[str, ...]  # what the expert caches inside the s3prl package (relative to it), whatever the data
    item_files: tuple[str, ...]  # () or the expert's per-item [predictions, truth] files ({split}), rewritten per evaluation
    item_separator: str  # between the item id and its label(s) on each line of those files
    trains: bool  # False for QbE (evaluate only, no downstream model)
    default_for_downstream: bool  # the task `-d <downstream>` means where several tasks share a downstream

    def score_regex(self, split: str) -> re.Pattern[str]:
        """The compiled score pattern for one split (multiline: ^ and $ match at every line)."""
        if self.score_pattern is None:
            raise TaskTableError(f"task {self.name!r} ({self.title}) writes no score s3prl's runner shows "
                                 f"(score_source: {self.score_source}); see superb_recipes/README.md")
        pattern = self.score_pattern.replace("{split}", re.escape(split)).replace("{number}", NUMBER)
        return re.compile(pattern, re.MULTILINE)

    def best_key(self, scores: Mapping[Any, float]) -> Any:
        """The key of the best score (the first of equals: s3prl keeps dev-best.ckpt only for a strictly better one)."""
        return (max if self.higher_is_better else min)(scores, key=scores.__getitem__)

    @property
    def score_has_step(self) -> bool:
        """Whether the score line names the runner's step (else parse_scores numbers evaluations 0, 1, ...)."""
        return self.score_pattern is not None and "(?P<step>" in self.score_pattern

    def fold_overrides(self, fold: str) -> list[str]:
        """The `-o` items of one cross-validation fold (ER: `fold1` ... `fold5`)."""
        if fold not in self.folds:
            raise ValueError(f"task {self.name!r} has no fold {fold!r}; its folds: {list(self.folds) or 'none'}")
        return [self.fold_override.replace("{fold}", fold)]

    def corpus_overrides(self, root: Union[str, Path]) -> list[str]:
        """`-o` items pointing this task at a `gendistiller make-corpus` root (or real data arranged the same way:
        ROOT/speech_commands/{train,test}, ROOT/fluent_commands, ROOT/voxceleb1 ...); [] without a corpus."""
        if self.corpus is None:
            return []
        from distill.corpora.synthetic import s3prl_overrides

        keys = s3prl_overrides(self.corpus, Path(root) / self.corpus)[self.downstream]
        return [f"config.{key}={value if isinstance(value, str) else repr(value)}" for key, value in keys.items()]

    def load_config(self) -> dict[str, Any]:
        """The recipe as a plain dict."""
        return yaml.safe_load(self.config.read_text())

    def cache_paths(self) -> list[Path]:
        """s3prl's in-package caches for this task (file lists that ignore a changed data root): delete them before a
        run on other data. Empty when s3prl is not installed."""
        spec = importlib.util.find_spec("s3prl")
        if spec is None or not spec.submodule_search_locations:
            return []
        package = Path(list(spec.submodule_search_locations)[0])
        return [package / relative for relative in self.s3prl_caches]

    def item_paths(self, folder: Union[str, Path], split: str) -> list[Path]:
        """The expert's per-item files of `split` in `folder`: [predictions, truth], or [] for a task without them."""
        return [Path(folder) / template.replace("{split}", split) for template in self.item_files]

    def missing_requirements(self) -> list[str]:
        """Modules in `requires` that cannot be imported here."""
        return [name for name in self.requires if not _importable(name)]


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a missing parent package
        return False


# ---- loading and validation --------------------------------------------------------------------------------


def _get(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def _build(name: str, raw: Any, base: Path) -> Task:
    where = f"{name}"
    if not isinstance(raw, Mapping):
        raise TaskTableError(f"task {name!r}: expected a mapping of keys, got {type(raw).__name__}: {raw!r}")
    missing = [key for key in _REQUIRED if key not in raw]
    if missing:
        raise TaskTableError(f"task {name!r}: missing key(s) {', '.join(f'{where}.{k}' for k in missing)}")
    try:
        entry: _Entry = from_dict(_Entry, raw, where)
    except ValueError as error:
        raise TaskTableError(f"task {name!r}: {error}") from None
    for key in _LISTS:
        values = getattr(entry, key)
        if not all(isinstance(value, str) for value in values):
            raise TaskTableError(f"task {name!r}: {where}.{key} must be a list of strings, got {values!r}")

    def bad(key: str, problem: str) -> TaskTableError:
        return TaskTableError(f"task {name!r}: {where}.{key} {problem}")

    if entry.score_source not in SCORE_SOURCES:
        raise bad("score_source", f"must be one of {list(SCORE_SOURCES)}, got {entry.score_source!r}")
    if (entry.score_source in ("log.log", "stdout")) != (entry.score_pattern is not None):
        raise bad("score_pattern", "must be given exactly when scores are read from log.log or stdout")
    if entry.score_pattern is not None:
        if "{split}" not in entry.score_pattern:
            raise bad("score_pattern", f"must contain {{split}}: {entry.score_pattern!r}")
        try:
            groups = re.compile(entry.score_pattern.replace("{split}", "dev").replace("{number}", NUMBER)).groupindex
        except re.error as error:
            raise bad("score_pattern", f"is not a valid regex ({error}): {entry.score_pattern!r}") from None
        if "score" not in groups or not set(groups) <= {"score", "step"}:
            raise bad("score_pattern", f"needs a (?P<score>...) group and may have (?P<step>...), got {sorted(groups)}")
    if entry.scale <= 0:
        raise bad("scale", f"must be positive, got {entry.scale}")
    if bool(entry.folds) != (entry.fold_override is not None):
        raise bad("fold_override", "must be given exactly when folds are")
    if entry.fold_override is not None and "{fold}" not in entry.fold_override:
        raise bad("fold_override", f"must contain {{fold}}: {entry.fold_override!r}")
    if entry.item_files and (len(entry.item_files) != 2 or not all("{split}" in t for t in entry.item_files)):
        raise bad("item_files", f"must be [predictions, truth] file names, each with {{split}}, got {entry.item_files!r}")
    if not entry.item_separator:
        raise bad("item_separator", "must not be empty")
    if entry.corpus is not None:
        from distill.corpora.synthetic import PARTS

        if entry.corpus not in PARTS:
            raise bad("corpus", f"must be one of the make-corpus parts {list(PARTS)}, got {entry.corpus!r}")

    config_path = (base / entry.config).resolve()
    if not config_path.is_file():
        raise bad("config", f"names a missing file: {config_path}")
    try:
        config = yaml.safe_load(config_path.read_text())
    except yaml.YAMLError as error:
        raise bad("config", f"is not valid YAML ({config_path}): {error}") from None
    if not isinstance(config, Mapping) or not isinstance(config.get("downstream_expert"), Mapping):
        raise bad("config", f"must be an s3prl recipe with a downstream_expert section: {config_path}")
    for key in entry.data_keys:
        try:
            _get(config, key)
        except KeyError:
            raise bad("data_keys", f"names {key!r}, which {config_path.name} does not have") from None
    eval_splits = config.get("runner", {}).get("eval_dataloaders", [])
    if entry.trains and entry.dev_split is not None and entry.dev_split not in eval_splits:
        raise bad("dev_split", f"{entry.dev_split!r} is not in the recipe's runner.eval_dataloaders {eval_splits}")

    values = {key: getattr(entry, key) for key in _Entry.__dataclass_fields__}
    values.update(config=config_path, scale=float(entry.scale))
    values.update({key: tuple(values[key]) for key in _LISTS})
    return Task(name=name, **values)


def load_tasks(path: Union[str, Path] = TASKS_FILE) -> dict[str, Task]:
    """Every task of the table, in file order; configs are resolved relative to the table's folder.

    Raises TaskTableError naming the task and key for unknown or missing keys, wrong types, a missing or
    malformed config, a bad score pattern, or a downstream shared by several tasks without exactly one
    `default_for_downstream: true`.
    """
    path = Path(path)
    try:
        table = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise TaskTableError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(table, Mapping) or not table:
        raise TaskTableError(f"{path}: expected a mapping of task name -> task, got {type(table).__name__}")
    tasks = {}
    for name, raw in table.items():
        if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise TaskTableError(f"{path}: task names are lower-case identifiers, got {name!r}")
        tasks[name] = _build(name, raw, path.parent)
    by_downstream: dict[str, list[Task]] = {}
    for task in tasks.values():
        by_downstream.setdefault(task.downstream, []).append(task)
    for downstream, shared in by_downstream.items():
        defaults = [t.name for t in shared if t.default_for_downstream]
        if len(shared) > 1 and len(defaults) != 1:
            raise TaskTableError(f"{path}: tasks {[t.name for t in shared]} share downstream {downstream!r}; exactly one "
                                 f"needs default_for_downstream: true (found {defaults or 'none'})")
    return tasks


def task_for_downstream(downstream: str, tasks: Optional[Mapping[str, Task]] = None) -> Optional[Task]:
    """The task `-d downstream` runs by default (`ctc` -> PR), or None when no task uses that downstream."""
    candidates = [t for t in (load_tasks() if tasks is None else tasks).values() if t.downstream == downstream]
    if len(candidates) > 1:
        candidates = [t for t in candidates if t.default_for_downstream]
    return candidates[0] if candidates else None


def parse_scores(log_text: str, task: Task, split: str) -> dict[int, float]:
    """{step: score} for `split` in the text of the task's score source (log.log, or the runner's stdout).

    Where the line names no step (the stdout tasks), the key is the evaluation's index in the text (0, 1, ...);
    a `-m evaluate` run is step 0 either way. A step that appears twice (a resumed run) keeps its last value.
    Raises TaskTableError for tasks whose score s3prl does not write (QbE).
    """
    regex = task.score_regex(split)
    text = log_text.replace("\r", "\n")  # progress bars redraw with carriage returns
    scores: dict[int, float] = {}
    for index, match in enumerate(regex.finditer(text)):
        step = int(match.group("step")) if "step" in regex.groupindex else index
        scores[step] = float(match.group("score"))
    return scores
