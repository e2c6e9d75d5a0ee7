"""Metrics shared by every benchmark: QA (Hits@k, answer-set F1, EM, accuracy), link prediction
(filtered ranks, MRR, Hits@k), ranking (AUC-PR), latency percentiles and score calibration.

All functions take plain Python/numpy values and return floats in ``[0, 1]`` (or arrays of ranks),
so they are easy to check by hand; the tests do exactly that.
"""

from __future__ import annotations

import re
import string
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "normalize_answer",
    "hits_at_k",
    "answer_f1",
    "exact_match",
    "accuracy",
    "mean",
    "filtered_rank",
    "filtered_ranks",
    "swap_estimated_ranks",
    "mrr",
    "hits_from_ranks",
    "ranking_metrics",
    "auc_pr",
    "latency_summary",
    "calibration",
    "summarize",
]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD-style normalisation: lower case, no punctuation, articles or extra spaces."""
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def hits_at_k(predicted: Sequence[str], gold: Collection[str], k: int = 1) -> float:
    """1.0 when one of the first ``k`` predictions is a gold answer, else 0.0."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k!r}")
    return 1.0 if any(p in gold for p in predicted[:k]) else 0.0


def answer_f1(predicted: Iterable[str], gold: Iterable[str]) -> float:
    """F1 between a predicted answer set and the gold set (both empty: 1.0; one empty: 0.0)."""
    pred, ref = set(predicted), set(gold)
    if not pred and not ref:
        return 1.0
    overlap = len(pred & ref)
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(predicted: str | Iterable[str], gold: str | Iterable[str], *, normalize: bool = True) -> float:
    """1.0 when the prediction equals the gold answer.

    Strings are compared after :func:`normalize_answer` (unless ``normalize=False``); collections
    are compared as sets of (normalised) strings.
    """
    def prep(value: str | Iterable[str]) -> frozenset[str]:
        items = [value] if isinstance(value, str) else list(value)
        return frozenset(normalize_answer(v) if normalize else v for v in items)

    return 1.0 if prep(predicted) == prep(gold) else 0.0


def accuracy(predicted: Sequence[Any], gold: Sequence[Any]) -> float:
    """Share of positions where ``predicted[i] == gold[i]`` (0.0 for empty input)."""
    if len(predicted) != len(gold):
        raise ValueError(f"accuracy needs equal lengths, got {len(predicted)} predictions for {len(gold)} labels")
    if len(gold) == 0:  # not ``not gold``: a numpy array has no truth value
        return 0.0
    return float(sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(gold))


def mean(values: Iterable[float]) -> float:
    """Arithmetic mean, 0.0 for no values."""
    arr = np.fromiter(values, dtype=np.float64)
    return float(arr.mean()) if arr.size else 0.0


