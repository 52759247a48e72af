"""The main job, reduced (tiny corpus, few steps), end to end through s3prl; and the sweep's resumability."""
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from distill.superb.report import Reference, write_report
from distill.superb.sweep import parse_upstream, read_results

ROOT = Path(__file__).resolve().parents[1]


def test_reduced_main_job_writes_the_report(tmp_path):
    work, report = tmp_path / "work", tmp_path / "report"
    command = [sys.executable, "-m", "distill.cli", "demo", "--size", "tiny", "--pretrain-steps", "20", "--distill-steps", "30",
               "--superb-steps", "20", "--work", str(work), "--report", str(report)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stages = ("corpus", "teacher", "distillation", "SUPERB", "report")
    for number, stage in enumerate(stages, 1):  # each stage's time at its end, all of them at the end
        assert re.search(rf"^\[demo\] \({number}/5\) {stage}: \d+ s$", result.stdout, re.MULTILINE), stage
    assert re.search(r"^\[demo\] done in \d+ s \(" + ", ".join(rf"{stage} \d+ s" for stage in stages) + r"\)$",
                     result.stdout, re.MULTILINE)

    rows = read_results(work / "superb_results.csv")
    upstreams = ("gendistiller", "distilhubert", "distilhubert-ws", "wavlm", "wavlm-untrained")
    assert {(r["upstream"], r["task"], r["seed"]) for r in rows} == {(u, t, "1337") for u in upstreams for t in ("ks", "ic", "sid")}
    for row in rows:
        assert 0.0 <= float(row["test"]) <= 1.0 and int(row["params"]) > 0
    teacher = work / "teacher" / "wavlm_pretrained.pt"
    assert next(r for r in rows if r["upstream"] == "wavlm")["ckpt"] == str(teacher)
    table = (report / "superb.md").read_text()
    for name in ("| chance (majority class) | – |", "| wavlm-untrained (control: untrained) |", "| wavlm (teacher) |",
                 "Share of the teacher's margin", "KS", "IC", "SID", "WavLM Base+"):
        assert name in table
    distillation = (report / "distillation.md").read_text()
    assert "gendistiller" in distillation and "L4:" in distillation and "held-out audio" in distillation
    for png in ("superb.png", "distillation_loss.png"):
        assert (report / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Rerunning resumes: nothing is trained again, the results are unchanged.
    marks = {p: p.stat().st_mtime_ns for p in (work / "superb").rglob("sweep.json")}
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already distilled" in again.stdout and "already pretrained" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in (work / "superb").rglob("sweep.json")} == marks
    assert read_results(work / "superb_results.csv") == rows


def test_upstream_specs(tmp_path):
    assert parse_upstream("wavlm:/x/WavLM-Base+.pt").runner_flags() == ["-u", "wavlm_local", "-k", "/x/WavLM-Base+.pt"]
    assert parse_upstream("s3prl:hubert_local:/h.pt").runner_flags() == ["-u", "hubert_local", "-k", "/h.pt"]
    ablation = parse_upstream("gendistiller-noln:/g.pt")  # a GenDistiller trained otherwise, under its own label
    assert ablation.label == "gendistiller-noln" and ablation.runner_flags() == ["-u", "gendistiller_local", "-k", "/g.pt"]
    with pytest.raises(ValueError, match="LABEL:CKPT"):
        parse_upstream("gendistiller")
    with pytest.raises(ValueError, match="unknown upstream label"):
        parse_upstream("bert:/b.pt")


def test_distilhubert_is_scored_on_its_last_layer_or_on_all_its_states(distilhubert_ckpt):
    """SUPERB's convention for DistilHuBERT (`-s paper`, its last layer) and s3prl's default (the weighted sum of every
    hidden state, as every other upstream is scored)."""
    paper, weighted = parse_upstream(f"distilhubert:{distilhubert_ckpt}"), parse_upstream(f"distilhubert-ws:{distilhubert_ckpt}")
    assert paper.runner_flags() == ["-u", "gendistiller_local", "-k", str(distilhubert_ckpt), "-s", "paper"]
    assert weighted.runner_flags() == ["-u", "gendistiller_local", "-k", str(distilhubert_ckpt)]
    assert weighted.label == "distilhubert-ws"


def _write_results(path: Path, rows: list[tuple[str, str, float, bool]]) -> None:
    fields = ["upstream", "task", "metric", "higher_is_better", "lr", "dev", "test", "params", "ckpt", "expdir", "finished_at"]
    params = {"gendistiller": 16997248, "distilhubert": 27034752, "wavlm": 94381936, "wavlm-untrained": 94381936}
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for upstream, task, test, higher in rows:
            writer.writerow(dict(upstream=upstream, task=task, metric="acc" if higher else "per", higher_is_better=higher,
                                 lr=1e-3 if upstream == "gendistiller" else 1e-2, dev=0.5, test=test,
                                 params=params[upstream], ckpt="x.pt", expdir="e", finished_at="now"))


def test_report_from_results(tmp_path):
    results = tmp_path / "results.csv"
    _write_results(results, [("gendistiller", "ks", 0.625, True), ("distilhubert", "ks", 0.5, True)])
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("\n".join(json.dumps({"step": s, "loss": 3.0 / s, "loss_layer_4": 1.0 / s,
                                                              "l1_layer_4": 0.5 / s, "cos_layer_4": 0.9}) for s in (1, 2, 3)))
    written = write_report(results, tmp_path / "report", {"gendistiller": run})
    table = (tmp_path / "report" / "superb.md").read_text()
    assert "| gendistiller | 17.00 | 62.50 [not kept] (lr 0.001) |" in table  # KS has per-item files; none were kept
    assert "| distilhubert | 27.03 | 50.00 [not kept] (lr 0.01) |" in table
    assert "Downstream seeds (s3prl --seed): default (one run each)" in table  # results written before the seed column
    assert "| DistilHuBERT | 23.49 |" in table
    assert "chance" not in table and "margin" not in table  # no reference given
    assert "| gendistiller | 3 | 1.000 | L4: 0.333 / 0.167 / 0.900 |" in (tmp_path / "report" / "distillation.md").read_text()
    assert len(written) == 4


def test_report_reads_students_against_chance_teacher_and_control(tmp_path):
    """Margin kept = (student - control) / (teacher - control), for either direction of the metric."""
    results = tmp_path / "results.csv"
    _write_results(results, [("gendistiller", "ks", 0.70, True), ("distilhubert", "ks", 0.55, True),
                             ("wavlm", "ks", 0.80, True), ("wavlm-untrained", "ks", 0.30, True),
                             ("gendistiller", "pr", 0.30, False), ("distilhubert", "pr", 0.60, False),
                             ("wavlm", "pr", 0.20, False), ("wavlm-untrained", "pr", 0.60, False)])
    reference = Reference(chance={"ks": 1 / 12}, teacher="wavlm", control="wavlm-untrained")
    fidelity = {"gendistiller": {"files": 40, "layers": {"0": {"l1": 0.2, "cosine": 0.95, "frames": 9},
                                                         "4": {"l1": 0.25, "cosine": 0.9, "frames": 9}}}}
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 1.0, "loss_layer_4": 1.0, "l1_layer_4": 0.5,
                                                   "cos_layer_4": 0.9}))
    write_report(results, tmp_path / "report", {"gendistiller": run}, reference, fidelity)
    table = (tmp_path / "report" / "superb.md").read_text()
    lines = table.splitlines()
    assert lines.index("| chance (majority class) | – | – | 8.33 |") < lines.index(  # tasks in SUPERB's order: PR, KS
        "| wavlm-untrained (control: untrained) | 94.38 | 60.00 (lr 0.01) | 30.00 [not kept] (lr 0.01) |") < lines.index(
        "| wavlm (teacher) | 94.38 | 20.00 (lr 0.01) | 80.00 [not kept] (lr 0.01) |")
    assert "| upstream | params (M) | PR per↓ (no per-item results: no interval) | KS acc↑ |" in table
    assert "| gendistiller | 75% | 80% |" in table and "| distilhubert | 0% | 50% |" in table  # as the control: not "-0%"
    assert "| gendistiller | 40 | L0: 0.200 / 0.950; L4: 0.250 / 0.900 |" in (tmp_path / "report" / "distillation.md").read_text()
    assert (tmp_path / "report" / "superb.png").read_bytes()[:4] == b"\x89PNG"


def test_chance_is_the_majority_class_of_the_local_test_split(tmp_path):
    from distill.superb.chance import chance_score
    from distill.superb.tasks import load_tasks

    test = tmp_path / "speech_commands" / "test"
    for label, count in (("yes", 3), ("no", 1), ("_unknown_", 2)):
        (test / label).mkdir(parents=True)
        for i in range(count):
            (test / label / f"{i}.wav").write_bytes(b"")
    tasks = load_tasks()
    assert chance_score(tasks["ks"], tmp_path) == 0.5
    assert chance_score(tasks["pr"], tmp_path) is None
