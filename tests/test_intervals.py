"""Confidence intervals and paired comparisons from per-item test results (hand-made files; no s3prl training)."""
from __future__ import annotations

import csv
import importlib.util
import json
import math
from pathlib import Path

import pytest

from distill.superb.intervals import (
    TEST_ITEMS,
    bootstrap_interval,
    kept_correct,
    margin_interval,
    paired_difference,
    paired_runs_difference,
    read_correct,
    runs_interval,
)
from distill.superb.tasks import load_tasks

TASKS = load_tasks()


# ---- intervals --------------------------------------------------------------------------------------------------

def test_all_right_or_all_wrong_gives_a_point_interval():
    assert bootstrap_interval([True] * 50) == (1.0, 1.0)
    assert bootstrap_interval([False] * 50) == (0.0, 0.0)


def test_half_right_on_400_items_matches_the_normal_approximation():
    correct = [True, False] * 200
    half_width = 1.96 * math.sqrt(0.5 * 0.5 / 400)  # 0.049
    low, high = bootstrap_interval(correct)
    assert low == pytest.approx(0.5 - half_width, abs=0.01) and high == pytest.approx(0.5 + half_width, abs=0.01)
    assert bootstrap_interval(correct) == (low, high)  # seeded
    wider = bootstrap_interval(correct, level=0.99)
    assert wider[0] < low and wider[1] > high
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_interval([])


def test_identical_upstreams_tie():
    a = {f"item{i}": i % 3 == 0 for i in range(300)}
    comparison = paired_difference(a, dict(a))
    assert (comparison.difference, comparison.low, comparison.high, comparison.items) == (0.0, 0.0, 0.0, 300)
    assert comparison.verdict == "~"


def test_clearly_different_upstreams_do_not_tie():
    a = {f"item{i}": i < 180 for i in range(200)}  # 90%
    b = {f"item{i}": i % 2 == 0 for i in range(200)}  # 50%
    comparison = paired_difference(a, b)
    assert comparison.difference == pytest.approx(0.4) and comparison.low > 0.3 and comparison.verdict == "A"
    assert paired_difference(b, a).verdict == "B"


def test_pairing_uses_only_the_shared_items():
    a = {f"item{i}": True for i in range(100)}  # items 0-99, all right
    b = {f"item{i}": i >= 75 for i in range(50, 150)}  # items 50-149; of the shared 50-99, 75-99 right
    comparison = paired_difference(a, b)
    assert comparison.items == 50 and comparison.difference == pytest.approx(0.5)
    with pytest.raises(ValueError, match="share no items"):
        paired_difference(a, {"other": True})


# ---- over downstream seeds: seeds resampled, then items ----------------------------------------------------------------

def test_one_run_is_the_plain_item_bootstrap():
    values = [i % 3 == 0 for i in range(150)]
    assert runs_interval([values]) == bootstrap_interval(values)


def test_seeds_that_agree_on_every_item_give_the_interval_of_seed_choice_alone():
    # Every item right under two seeds, none under the third: item resampling changes nothing, seed resampling draws
    # k of 3 seeds "all right", k ~ Binomial(3, 2/3): P(k=0) = 1/27 = 3.7% and P(k=3) = 8/27, so the 95% interval is
    # [0, 1] exactly; with two seeds of one kind and none of the other it is the point.
    assert runs_interval([[True] * 40, [True] * 40, [False] * 40]) == (0.0, 1.0)
    assert runs_interval([[True] * 40, [True] * 30]) == (1.0, 1.0)
    with pytest.raises(ValueError, match="non-empty"):
        runs_interval([[True], []])


def test_spread_between_seeds_widens_the_interval():
    # Three seeds on the same 200 items: 60%, 70%, 80% right, against three that all score 70%.
    apart = [[i < right for i in range(200)] for right in (120, 140, 160)]
    together = [[i < 140 for i in range(200)]] * 3
    low, high = runs_interval(apart)
    pooled_low, pooled_high = bootstrap_interval([value for run in together for value in run])
    assert low < 0.65 and high > 0.75  # the between-seed spread (sd 10 points) is in it
    assert runs_interval(together) == pytest.approx((pooled_low, pooled_high), abs=0.01)  # items alone: as if pooled
    assert high - low > 1.5 * (pooled_high - pooled_low)