# -- link prediction ------------------------------------------------------------------------------
def _comparable(scores: np.ndarray) -> np.ndarray:
    """Scores as float64 with NaN (a diverged model) as the worst score: NaN compares false both ways, so a
    NaN target would otherwise rank above everything (rank 0.5, MRR over 1)."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.where(np.isnan(scores), -np.inf, scores)


def filtered_rank(scores: np.ndarray, target: int, known: Iterable[int] = ()) -> float:
    """Rank (1 = best) of ``target`` among ``scores`` after removing the other ``known`` true answers.

    Ties are broken by the mean of the optimistic and pessimistic rank ("realistic" rank, as in
    PyKEEN), so a constant scorer cannot look good. NaN scores count as the worst.
    """
    scores = _comparable(scores)
    mask = np.ones(scores.shape[0], dtype=bool)
    others = [k for k in known if k != target]
    if others:
        mask[np.asarray(others, dtype=np.int64)] = False
    mask[target] = True
    valid = scores[mask]
    t = scores[target]
    better = int(np.sum(valid > t))
    ties = int(np.sum(valid == t)) - 1  # the target itself
    return 1.0 + better + ties / 2.0


def filtered_ranks(scores: np.ndarray, targets: np.ndarray, filter_mask: np.ndarray) -> np.ndarray:
    """Vectorised :func:`filtered_rank` for a batch.

    Args:
        scores: ``(b, n)`` scores of every candidate for each query.
        targets: ``(b,)`` index of the answer being ranked.
        filter_mask: ``(b, n)`` bool, True for *other* known true answers to remove (the target's own
            entry is ignored).

    Returns:
        ``(b,)`` float ranks, 1 = best, ties counted as half (NaN scores count as the worst).
    """
    scores = _comparable(scores)
    b = scores.shape[0]
    rows = np.arange(b)
    t = scores[rows, targets][:, None]
    keep = ~np.asarray(filter_mask, dtype=bool)
    keep[rows, targets] = True
    better = ((scores > t) & keep).sum(axis=1)
    ties = ((scores == t) & keep).sum(axis=1) - 1
    return 1.0 + better + ties / 2.0


def swap_estimated_ranks(scores: np.ndarray, targets: np.ndarray, filter_mask: np.ndarray,
                         peer_mask: np.ndarray, *, scale: float = 1.0) -> np.ndarray:
    """Filtered ranks *estimated* for a complete filter when one split's true triples are missing from it.

    When ``test.txt`` is withheld, its true answers stay among the candidates of a ``valid.txt`` query and
    some outrank the target. The scored split's own other answers to the same query (``peer_mask``; they
    are filtered) are a same-distribution sample of such unseen true answers, so the number of them scored
    above the target, times ``scale`` (size of the missing split / size of the scored split), estimates
    how many missing ones are above it; that many are taken off the rank (never below 1). On a re-split of
    ``train.txt`` this recovers the MRR of the complete filter to within 0.01-0.02, slightly low
    (``bench/link_prediction_filter.py``).

    Args:
        scores, targets, filter_mask: as for :func:`filtered_ranks` (the incomplete filter).
        peer_mask: ``(b, n)`` bool, True for the other answers of the same query in the scored split
            (the target's own entry is ignored).
        scale: expected size of the missing split over the size of the scored split.

    Returns:
        ``(b,)`` float ranks, ties counted as half (NaN scores count as the worst).
    """
    scores = _comparable(scores)
    rows = np.arange(scores.shape[0])
    t = scores[rows, targets][:, None]
    above = (scores > t) + 0.5 * (scores == t)
    above[rows, targets] = 0.0
    unfiltered = ~np.asarray(filter_mask, dtype=bool)
    peers = np.asarray(peer_mask, dtype=bool).copy()
    peers[rows, targets] = False
    counted = (above * unfiltered).sum(axis=1)
    missing_above = scale * (above * peers).sum(axis=1)
    return 1.0 + np.maximum(0.0, counted - missing_above)


def mrr(ranks: Iterable[float]) -> float:
    """Mean reciprocal rank."""
    arr = np.fromiter(ranks, dtype=np.float64)
    return float((1.0 / arr).mean()) if arr.size else 0.0


def hits_from_ranks(ranks: Iterable[float], k: int) -> float:
    """Share of ranks ``<= k``."""
    arr = np.fromiter(ranks, dtype=np.float64)
    return float((arr <= k).mean()) if arr.size else 0.0


def ranking_metrics(ranks: Iterable[float], ks: Sequence[int] = (1, 3, 10)) -> dict[str, float]:
    """``{"mrr": ..., "hits@1": ..., ...}`` from a list of filtered ranks."""
    arr = np.fromiter(ranks, dtype=np.float64)
    out = {"mrr": mrr(arr)}
    out.update({f"hits@{k}": hits_from_ranks(arr, k) for k in ks})
    return out


def auc_pr(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the precision-recall curve as average precision (the Countries protocol of NTP/MINERVA).

    Tied scores are handled as scikit-learn does (one threshold per distinct score).
    """
    from sklearn.metrics import average_precision_score

    y = np.asarray(labels, dtype=np.int64)
    if y.sum() == 0:
        raise ValueError("auc_pr needs at least one positive label")
    return float(average_precision_score(y, np.asarray(scores, dtype=np.float64)))


# -- latency and calibration ----------------------------------------------------------------------
def latency_summary(latencies_ms: Iterable[float]) -> dict[str, float]:
    """``p50``, ``p95``, ``p99`` and ``mean`` of per-question latencies in milliseconds."""
    arr = np.fromiter(latencies_ms, dtype=np.float64)
    if not arr.size:
        return {}
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "p99": round(float(p99), 3),
            "mean": round(float(arr.mean()), 3)}


def calibration(confidences: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray,
                bins: int = 10) -> dict[str, Any]:
    """Reliability of answer scores: per-bin accuracy vs mean confidence and the expected calibration error.

    Args:
        confidences: score of the top answer per question, in ``[0, 1]`` (clipped; NaN counts as 0).
        correct: whether that answer was right.
        bins: number of equal-width bins over ``[0, 1]``.

    Returns:
        ``{"ece": float, "bins": [{"lo", "hi", "count", "confidence", "accuracy"}, ...]}`` (empty bins left out).
    """
    # a NaN score (a diverged model) is no confidence: kept, it made the ECE NaN and results.json invalid JSON
    conf = np.clip(np.nan_to_num(np.asarray(confidences, dtype=np.float64), nan=0.0), 0.0, 1.0)
    ok = np.asarray(correct, dtype=np.float64)
    if conf.shape != ok.shape:
        raise ValueError(f"calibration needs equal lengths, got {conf.shape[0]} scores and {ok.shape[0]} labels")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    out_bins: list[dict[str, float]] = []
    ece = 0.0
    for b in range(bins):
        sel = which == b
        count = int(sel.sum())
        if not count:
            continue
        c, a = float(conf[sel].mean()), float(ok[sel].mean())
        ece += count / conf.size * abs(c - a)
        out_bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": count,
                         "confidence": c, "accuracy": a})
    return {"ece": float(ece), "bins": out_bins}


def summarize(values: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """Mean of each named list of per-question values (e.g. ``{"hits@1": [1, 0, 1]}``)."""
    return {name: mean(vals) for name, vals in values.items()}

