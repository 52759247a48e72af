"""What `--resume` keeps and what it refuses: a run continues with the student and the teacher its checkpoint was
trained with, and the config given must name the same ones (the student compared once resolved for the teacher,
key by key); the training schedule and the layer-0 term come from the checkpoint; the rest (steps, data, logging, and
which states a GenDistiller exposes) from the config given."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from distill.io.configuration import from_dict
from distill.models import TeacherFacts, resolve_student, student_config_from_dict
from distill.models.student_config import EXPOSURE_OPTIONS
from distill.training.config import DistillConfig, TrainingConfig

TEACHER_KEYS = ("family", "num_layers", "dim", "num_parameters")  # of Teacher.identity(): what makes it the same


def resumed_config(config: DistillConfig, checkpoint: dict[str, Any], facts: TeacherFacts, identity: dict[str, Any],
                   output_dir: Path, log: bool = True) -> DistillConfig:
    """`config` for resuming from `checkpoint` with the teacher described by `facts` and `identity`; ValueError naming
    the keys when the config changes the student or the teacher."""
    check_same_teacher(checkpoint["teacher"], identity, output_dir, log)
    trained = student_config_from_dict(checkpoint["config"]["student"])
    if trained.unresolved():  # written before configs were resolved once: resolved as that run was, for its teacher
        trained = resolve_student(trained, facts)
    # What the config leaves to `auto` was decided when the run started (the rule may have changed since): it stands.
    given = replace(config.student, **{name: getattr(trained, name) for name in config.student.unresolved()})
    # Which states are exposed is the config's to choose (no weight depends on it), the rest must be the run's.
    exposure = {name: getattr(given, name) for name in EXPOSURE_OPTIONS if trained.kind == given.kind == "gendistiller"}
    trained = replace(trained, **exposure)
    _refuse_changes(_changed_keys(resolve_student(given, facts).to_dict(), trained.to_dict(), "student"),
                    f"the student of the run in {output_dir}", output_dir)
    saved = checkpoint["config"]
    return replace(config, student=trained, training=from_dict(TrainingConfig, saved["training"], "training"),
                   optim=replace(config.optim, layer0_loss=saved["optim"]["layer0_loss"]))


def check_same_teacher(saved: dict[str, Any], identity: dict[str, Any], output_dir: Path, log: bool = True) -> None:
    """The teacher must have the checkpoint's family, layers, width and parameter count; a teacher named by another
    spec with all of these (the same file moved) is accepted, and said so."""
    changed = [f"{key} {identity.get(key)} (checkpoint: {saved.get(key)})" for key in TEACHER_KEYS
               if saved.get(key) != identity.get(key)]
    if changed:
        raise ValueError(f"--resume: the run in {output_dir} was distilled from {saved.get('spec')}; the config's "
                         f"teacher {identity.get('spec')} differs in {', '.join(changed)}; resume with the run's "
                         "teacher (teacher=...) or start a new run in another run.output_dir")
    if saved.get("spec") != identity.get("spec") and log:
        print(f"[distill] resuming with teacher {identity.get('spec')}; the checkpoint names {saved.get('spec')} "
              "(the same family, layers, width and parameter count)")


def check_same_sections(given: dict[str, Any], saved: dict[str, Any], sections: tuple[str, ...], output_dir: Path
                        ) -> None:
    """ValueError naming every key of `sections` whose value in the config given differs from the checkpoint's (for
    runs whose model and targets are fixed when they start: teacher pretraining's architecture, units and objective)."""
    _refuse_changes([item for section in sections for item in _changed_keys(given[section], saved[section], section)],
                    f"the run in {output_dir}", output_dir)


def _refuse_changes(changed: list[tuple[str, Any, Any]], what: str, output_dir: Path) -> None:
    """ValueError naming the first changed keys with both values, if any."""
    if changed:
        shown = "; ".join(f"{key}: {value!r} (checkpoint: {before!r})" for key, value, before in changed[:4])
        more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
        raise ValueError(f"--resume: the config changes {what}: {shown}{more}; resume with the run's own settings "
                         f"({output_dir / 'config.yaml'}) or start a new run in another run.output_dir")


def _changed_keys(given: dict[str, Any], trained: dict[str, Any], where: str) -> list[tuple[str, Any, Any]]:
    """(key, given value, checkpoint value) for every key whose values differ, nested mappings key by key."""
    changed = []
    for key in sorted(set(given) | set(trained), key=lambda key: (key != "kind", str(key))):  # the kind first
        mine, theirs = given.get(key), trained.get(key)
        if isinstance(mine, dict) and isinstance(theirs, dict):
            changed += _changed_keys(mine, theirs, f"{where}.{key}")
        elif _plain(mine) != _plain(theirs):
            changed.append((f"{where}.{key}", mine, theirs))
    return changed


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively: a config read back from YAML has lists where the resolver made tuples."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
