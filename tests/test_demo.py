"""The main job, reduced (tiny corpus, few steps), end to end through s3prl; and the sweep's resumability."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from distill.superb_report import write_report
from distill.superb_sweep import parse_upstream, read_results

ROOT = Path(__file__).resolve().parents[1]


def test_reduced_main_job_writes_the_report(tmp_path):
    work, report = tmp_path / "work", tmp_path / "report"
    command = [sys.executable, "-m", "distill.cli", "demo", "--size", "tiny", "--distill-steps", "30", "--superb-steps", "20",
               "--work", str(work), "--report", str(report)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    rows = read_results(work / "superb_results.csv")
    assert {(r["upstream"], r["task"]) for r in rows} == {(u, t) for u in ("gendistiller", "distilhubert", "wavlm")
                                                          for t in ("ks", "ic", "sid")}
    for row in rows:
        assert 0.0 <= float(row["test"]) <= 1.0 and int(row["params"]) > 0
    table = (report / "superb.md").read_text()
    for name in ("gendistiller", "distilhubert", "wavlm", "KS", "IC", "SID", "WavLM Base+"):
        assert name in table
    distillation = (report / "distillation.md").read_text()
    assert "gendistiller" in distillation and "L4:" in distillation
    for png in ("superb.png", "distillation_loss.png"):
        assert (report / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Rerunning resumes: nothing is trained again, the results are unchanged.
    marks = {p: p.stat().st_mtime_ns for p in (work / "superb").rglob("sweep.json")}
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already distilled" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in (work / "superb").rglob("sweep.json")} == marks
    assert read_results(work / "superb_results.csv") == rows


def test_upstream_specs(tmp_path):
    assert parse_upstream("wavlm:/x/WavLM-Base+.pt").runner_flags() == ["-u", "wavlm_local", "-k", "/x/WavLM-Base+.pt"]
    assert parse_upstream("s3prl:hubert_local:/h.pt").runner_flags() == ["-u", "hubert_local", "-k", "/h.pt"]
    with pytest.raises(ValueError, match="LABEL:CKPT"):
        parse_upstream("gendistiller")
    with pytest.raises(ValueError, match="unknown upstream label"):
        parse_upstream("bert:/b.pt")


def test_report_from_results(tmp_path):
    results = tmp_path / "results.csv"
    fields = ["upstream", "task", "metric", "higher_is_better", "lr", "dev", "test", "params", "ckpt", "expdir", "finished_at"]
    with open(results, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerow(dict(upstream="gendistiller", task="ks", metric="acc", higher_is_better=True, lr=1e-3, dev=0.5,
                             test=0.625, params=16997248, ckpt="g.pt", expdir="e", finished_at="now"))
        writer.writerow(dict(upstream="distilhubert", task="ks", metric="acc", higher_is_better=True, lr=1e-2, dev=0.4,
                             test=0.5, params=27034752, ckpt="d.pt", expdir="e", finished_at="now"))
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("\n".join(json.dumps({"step": s, "loss": 3.0 / s, "loss_layer_4": 1.0 / s,
                                                              "l1_layer_4": 0.5 / s, "cos_layer_4": 0.9}) for s in (1, 2, 3)))
    written = write_report(results, tmp_path / "report", {"gendistiller": run})
    table = (tmp_path / "report" / "superb.md").read_text()
    assert "| gendistiller | 17.00 | 62.50 (lr 0.001) |" in table
    assert "| distilhubert | 27.03 | 50.00 (lr 0.01) |" in table
    assert "| DistilHuBERT | 23.49 |" in table
    assert "| gendistiller | 3 | 1.000 | L4: 0.333 / 0.167 / 0.900 |" in (tmp_path / "report" / "distillation.md").read_text()
    assert len(written) == 4