def test_paired_over_seeds_ties_identical_upstreams_and_separates_different_ones():
    a = {str(seed): {f"item{i}": (i + seed) % 4 != 0 for i in range(200)} for seed in (1337, 1338, 1339)}
    same = paired_runs_difference(a, {seed: dict(items) for seed, items in a.items()})
    assert (same.difference, same.low, same.high, same.items, same.runs, same.verdict) == (0.0, 0.0, 0.0, 600, 3, "~")
    worse = {seed: {item: right and i % 2 == 0 for i, (item, right) in enumerate(items.items())} for seed, items in a.items()}
    better = paired_runs_difference(a, worse)  # A - B per seed: 0.25, 0.50, 0.25 (B keeps a's even items, or half of them)
    assert better.difference == pytest.approx(1 / 3) and better.low > 0.2 and better.high > 0.45
    assert better.verdict == "A" and paired_runs_difference(worse, a).verdict == "B"
    # Only the seeds both ran are paired; with none shared there is nothing to compare.
    assert paired_runs_difference(a, {"1338": worse["1338"], "7": worse["1337"]}).runs == 1
    assert paired_runs_difference(a, {"1338": worse["1338"]}).difference == pytest.approx(
        paired_difference(a["1338"], worse["1338"]).difference)
    with pytest.raises(ValueError, match="share no seeds"):
        paired_runs_difference(a, {"7": worse["1337"]})


def test_margin_kept_interval_known_answers():
    teacher = {str(seed): {f"item{i}": i % 4 != 0 for i in range(200)} for seed in (1337, 1338)}  # 75%
    control = {seed: {item: int(item[4:]) % 2 == 0 for item in items} for seed, items in teacher.items()}  # 50%
    assert margin_interval(teacher, teacher, control) == (1.0, 1.0)  # as good as the teacher on every resample
    assert margin_interval(control, teacher, control) == (0.0, 0.0)  # no better than the control
    assert margin_interval(teacher, control, control) is None  # the teacher has no margin in any resample
    half = {seed: {item: right or int(item[4:]) % 8 == 1 for item, right in items.items()} for seed, items in control.items()}
    low, high = margin_interval(half, teacher, control)  # control + items 1, 9, 17, ...: half of the teacher's margin
    assert 0.25 < low < 0.5 < high < 0.8  # a ratio of two noisy differences: wide
    with pytest.raises(ValueError, match="share no seeds"):
        margin_interval({"7": teacher["1337"]}, teacher, control)


# ---- reading the experts' per-item files -------------------------------------------------------------------------
# Each expert's per-item lines exactly as s3prl 0.4.18's log_records builds them (asserted to be in its source), run
# on hand-made records.
WRITES = {
    "ks": ('lines = [f"{f} {i}\\n" for f, i in zip(records["filename"], records["predict"])]',
           'lines = [f"{f} {i}\\n" for f, i in zip(records["filename"], records["truth"])]'),
    "ic": ('lines = [f"{f},{a},{o},{l}\\n" for f, (a, o, l) in zip(records["filename"], records["predict"])]',
           'lines = [f"{f},{a},{o},{l}\\n" for f, (a, o, l) in zip(records["filename"], records["truth"])]'),
    "sid": ('lines = [f"{f} {p}\\n" for f, p in zip(records["filename"], records["predict_speaker"])]',
            'lines = [f"{f} {l}\\n" for f, l in zip(records["filename"], records["truth_speaker"])]'),
}
RECORDS = {
    "ks": {"filename": ["yes-0a7c2a8d_nohash_0.wav", "_unknown_-bed_nohash_1.wav", "no-0a7c2a8d_nohash_0.wav"],
           "predict": ["yes", "_unknown_", "yes"], "truth": ["yes", "_unknown_", "no"]},
    "ic": {"filename": ["0a3b5aa0-60a1-11e9-a2c8-b5bc5e1b0dd6", "0b1d6b40-45a8-11e9-8ec0-7bf21d1cfe30"],
           "predict": [("change language", "Chinese", "none"), ("increase", "volume", "kitchen")],
           "truth": [("change language", "Chinese", "none"), ("increase", "heat", "kitchen")]},
    "sid": {"filename": ["id10001-1zcIwhmdeo4-00001", "id10002-6WO410QOeuo-00001"],
            "predict_speaker": ["id10001", "id10001"], "truth_speaker": ["id10001", "id10002"]},
}
EXPECTED = {"ks": {"yes-0a7c2a8d_nohash_0.wav": True, "_unknown_-bed_nohash_1.wav": True, "no-0a7c2a8d_nohash_0.wav": False},
            "ic": {"0a3b5aa0-60a1-11e9-a2c8-b5bc5e1b0dd6": True, "0b1d6b40-45a8-11e9-8ec0-7bf21d1cfe30": False},
            "sid": {"id10001-1zcIwhmdeo4-00001": True, "id10002-6WO410QOeuo-00001": False}}


