"""Query-by-example scoring (SUPERB QbE on QUESST 2014): the maximum term-weighted value (MTWV) of the detections s3prl's
`quesst14_dtw` expert writes (EXPDIR/benchmark.stdlist.xml: a score per query and document), against the ground truth
of the QUESST 2014 scoring kit (scoring/groundtruth_quesst14_{dev,eval}/: the term list of queries, the ECF of
documents, an RTTM with a LEXEME line per occurrence of a query in a document).

TWV(θ) = 1 - mean over queries with at least one occurrence of [P_miss(q, θ) + β · P_fa(q, θ)], where a trial
(q, d) is a detection when its score is at least θ, P_miss(q, θ) = missed occurrences / occurrences of q and
P_fa(q, θ) = false detections / documents without q; β = (C_fa / C_miss) · (1 / P_target - 1). MTWV is the largest
TWV over θ (θ above every score detects nothing: TWV 0). The constants are those of the kit's score-TWV-Cnxe.sh
(QUESST 2014/2015): P_target = 0.0008, C_fa = 1, C_miss = 100, so β = 12.49. Trials missing from the detections count
as never detected. Cnxe, the kit's other metric, needs calibrated log-likelihood ratios and is not computed here.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import numpy as np

P_TARGET, C_FA, C_MISS = 0.0008, 1.0, 100.0  # QUESST 2014/2015 scoring kit, score-TWV-Cnxe.sh
BETA = (C_FA / C_MISS) * (1.0 / P_TARGET - 1.0)


@dataclass
class GroundTruth:
    queries: list[str]  # term ids of the term list
    documents: list[str]  # document names (audio file stems) of the ECF
    occurrences: set[tuple[str, str]]  # (query, document) pairs where the query occurs


def read_ground_truth(folder: Path) -> GroundTruth:
    """A groundtruth_quesst14_* folder: its *.tlist.xml, *.ecf.xml and *.rttm."""
    def one(pattern: str) -> Path:
        found = sorted(Path(folder).glob(pattern))
        if len(found) != 1:
            raise FileNotFoundError(f"{folder}: expected one {pattern}, found {[p.name for p in found]}")
        return found[0]

    queries = [term.get("termid") for term in ElementTree.parse(one("*.tlist.xml")).getroot().iter("term")]
    documents = [Path(excerpt.get("audio_filename")).stem
                 for excerpt in ElementTree.parse(one("*.ecf.xml")).getroot().iter("excerpt")]
    occurrences = set()
    for line in one("*.rttm").read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == "LEXEME":  # LEXEME <document> <channel> <tbeg> <dur> <query> ...
            occurrences.add((fields[5], fields[1]))
    return GroundTruth(queries, documents, occurrences)  # type: ignore[arg-type]


def read_detections(stdlist: Path) -> dict[tuple[str, str], float]:
    """(query, document) -> score, from an NIST STD list (detected_termlist termid=... > term file=... score=...)."""
    scores = {}
    for termlist in ElementTree.parse(stdlist).getroot().iter("detected_termlist"):
        for term in termlist.iter("term"):
            scores[(termlist.get("termid"), term.get("file"))] = float(term.get("score"))
    return scores  # type: ignore[return-value]


def mtwv(scores: dict[tuple[str, str], float], truth: GroundTruth) -> tuple[float, float]:
    """(MTWV, the threshold that reaches it)."""
    queries = [q for q in truth.queries if any((q, d) in truth.occurrences for d in truth.documents)]
    if not queries:
        raise ValueError("no query of the term list occurs in any document: TWV is undefined")
    table = np.array([[scores.get((q, d), -np.inf) for d in truth.documents] for q in queries])
    target = np.array([[(q, d) in truth.occurrences for d in truth.documents] for q in queries])
    n_target, n_nontarget = target.sum(1), (~target).sum(1)
    best, best_threshold = 0.0, float("inf")
    for threshold in np.unique(table[np.isfinite(table)]):
        detected = table >= threshold
        p_miss = 1.0 - (detected & target).sum(1) / n_target
        p_fa = (detected & ~target).sum(1) / np.maximum(n_nontarget, 1)
        twv = 1.0 - float(np.mean(p_miss + BETA * p_fa))
        if twv > best:
            best, best_threshold = twv, float(threshold)
    return best, best_threshold


def score_experiment(expdir: Path, dataset_root: Path, split: str) -> float:
    """MTWV of EXPDIR/benchmark.stdlist.xml for `split` (dev -> groundtruth_quesst14_dev, anything else -> eval, as
    the expert chooses its queries)."""
    name = "dev" if split == "dev" else "eval"
    return mtwv(read_detections(Path(expdir) / "benchmark.stdlist.xml"),
                read_ground_truth(Path(dataset_root) / "scoring" / f"groundtruth_quesst14_{name}"))[0]


def dataset_root_from(overrides: list[str]) -> Path:
    """The `downstream_expert.datarc.dataset_root` an `-o` item list sets."""
    for item in overrides:
        match = re.fullmatch(r"config\.downstream_expert\.datarc\.dataset_root=(.+)", item)
        if match:
            return Path(match.group(1))
    raise ValueError("QbE scoring needs config.downstream_expert.datarc.dataset_root (the QUESST 2014 root) among the "
                     "overrides")
