"""The model card (README.md with the Hub's YAML header) of a student exported for transformers.

Every figure on it is read from files the run wrote, never typed: the checkpoint (teacher, steps, the training data's
hours, parameters), the run folder's metrics.jsonl (training loss at the checkpoint's step), and beside the run folder
what the demo and `superb-sweep` write (`heldout_fidelity.json`, `superb_results.csv`), used only where they name this
very checkpoint. What is not found is printed as "not measured" (or "not recorded").
"""
from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

FIDELITY_FILE = "heldout_fidelity.json"  # the demo's held-out fidelity (distill/commands/demo.py)
RESULTS_FILE = "superb_results.csv"  # superb-sweep's results, as the demo names them
NOT_MEASURED = "not measured"
TAGS = ("audio", "speech", "distillation", "feature-extraction")


@dataclass
class CardFacts:
    """What the card says that depends on the student's kind (filled by distill.deploy.hf_export)."""

    kind: str  # "gendistiller" or "distilhubert"
    model_class: str  # the transformers class that loads it
    states: list[tuple[str, str]]  # (hidden_states index, what it is)
    padding: str  # how to batch utterances
    notes: list[str]  # what the export leaves out or changes
    custom_code: bool  # whether loading needs trust_remote_code
    fidelity_note: str = ""  # which states of the student the held-out fidelity measured
    downstream_note: str = ""  # which states of the student the downstream scores used


@dataclass
class RunFacts:
    """What the run's files say about the checkpoint."""

    checkpoint: Path
    step: int
    total_steps: Optional[int]
    config: dict[str, Any]
    teacher: dict[str, Any]  # what the trainer recorded of it (spec, family, layers, width, parameters)
    data_hours: Optional[float]
    data_files: Optional[int]
    student_parameters: int
    exported_parameters: int
    training: Optional[dict[str, Any]] = None  # the metrics.jsonl record at the checkpoint's step (or the last before)
    fidelity: Optional[dict[str, Any]] = None  # {"files": n, "layers": {layer: {"l1", "cosine", "frames"}}}
    downstream: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # upstream -> its results rows
    sources: list[Path] = field(default_factory=list)  # the files the figures came from


