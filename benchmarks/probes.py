"""What each exposed hidden state carries: linear probes of speaker identity and of content, and the state's scale.

    python -m benchmarks.probes --corpus runs/cache/asterisk_speech --teacher whisper:runs/cache/whisper-base/model.bin \
        --students gendistiller@0=G0.pt distilhubert@0=D0.pt gendistiller@1=G1.pt distilhubert@1=D1.pt --out DIR

For the teacher and each student (LABEL@SEED=CHECKPOINT: one student kind, several distillation seeds), every
utterance of the corpus's two tasks is run alone (free running, no padding) and each hidden state the upstream exposes
(what s3prl's weighted sum sees) is mean-pooled over the utterance's frames. Then, per state and for all states
together (concatenated):
- speaker: logistic regression on the SID task (`voxceleb1/iden_split.txt`) from its train utterances, accuracy on its
  test utterances (every voice is in both, different prompts);
- content: the same on the content task (`fluent_commands/data/{train,test}_data.csv`, the label action|object|location:
  spoken numbers and letters on the real speech, intents on the local corpus), whose test voices the probe never saw;
- speaker within language, where the corpus's `manifest.json` gives each voice's language (the real speech): the
  speaker task's items of each language with two voices or more, a probe fitted per language. Voices of different
  languages are also told apart by what is said; within a language only the voice tells them apart.
With a 95% bootstrap interval over test utterances (and over distillation seeds, when several), and each student kind
paired against the other on the same test items. The scale of a state is the mean L2 norm of its frames.
Probes are standardised logistic regressions (scikit-learn); the pooled states are kept in DIR/states/ and reused.

"weighted sum" is s3prl's utterance-level head instead, as the main job trains it: a learned softmax-weighted sum of
the states, Linear(D, 256), Linear(256, classes) (linear, so pooling first changes nothing), Adam at lr 1e-2, batch
8, the gradient norm clipped to 1, 1000 steps, the states as they come (three seeds, each test item scored once per
seed; whole utterances, where the main job trains on 2 s crops). It asks what a standardised probe does not: how fast an unnormalised linear head learns the states, which
their per-dimension offsets slow down; "weighted sum, centered" subtracts each state's mean over the training
utterances first.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from benchmarks.common import machine_info, markdown_table, parse_options, pick_device, set_threads, write_outputs
from distill.io.audio import read_audio
from distill.superb.intervals import bootstrap_interval, paired_runs_difference, runs_interval

SPEAKER, CONTENT, WITHIN_LANGUAGE = "speaker", "content", "speaker within language"
ALL = "all states"
WEIGHTED, CENTERED = "weighted sum", "weighted sum, centered"
COMBINED = (ALL, WEIGHTED, CENTERED)  # what is fitted on every state together


@dataclass(frozen=True)
class Item:
    key: str  # the file, relative to the corpus
    path: Path
    label: str
    train: bool  # in the probe's training split (else its test split)
    group: str = ""  # items are told apart only within their group (one probe per group)


def task_items(corpus: Path) -> dict[str, list[Item]]:
    """The SID task's train/test utterances with their speakers, and the content task's with their labels (the dev
    splits are left out: a probe has nothing to tune); with voices' languages, the SID items grouped by language."""
    speaker = []
    for line in (corpus / "voxceleb1" / "iden_split.txt").read_text().split("\n"):
        if not line.strip():
            continue
        split, name = line.split()
        if split in ("1", "3"):
            path = next(p for p in (corpus / "voxceleb1" / part / "wav" / name for part in ("dev", "test")) if p.is_file())
            speaker.append(Item(name, path, name.split("/")[0], split == "1"))
    content = []
    for split in ("train", "test"):
        with open(corpus / "fluent_commands" / "data" / f"{split}_data.csv") as handle:
            for row in csv.DictReader(handle):
                label = "|".join(row[column] for column in ("action", "object", "location"))
                content.append(Item(row["path"], corpus / "fluent_commands" / row["path"], label, split == "train"))
    tasks = {SPEAKER: speaker, CONTENT: content}
    language_of = {speaker_id: language for language, speakers in shared_languages(corpus).items()
                   for speaker_id in speakers}
    if language_of:
        tasks[WITHIN_LANGUAGE] = [replace(item, group=language_of[item.label]) for item in speaker
                                  if item.label in language_of]
    return tasks