def _write_as_the_expert(name: str, folder: Path, split: str, records: dict) -> None:
    for path, statement in zip(TASKS[name].item_paths(folder, split), WRITES[name]):
        scope = {"records": records}
        exec(statement, scope)
        path.write_text("".join(scope["lines"]))


@pytest.mark.parametrize("name", ["ks", "ic", "sid"])
def test_read_correct_on_files_as_the_expert_writes_them(name, tmp_path):
    spec = importlib.util.find_spec("s3prl")
    if spec is not None:
        source = (Path(spec.submodule_search_locations[0]) / "downstream" / TASKS[name].downstream / "expert.py").read_text()
        for template, statement in zip(TASKS[name].item_files, WRITES[name]):
            assert statement in source and f'f"{template.replace("{split}", "{mode}")}"' in source
    _write_as_the_expert(name, tmp_path, "test", RECORDS[name])
    assert read_correct(TASKS[name], tmp_path, "test") == EXPECTED[name]


def test_read_correct_refuses_what_it_cannot_pair(tmp_path):
    predictions, truth = TASKS["ks"].item_paths(tmp_path, "dev")
    predictions.write_text("yes-a.wav yes\nno-b.wav no\n")
    truth.write_text("yes-a.wav yes\n")
    with pytest.raises(ValueError, match="different items"):
        read_correct(TASKS["ks"], tmp_path, "dev")
    truth.write_text("yes-a.wav yes\nyes-a.wav yes\n")  # KS samples dev with replacement
    with pytest.raises(ValueError, match="appears twice"):
        read_correct(TASKS["ks"], tmp_path, "dev")
    with pytest.raises(ValueError, match="no per-item files"):
        read_correct(TASKS["er"], tmp_path, "test")
    assert kept_correct(TASKS["ks"], tmp_path) is None  # no test_items/ kept


# ---- the sweep keeps the items of the score it takes ---------------------------------------------------------------

def _ks_items(folder: Path, right: int, total: int = 8) -> None:
    """KS per-item test files with `right` of `total` items right."""
    folder.mkdir(parents=True, exist_ok=True)
    _write_as_the_expert("ks", folder, "test", {
        "filename": [f"yes-{i}.wav" for i in range(total)], "truth": ["yes"] * total,
        "predict": ["yes" if i < right else "no" for i in range(total)]})


def _test_in_run(run_dir: Path, best_step: int, test_at_best_dev: float) -> None:
    """A finished `test_in_run` training run that evaluated at steps 10 and 20; its expert's files hold step 20."""
    run_dir.mkdir(parents=True)
    (run_dir / "dev-best.ckpt").write_bytes(b"")
    (run_dir / "log.log").write_text("dev at step 10: 0.5\ntest at step 10: 0.75\ndev at step 20: 0.4\ntest at step 20: 0.5\n")
    (run_dir / "sweep.json").write_text(json.dumps({"lr": 0.01, "dev_scores": {"10": 0.5, "20": 0.4}, "best_dev": 0.5,
                                                    "best_step": best_step, "test_at_best_dev": test_at_best_dev}))
    _ks_items(run_dir, right=4)  # step 20's test items: 4/8