def run_folder(checkpoint: Path) -> Path:
    """The run folder of a checkpoint written by the trainer (RUN/checkpoints/step_N.pt)."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def run_facts(checkpoint: Path, saved: dict[str, Any], student_parameters: int, exported_parameters: int) -> RunFacts:
    """The facts of `checkpoint` (`saved`: its dict, as read_student_checkpoint returns it)."""
    config = saved["config"]
    data = saved.get("data") or {}
    facts = RunFacts(checkpoint, int(saved.get("step", 0)), config.get("optim", {}).get("total_steps"), config,
                     dict(saved.get("teacher") or {}), data.get("hours"), data.get("files"), student_parameters,
                     exported_parameters, sources=[checkpoint])
    run = run_folder(checkpoint)
    facts.training = _training_record(run / "metrics.jsonl", facts.step, facts.sources)
    facts.fidelity = _fidelity(run.parent / FIDELITY_FILE, checkpoint, facts.sources)
    facts.downstream = _downstream(run.parent / RESULTS_FILE, checkpoint, facts.teacher.get("spec", ""), facts.sources)
    return facts


def _same_file(a: str | Path, b: Path) -> bool:
    return Path(a).expanduser().resolve() == b.resolve()


def _training_record(path: Path, step: int, sources: list[Path]) -> Optional[dict[str, Any]]:
    if not path.is_file():
        return None
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    before = [record for record in records if record.get("step", 0) <= step]
    if not before:
        return None
    sources.append(path)
    return before[-1]


def _fidelity(path: Path, checkpoint: Path, sources: list[Path]) -> Optional[dict[str, Any]]:
    if not path.is_file():
        return None
    measured = json.loads(path.read_text())
    for label, measured_path in (measured.get("checkpoints") or {}).items():
        if _same_file(measured_path, checkpoint) and label in measured.get("students", {}):
            sources.append(path)
            return measured["students"][label]
    return None


def _downstream(path: Path, checkpoint: Path, teacher_spec: str, sources: list[Path]
                ) -> dict[str, list[dict[str, str]]]:
    """This student's rows of a results CSV, and the teacher's (whose `ckpt` is the teacher's file) for comparison."""
    if not path.is_file():
        return {}
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    teacher_file = teacher_spec.partition(":")[2] if ":" in teacher_spec else teacher_spec
    found: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        if _same_file(row.get("ckpt", ""), checkpoint):
            found.setdefault("student", []).append(row)
        elif teacher_file and _same_file(row.get("ckpt", ""), Path(teacher_file)):
            found.setdefault("teacher", []).append(row)
    if "student" not in found:
        return {}
    sources.append(path)
    return found


# ---- the card ----------------------------------------------------------------------------------------------------

def write_card(path: Path, facts: RunFacts, card: CardFacts, license: str) -> None:
    path.write_text(card_markdown(facts, card, license))


def card_markdown(facts: RunFacts, card: CardFacts, license: str) -> str:
    sections = [_header(card, license), _summary(facts, card), _loading(card), _states(card),
                _fidelity_lines(facts, card), _downstream_lines(facts, card), _training_lines(facts), _made_lines(facts)]
    return "\n".join(line for section in sections for line in section) + "\n"


def _header(card: CardFacts, license: str) -> list[str]:
    tags = "\n".join(f"- {tag}" for tag in (*TAGS, card.kind))
    return ["---", "library_name: transformers", f"license: {license}", "tags:", tags,
            "pipeline_tag: feature-extraction", "---", ""]


def _count(value: Optional[int]) -> str:
    return f"{value:,}" if value else "not recorded"


def _summary(facts: RunFacts, card: CardFacts) -> list[str]:
    teacher = facts.teacher
    teacher_parameters = teacher.get("num_parameters")
    share = (f"{100 * facts.student_parameters / teacher_parameters:.1f}%" if teacher_parameters else "not recorded")
    title = {"gendistiller": "GenDistiller", "distilhubert": "DistilHuBERT"}.get(card.kind, card.kind)
    lines = [f"# {title} student of {teacher.get('family', 'its teacher')}", "",
             f"A {title} student distilled with the GenDistiller toolkit from the teacher "
             f"`{teacher.get('spec', 'not recorded')}`, exported as a transformers `{card.model_class}`"
             + (" (its code travels with the weights: `trust_remote_code=True`)." if card.custom_code else
                " (no custom code)."), "",
             "| | parameters | share of the teacher's |", "|---|---|---|",
             f"| teacher ({teacher.get('family', '?')}, {teacher.get('num_layers', '?')} layers, width "
             f"{teacher.get('dim', '?')}) | {_count(teacher_parameters)} | 100% |",
             f"| student ({card.kind}) | {facts.student_parameters:,} | {share} |"]
    if facts.exported_parameters != facts.student_parameters:
        lines.append(f"| this `{card.model_class}` | {facts.exported_parameters:,} | "
                     + (f"{100 * facts.exported_parameters / teacher_parameters:.1f}%" if teacher_parameters else "–")
                     + " |")
    return lines + [""] + [f"{note}" for note in card.notes] + ([""] if card.notes else [])


def _loading(card: CardFacts) -> list[str]:
    model = ("AutoModel.from_pretrained(FOLDER, trust_remote_code=True)" if card.custom_code
             else "HubertModel.from_pretrained(FOLDER)")
    imports = "AutoFeatureExtractor, " + ("AutoModel" if card.custom_code else "HubertModel")
    return ["## Load it", "", "```python", f"from transformers import {imports}",
            f"model, extract = {model}, AutoFeatureExtractor.from_pretrained(FOLDER)",
            "states = model(**extract(wav, sampling_rate=16000, return_tensors=\"pt\"), output_hidden_states=True)"
            ".hidden_states", "```", "",
            "`FOLDER`: this folder (or its Hub id); `wav`: a 1-D float array of 16 kHz mono samples. "
            + card.padding, ""]


def _states(card: CardFacts) -> list[str]:
    return (["## Hidden states", "", "| `hidden_states[i]` | what it is |", "|---|---|"]
            + [f"| {index} | {what} |" for index, what in card.states] + [""])


def _fidelity_lines(facts: RunFacts, card: CardFacts) -> list[str]:
    lines = ["## Held-out fidelity", ""]
    if facts.fidelity is None:
        return lines + [f"{NOT_MEASURED} (no {FIDELITY_FILE} beside the run folder names this checkpoint).", ""]
    lines += [f"Student free running against the teacher on {facts.fidelity.get('files', '?')} held-out files "
              f"({FIDELITY_FILE}); layer 0 is the front-end output. {card.fidelity_note}".rstrip(), "",
              "| teacher layer | mean L1 | mean cosine | frames |", "|---|---|---|---|"]
    for layer, measured in facts.fidelity.get("layers", {}).items():
        lines.append(f"| {layer} | {measured['l1']:.4f} | {measured['cosine']:.4f} | {measured['frames']:,} |")
    return lines + [""]


def _score(rows: list[dict[str, str]], task: str) -> str:
    tests = [float(row["test"]) for row in rows if row["task"] == task]
    if not tests:
        return NOT_MEASURED
    spread = f" ± {statistics.stdev(tests):.4f}" if len(tests) > 1 else ""
    return f"{statistics.fmean(tests):.4f}{spread} ({len(tests)} seed{'s' if len(tests) > 1 else ''})"


def _downstream_lines(facts: RunFacts, card: CardFacts) -> list[str]:
    lines = ["## Downstream (SUPERB tasks through s3prl)", ""]
    student = facts.downstream.get("student")
    if not student:
        return lines + [f"{NOT_MEASURED} (no {RESULTS_FILE} beside the run folder names this checkpoint).", ""]
    teacher = facts.downstream.get("teacher", [])
    lines += [f"Test scores as s3prl logs them, at the learning rate chosen on dev ({RESULTS_FILE}); the mean over "
              f"downstream seeds where there are several. {card.downstream_note}".rstrip(), "",
              "| task | metric | student | teacher |", "|---|---|---|---|"]
    for task in dict.fromkeys(row["task"] for row in student):
        row = next(r for r in student if r["task"] == task)
        arrow = "↑" if row.get("higher_is_better") in ("True", "true", "1") else "↓"
        lines.append(f"| {task} | {row.get('metric', '')}{arrow} | {_score(student, task)} | {_score(teacher, task)} |")
    return lines + [""]


def _training_lines(facts: RunFacts) -> list[str]:
    config = facts.config
    hours = (f"{facts.data_hours:.2f} h in {facts.data_files:,} files" if facts.data_hours is not None
             else "hours not recorded in the checkpoint")
    steps = f"{facts.step:,}" + (f" of {facts.total_steps:,}" if facts.total_steps else "")
    lines = ["## Training", "", f"- data: `{config.get('data', {}).get('train', 'not recorded')}` ({hours})",
             f"- steps: {steps}"]
    record = facts.training
    if record is not None:
        layers = config.get("student", {}).get("target_layers", [])
        per_layer = "; ".join(f"layer {layer}: L1 {record[f'l1_layer_{layer}']:.4f}, "
                              f"cosine {record[f'cos_layer_{layer}']:.4f}"
                              for layer in layers if f"l1_layer_{layer}" in record)
        lines.append(f"- training loss at step {record['step']:,}: {record['loss']:.4f} ({per_layer}; metrics.jsonl)")
    else:
        lines.append(f"- training loss: {NOT_MEASURED} (no metrics.jsonl in the run folder)")
    return lines + [""]


def _made_lines(facts: RunFacts) -> list[str]:
    sources = ", ".join(f"`{path}`" for path in facts.sources)
    return ["## How it was made", "",
            "`gendistiller_config.yaml` beside this card is the run's config as the checkpoint recorded it (the "
            "student section resolved for its teacher). With the same teacher and data at the same paths:", "",
            "```bash",
            "gendistiller distill --config gendistiller_config.yaml run.output_dir=NEW_RUN_FOLDER", "```", "",
            f"then `gendistiller export --to hf NEW_RUN_FOLDER/checkpoints/step_{facts.step:08d}.pt OUT_DIR`. "
            f"Figures on this card come from {sources}.", ""]