def shared_languages(corpus: Path) -> dict[str, list[str]]:
    """{language: its SID speaker ids} for each language with two voices or more, from the corpus's manifest.json
    (`gendistiller fetch asterisk-speech`); {} when the corpus names no languages."""
    manifest = corpus / "manifest.json"
    voices: dict[str, list[str]] = {}
    for voice in json.loads(manifest.read_text()).get("voices", []) if manifest.is_file() else []:
        if voice.get("sid_speaker"):
            voices.setdefault(voice["language"], []).append(voice["sid_speaker"])
    return {language: speakers for language, speakers in voices.items() if len(speakers) > 1}


Upstream = Callable[[torch.Tensor], list[torch.Tensor]]  # one waveform -> its exposed states, each (frames, dim)


def load_upstream(spec: str, teacher: bool, options: Optional[dict[str, Any]] = None) -> tuple[Upstream, list[str]]:
    """A teacher spec or a student checkpoint (a GenDistiller's exposed states chosen by `options`) -> (its exposed
    states of one utterance, their names)."""
    if teacher:
        from distill.teachers import load_teacher

        model = load_teacher(spec)

        def states(wav: torch.Tensor) -> list[torch.Tensor]:
            out = model([wav])
            return [state[0, : int(out.lengths[0])] for state in out.hidden_states]

        return states, [f"layer_{i}" for i in range(model.num_layers + 1)]
    from distill.deploy.onnx_export import state_names
    from distill.models.student_checkpoint import load_student

    student, _ = load_student(spec)
    if options:
        student.config = replace(student.config, **options)

    def student_states(wav: torch.Tensor) -> list[torch.Tensor]:
        out = student.infer([wav], chunking=None)
        return [state[0, : int(out.lengths[0])] for state in out.hidden_states]

    return student_states, state_names(student)


def pooled_states(upstream: Upstream, items: Sequence[Item], cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """(utterances, states, dim) mean-pooled states and (states,) mean frame norms, computed once into `cache`."""
    if cache.is_file():
        found = np.load(cache)
        return found["pooled"], found["norms"]
    pooled, norm_sum, frames = [], 0.0, 0
    with torch.no_grad():
        for item in items:
            states = torch.stack(upstream(torch.from_numpy(read_audio(item.path)))).double()  # (S, T, D)
            pooled.append(states.mean(1).numpy())
            norm_sum = norm_sum + states.norm(dim=-1).sum(1).numpy()
            frames += states.shape[1]
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, pooled=np.stack(pooled), norms=norm_sum / frames)
    return np.stack(pooled), norm_sum / frames


def per_group(fit: Callable[[np.ndarray, Sequence[Item]], dict[str, bool]], features: np.ndarray,
              items: Sequence[Item]) -> dict[str, bool]:
    """`fit` on each group's items alone (items without groups: all together); per test item, whether it is right."""
    groups = sorted({item.group for item in items})
    if len(groups) == 1:
        return fit(features, items)
    correct = {}
    for group in groups:
        rows = [row for row, item in enumerate(items) if item.group == group]
        correct.update(fit(features[rows], [items[row] for row in rows]))
    return correct