def test_sweep_reevaluates_the_best_dev_checkpoint_when_a_later_step_wrote_the_items(tmp_path, monkeypatch):
    import distill.superb.sweep as superb_sweep

    run_dir = tmp_path / "lr_0.01"
    _test_in_run(run_dir, best_step=10, test_at_best_dev=0.75)
    calls = []

    def evaluate(args, where):  # `gendistiller superb -m evaluate -e dev-best.ckpt -t test`, as the expert does it
        calls.append(args)
        _ks_items(where, right=6)
        with open(where / "log.log", "a") as log:
            log.write("test at step 0: 0.75\n")
        return "test acc: 0.75\n"

    monkeypatch.setattr(superb_sweep, "_superb", evaluate)
    assert superb_sweep.evaluate_test(TASKS["ks"], run_dir) == 0.75
    assert calls == [["-m", "evaluate", "-e", str(run_dir / "dev-best.ckpt"), "-t", "test"]]
    assert sum(kept_correct(TASKS["ks"], run_dir).values()) == 6
    assert superb_sweep.evaluate_test(TASKS["ks"], run_dir) == 0.75 and len(calls) == 1  # kept once


def test_sweep_keeps_the_last_evaluation_items_when_it_was_the_best(tmp_path, monkeypatch, capsys):
    import distill.superb.sweep as superb_sweep

    monkeypatch.setattr(superb_sweep, "_superb", lambda *args: pytest.fail("no runner call expected"))
    run_dir = tmp_path / "lr_0.01"
    _test_in_run(run_dir, best_step=20, test_at_best_dev=0.5)
    assert superb_sweep.evaluate_test(TASKS["ks"], run_dir) == 0.5
    assert sum(kept_correct(TASKS["ks"], run_dir).values()) == 4 and not (run_dir / f"{TEST_ITEMS}.partial").exists()

    other = tmp_path / "lr_0.001"  # files that do not give the score taken are not kept
    _test_in_run(other, best_step=20, test_at_best_dev=0.625)
    assert superb_sweep.evaluate_test(TASKS["ks"], other) == 0.625
    assert kept_correct(TASKS["ks"], other) is None and "not kept" in capsys.readouterr().out
    missing = tmp_path / "lr_0.1"  # nor are missing files: no interval, but the score stands
    _test_in_run(missing, best_step=20, test_at_best_dev=0.5)
    (missing / "test_truth.txt").unlink()
    assert superb_sweep.evaluate_test(TASKS["ks"], missing) == 0.5
    assert kept_correct(TASKS["ks"], missing) is None and "test_truth.txt" in capsys.readouterr().out


# ---- the report ----------------------------------------------------------------------------------------------------

def _results(path: Path, rows: list[tuple]) -> None:
    """A results CSV of rows (upstream, task, test, expdir[, seed]); without seeds, as written before the seed column."""
    fields = ["upstream", "task", "metric", "higher_is_better", "lr", "dev", "test", "params", "ckpt", "expdir", "finished_at"]
    seeded = any(len(row) == 5 for row in rows)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields + ["seed"] * seeded)
        writer.writeheader()
        for upstream, task, test, expdir, *seed in rows:
            writer.writerow(dict(upstream=upstream, task=task, metric="acc" if task != "pr" else "per",
                                 higher_is_better=task != "pr", lr=0.01, dev=0.5, test=test, params=1000000, ckpt="x.pt",
                                 expdir=expdir, finished_at="now", **({"seed": seed[0]} if seed else {})))


def test_report_prints_intervals_and_paired_comparisons(tmp_path):
    from distill.superb.report import Reference, write_report

    right = {"gendistiller": 180, "distilhubert": 178, "wavlm": 190, "wavlm-untrained": 100}  # of 200 KS items
    rows = []
    for upstream, count in right.items():
        expdir = tmp_path / upstream / "ks" / "lr_0.01"
        _ks_items(expdir / TEST_ITEMS, right=count, total=200)
        rows += [(upstream, "ks", count / 200, str(expdir)), (upstream, "pr", 0.3, str(tmp_path / "pr"))]
    rows.append(("distilhubert", "sid", 0.25, str(tmp_path / "nothing_kept")))
    rows.append(("gendistiller", "sid", 0.5, str(tmp_path / "nothing_kept")))
    _results(tmp_path / "results.csv", rows)
    write_report(tmp_path / "results.csv", tmp_path / "report", reference=Reference(teacher="wavlm", control="wavlm-untrained"))
    table = (tmp_path / "report" / "superb.md").read_text()

    low, high = bootstrap_interval([True] * 180 + [False] * 20)
    interval = f"[{100 * low:.1f}, {100 * high:.1f}]"
    assert f"| gendistiller | 1.00 | 30.00 (lr 0.01) | 90.00 {interval} (lr 0.01) | 50.00 [not kept] (lr 0.01) |" in table
    assert "| wavlm-untrained (control: untrained) | 1.00 | 30.00 (lr 0.01) | 50.00 [" in table
    # The same first items are right for every upstream: gendistiller's 180 include distilhubert's 178.
    gap = paired_difference({f"yes-{i}.wav": i < 180 for i in range(200)}, {f"yes-{i}.wav": i < 178 for i in range(200)})
    assert gap.verdict == "~"
    assert f"| KS | gendistiller | distilhubert | 200 | +1.00 | [{100 * gap.low:.1f}, {100 * gap.high:.1f}] | ~ |" in table
    row = {tuple(line.split(" | ")[1:3]): line for line in table.splitlines() if line.startswith("| KS | ")}
    assert set(row) == {("gendistiller", "wavlm-untrained"), ("gendistiller", "wavlm"), ("gendistiller", "distilhubert"),
                        ("distilhubert", "wavlm-untrained"), ("distilhubert", "wavlm")}  # each student against the rest
    assert row[("gendistiller", "wavlm-untrained")].startswith("| KS | gendistiller | wavlm-untrained | 200 | +40.00 |")
    assert row[("gendistiller", "wavlm-untrained")].endswith("| gendistiller |")
    assert row[("distilhubert", "wavlm")].startswith("| KS | distilhubert | wavlm | 200 | -6.00 |")
    assert row[("distilhubert", "wavlm")].endswith("| wavlm |")
    correct = {u: {"": {f"yes-{i}.wav": i < count for i in range(200)}} for u, count in right.items()}
    low, high = margin_interval(correct["gendistiller"], correct["wavlm"], correct["wavlm-untrained"])
    assert f"| gendistiller | – | 89% [{round(100 * low)}, {round(100 * high)}] | – |" in table  # 80 of the 90 points
    assert "| PR | – | – | – | – | no interval | – |" in table
    assert "| SID | gendistiller | distilhubert | – | – | no interval | – |" in table
    assert (tmp_path / "report" / "superb.png").read_bytes()[:4] == b"\x89PNG"


def test_report_over_seeds_gives_mean_spread_and_the_two_stage_interval(tmp_path):
    from distill.superb.report import Reference, write_report

    right = {"gendistiller": (150, 160, 170), "distilhubert": (130, 140, 150)}  # of 200 KS items, seeds 1337-1339
    rows, items = [], {}
    for upstream, counts in right.items():
        for seed, count in zip((1337, 1338, 1339), counts):
            expdir = tmp_path / f"seed_{seed}" / upstream / "ks" / "lr_0.01"
            _ks_items(expdir / TEST_ITEMS, right=count, total=200)
            rows.append((upstream, "ks", count / 200, str(expdir), seed))
            items.setdefault(upstream, {})[str(seed)] = {f"yes-{i}.wav": i < count for i in range(200)}
    _results(tmp_path / "results.csv", rows)
    write_report(tmp_path / "results.csv", tmp_path / "report", reference=Reference())
    table = (tmp_path / "report" / "superb.md").read_text()

    assert "Downstream seeds (s3prl --seed): 1337, 1338, 1339; score: mean ± standard deviation over seeds" in table
    low, high = runs_interval([[i < count for i in range(200)] for count in right["gendistiller"]])
    assert f"| gendistiller | 1.00 | 80.00 ± 5.00 [{100 * low:.1f}, {100 * high:.1f}] (lr 0.01) |" in table
    gap = paired_runs_difference(items["gendistiller"], items["distilhubert"])
    assert gap.items == 600 and gap.runs == 3 and gap.verdict == "A"  # 10 points ahead on every seed, the same items
    assert (f"| KS | gendistiller | distilhubert | 600 | {100 * gap.difference:+.2f} | "
            f"[{100 * gap.low:.1f}, {100 * gap.high:.1f}] | gendistiller |") in table
    assert (tmp_path / "report" / "superb.png").read_bytes()[:4] == b"\x89PNG"