def probe(features: np.ndarray, items: Sequence[Item]) -> dict[str, bool]:
    """Standardised logistic regression fitted on the train items; per test item, whether it is right."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train = np.array([item.train for item in items])
    labels = np.array([item.label for item in items])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(features[train], labels[train])
    right = model.predict(features[~train]) == labels[~train]
    return {item.key: bool(ok) for item, ok in zip([i for i in items if not i.train], right)}


def weighted_sum_probe(pooled: np.ndarray, items: Sequence[Item], center: bool = False, steps: int = 1000,
                       lr: float = 1e-2, seeds: int = 3) -> dict[str, bool]:
    """s3prl's utterance-level head on (utterances, states, dim) pooled states, fitted on the train items; per (seed,
    test item), whether it is right. `center`: each state's mean over the train items subtracted first."""
    train = np.array([item.train for item in items])
    classes = sorted({item.label for item in items})
    labels = torch.tensor([classes.index(item.label) for item in items])
    states = torch.tensor(pooled, dtype=torch.float32)
    if center:
        states = states - states[torch.from_numpy(train)].mean(0)
    train_rows, test_rows = np.flatnonzero(train), np.flatnonzero(~train)
    correct = {}
    for seed in range(seeds):
        torch.manual_seed(seed)
        weights = torch.zeros(states.shape[1], requires_grad=True)
        head = torch.nn.Sequential(torch.nn.Linear(states.shape[2], 256), torch.nn.Linear(256, len(classes)))
        parameters = [weights, *head.parameters()]
        optimizer = torch.optim.Adam(parameters, lr=lr)
        batches = torch.randint(len(train_rows), (steps, 8)).numpy()

        def logits(rows: np.ndarray) -> torch.Tensor:
            return head((torch.softmax(weights, 0)[:, None] * states[rows]).sum(1))

        for batch in batches:
            loss = torch.nn.functional.cross_entropy(logits(train_rows[batch]), labels[train_rows[batch]])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
        with torch.no_grad():
            right = (logits(test_rows).argmax(1) == labels[test_rows]).tolist()
        correct.update({f"{seed}:{items[row].key}": ok for row, ok in zip(test_rows, right)})
    return correct


def measure(upstreams: dict[str, tuple[str, bool]], corpus: Path, out: Path,
            options: Optional[dict[str, dict[str, Any]]] = None) -> dict[str, Any]:
    """{label: {"names", "norms": {task: [...]}, "correct": {task: {state: {item: bool}}}}} for every upstream;
    `options`: exposed-state options by kind (the label before '@')."""
    items = task_items(corpus)
    results: dict[str, Any] = {}
    for label, (spec, is_teacher) in upstreams.items():
        upstream, names = load_upstream(spec, is_teacher, (options or {}).get(label.split("@")[0]))
        entry: dict[str, Any] = {"spec": spec, "names": names, "norms": {}, "correct": {}}
        pooled_by_task = {task: pooled_states(upstream, items[task], out / "states" / f"{label}_{task}.npz")
                          for task in (SPEAKER, CONTENT)}
        for task, task_list in items.items():
            if task == WITHIN_LANGUAGE:  # a subset of the speaker task's items: their states and norms
                row_of = {item.key: row for row, item in enumerate(items[SPEAKER])}
                speaker_pooled, norms = pooled_by_task[SPEAKER]
                pooled = speaker_pooled[[row_of[item.key] for item in task_list]]
            else:
                pooled, norms = pooled_by_task[task]
            entry["norms"][task] = [float(n) for n in norms]
            correct = {name: per_group(probe, pooled[:, index], task_list) for index, name in enumerate(names)}
            correct[ALL] = per_group(probe, pooled.reshape(len(pooled), -1), task_list)
            correct[WEIGHTED] = per_group(weighted_sum_probe, pooled, task_list)
            correct[CENTERED] = per_group(partial(weighted_sum_probe, center=True), pooled, task_list)
            entry["correct"][task] = correct
            print(f"[probes] {label} {task}: " + ", ".join(
                f"{name} {100 * np.mean(list(c.values())):.1f}" for name, c in entry["correct"][task].items()), flush=True)
        results[label] = entry
    return results


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """Per kind (the label before '@'), task and state: accuracy (mean over seeds) with its interval; each pair of
    kinds paired on the best single state and on all states."""
    kinds: dict[str, list[str]] = {}
    for label in results:
        kinds.setdefault(label.split("@")[0], []).append(label)
    table: dict[str, Any] = {}
    for kind, labels in kinds.items():
        first = results[labels[0]]
        table[kind] = {"seeds": len(labels), "names": first["names"], "tasks": {}}
        for task in first["correct"]:
            states = {}
            for name in [*first["names"], *COMBINED]:
                runs = [list(results[label]["correct"][task][name].values()) for label in labels]
                low, high = runs_interval(runs) if len(runs) > 1 else bootstrap_interval(runs[0])
                states[name] = {"accuracy": 100 * float(np.mean([np.mean(r) for r in runs])),
                                "low": 100 * low, "high": 100 * high}
            best = max(first["names"], key=lambda n: states[n]["accuracy"])
            norms = np.mean([results[label]["norms"][task] for label in labels], axis=0)
            table[kind]["tasks"][task] = {"states": states, "best": best, "norms": [float(n) for n in norms]}
    pairs = []
    names = list(kinds)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for task in table[a]["tasks"]:
                for which in ("best", *COMBINED):
                    pairs.append({"a": a, "b": b, "task": task, "state": which,
                                  **_paired(results, kinds[a], kinds[b], task, table, which)})
    return {"kinds": table, "pairs": pairs}


def _paired(results: dict[str, Any], a: list[str], b: list[str], task: str, table: dict[str, Any], which: str
            ) -> dict[str, Any]:
    """A - B in points on the same test items, the seeds of each kind matched in order."""
    def by_seed(labels: list[str], kind: str) -> dict[str, dict[str, bool]]:
        state = table[kind]["tasks"][task]["best"] if which == "best" else which
        return {str(i): results[label]["correct"][task][state] for i, label in enumerate(labels)}

    seeds = min(len(a), len(b))
    comparison = paired_runs_difference(by_seed(a[:seeds], a[0].split("@")[0]), by_seed(b[:seeds], b[0].split("@")[0]))
    return {"difference": 100 * comparison.difference, "low": 100 * comparison.low, "high": 100 * comparison.high,
            "verdict": comparison.verdict}


def render(summary: dict[str, Any], setup: dict[str, Any]) -> str:
    text = (f"Linear probes on {setup['corpus']} ({setup['machine']['cpu']}, {setup['machine']['date']}): accuracy % of "
            "a logistic regression on each utterance's mean-pooled state, test utterances, 95% interval; "
            f"{WEIGHTED!r}: s3prl's utterance-level head on the weighted sum of the states (three seeds); "
            "norm: mean L2 norm of the state's frames.\n\n")
    for task in next(iter(summary["kinds"].values()))["tasks"]:
        rows = []
        for kind, entry in summary["kinds"].items():
            info = entry["tasks"][task]
            for index, name in enumerate([*entry["names"], *COMBINED]):
                state = info["states"][name]
                norm = f"{info['norms'][index]:.1f}" if index < len(info["norms"]) else ""
                mark = " (best)" if name == info["best"] else ""
                rows.append([kind, entry["seeds"], name + mark, f"{state['accuracy']:.1f} [{state['low']:.1f}, "
                             f"{state['high']:.1f}]", norm])
        text += f"### {task}\n\n" + markdown_table(["upstream", "seeds", "state", "accuracy", "norm"], rows) + "\n"
    rows = [[p["task"], f"{p['a']} - {p['b']}", p["state"], f"{p['difference']:+.1f}",
             f"[{p['low']:+.1f}, {p['high']:+.1f}]", {"A": p["a"], "B": p["b"], "~": "~ (tie)"}[p["verdict"]]]
            for p in summary["pairs"]]
    return text + "### paired\n\n" + markdown_table(["task", "A - B", "state", "points", "95% interval", "better"], rows)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="a root with voxceleb1/ and fluent_commands/ "
                        "(`gendistiller fetch asterisk-speech`, or `gendistiller make-corpus`)")
    parser.add_argument("--teacher", help="teacher spec (probed as 'teacher')")
    parser.add_argument("--students", nargs="*", default=[], metavar="KIND@SEED=CHECKPOINT")
    parser.add_argument("--options", nargs="*", default=[], metavar="gendistiller-NAME=key:value,...",
                        help="exposed-state options of the students labelled gendistiller-NAME (no retraining)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/probes"))
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    args = parse_args(argv)
    set_threads(args.threads)
    upstreams = {"teacher": (args.teacher, True)} if args.teacher else {}
    for item in args.students:
        label, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"--students item {item!r} must look like KIND@SEED=CHECKPOINT")
        upstreams[label] = (path, False)
    setup = {"corpus": str(args.corpus), "machine": machine_info(pick_device("cpu")),
             "upstreams": {label: spec for label, (spec, _) in upstreams.items()},
             "command": " ".join(["python -m benchmarks.probes"] + (argv if argv is not None else sys.argv[1:]))}
    results = measure(upstreams, args.corpus, args.out, parse_options(args.options))
    summary = summarize(results)
    markdown = render(summary, setup)
    json_path, md_path = write_outputs(args.out, "probes", {"setup": setup, **summary}, markdown)
    print(markdown)
    print(f"[probes] wrote {json_path} and {md_path}")
    return summary


if __name__ == "__main__":
    main()