def test_sweep_seeds_runs_each_seed_in_its_folder_into_one_results_file(tmp_path, monkeypatch):
    import distill.superb.sweep as superb_sweep

    results = tmp_path / "results.csv"  # written before the seed column: its row is no seed's, kept as it is
    _results(results, [("gendistiller", "ks", 0.5, "old")])
    trained = []

    def train_one(upstream, task, lr, run_dir, overrides, test_in_run=False, seed=superb_sweep.S3PRL_SEED):
        trained.append((run_dir.relative_to(tmp_path / "sweep"), seed))
        return 0.5

    monkeypatch.setattr(superb_sweep, "train_one", train_one)
    monkeypatch.setattr(superb_sweep, "evaluate_test", lambda task, run_dir: 0.25 + (run_dir.parts[-4] == "seed_1338") / 4)
    monkeypatch.setattr(superb_sweep, "count_parameters", lambda upstream: 7)
    upstream = superb_sweep.Upstream("gendistiller", "gendistiller_local", "x.pt")
    rows = superb_sweep.sweep_seeds([upstream], ["ks"], [1e-2], results, tmp_path / "sweep", seeds=2, test_in_run=True)
    assert trained == [(Path("seed_1337/gendistiller/ks/lr_0.01"), 1337), (Path("seed_1338/gendistiller/ks/lr_0.01"), 1338)]
    assert [(row["seed"], row["test"]) for row in rows] == [("", "0.5"), ("1337", "0.25"), ("1338", "0.5")]
    assert results.read_text().splitlines()[0] == ",".join(superb_sweep.RESULT_FIELDS)
    assert superb_sweep.sweep_seeds([upstream], ["ks"], [1e-2], results, tmp_path / "sweep", seeds=2) == rows
    assert len(trained) == 2  # each seed's row is found again: nothing reruns
    with pytest.raises(ValueError, match="at least 1"):
        superb_sweep.seeds_of(0)


def test_later_seeds_train_the_rate_the_first_seed_chose(tmp_path, monkeypatch):
    """SUPERB's protocol: the first seed sweeps the learning rates, the later seeds train the one it chose on dev."""
    import distill.superb.sweep as superb_sweep

    trained = []

    def train_one(upstream, task, lr, run_dir, overrides, test_in_run=False, seed=superb_sweep.S3PRL_SEED):
        trained.append((seed, lr))
        return {1e-2: 0.4, 1e-3: 0.6, 1e-4: 0.5}[lr]

    monkeypatch.setattr(superb_sweep, "train_one", train_one)
    monkeypatch.setattr(superb_sweep, "evaluate_test", lambda task, run_dir: 0.5)
    monkeypatch.setattr(superb_sweep, "count_parameters", lambda upstream: 7)
    upstream = superb_sweep.Upstream("gendistiller", "gendistiller_local", "x.pt")
    lrs = [1e-2, 1e-3, 1e-4]
    rows = superb_sweep.sweep_seeds([upstream], ["ks"], lrs, tmp_path / "results.csv", tmp_path / "sweep", seeds=3)
    assert trained == [(1337, 1e-2), (1337, 1e-3), (1337, 1e-4), (1338, 1e-3), (1339, 1e-3)]
    assert [(row["seed"], row["lr"]) for row in rows] == [("1337", "0.001"), ("1338", "0.001"), ("1339", "0.001")]
    trained.clear()
    superb_sweep.sweep_seeds([upstream], ["ks"], lrs, tmp_path / "every.csv", tmp_path / "every", seeds=2,
                             lrs_every_seed=True)
    assert trained == [(seed, lr) for seed in (1337, 1338) for lr in lrs]
