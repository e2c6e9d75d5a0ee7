"""Metrics on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from kgllm.eval import metrics


def test_hits_at_k():
    assert metrics.hits_at_k(["a", "b", "c"], {"b"}, 1) == 0.0
    assert metrics.hits_at_k(["a", "b", "c"], {"b"}, 2) == 1.0
    assert metrics.hits_at_k([], {"b"}, 1) == 0.0
    with pytest.raises(ValueError, match="k must be >= 1"):
        metrics.hits_at_k(["a"], {"a"}, 0)


def test_answer_f1():
    # predicted {a,b,c}, gold {b,c,d,e}: P = 2/3, R = 2/4, F1 = 2*(2/3)*(1/2)/(2/3+1/2) = 4/7
    assert metrics.answer_f1(["a", "b", "c"], ["b", "c", "d", "e"]) == pytest.approx(4 / 7)
    assert metrics.answer_f1([], []) == 1.0
    assert metrics.answer_f1(["a"], []) == 0.0
    assert metrics.answer_f1(["a"], ["b"]) == 0.0


def test_exact_match_and_accuracy():
    assert metrics.exact_match("The Matrix!", "matrix") == 1.0
    assert metrics.exact_match("The Matrix", "Matrix", normalize=False) == 0.0
    assert metrics.exact_match(["a", "b"], ["b", "a"]) == 1.0
    assert metrics.accuracy(["A", "B", "C", "D"], ["A", "C", "C", "D"]) == 0.75
    with pytest.raises(ValueError, match="equal lengths"):
        metrics.accuracy(["A"], ["A", "B"])


def test_filtered_rank_removes_other_true_answers():
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    # target 2 (0.7): raw rank 3; entity 0 is another true answer -> filtered rank 2
    assert metrics.filtered_rank(scores, 2) == 3.0
    assert metrics.filtered_rank(scores, 2, known=[0, 2]) == 2.0
    # ties count half: target 1 tied with entity 2 -> 1 + 1 better + 0.5
    tied = np.array([0.9, 0.5, 0.5, 0.1])
    assert metrics.filtered_rank(tied, 1) == 2.5
    # a constant scorer gets the middle rank, not the best one
    assert metrics.filtered_rank(np.zeros(5), 0) == 3.0


def test_filtered_ranks_batch_matches_single():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(6, 9)).astype(float)
    targets = rng.integers(0, 9, size=6)
    mask = rng.random((6, 9)) < 0.3
    batch = metrics.filtered_ranks(scores, targets, mask)
    for i in range(6):
        known = [j for j in range(9) if mask[i, j]]
        assert batch[i] == metrics.filtered_rank(scores[i], int(targets[i]), known)


def test_mrr_and_hits_from_ranks():
    ranks = [1, 2, 4, 20]
    assert metrics.mrr(ranks) == pytest.approx((1 + 0.5 + 0.25 + 0.05) / 4)
    out = metrics.ranking_metrics(ranks)
    assert out["hits@1"] == 0.25 and out["hits@3"] == 0.5 and out["hits@10"] == 0.75


def test_auc_pr_hand_computed():
    # ranking by score: +, -, +, -  -> precision at the positives: 1/1 and 2/3 -> AP = (1 + 2/3) / 2
    assert metrics.auc_pr([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx((1 + 2 / 3) / 2)
    assert metrics.auc_pr([1, 1, 0], [0.9, 0.8, 0.1]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="positive"):
        metrics.auc_pr([0, 0], [0.1, 0.2])


def test_latency_summary_and_calibration():
    lat = metrics.latency_summary(range(1, 101))
    assert lat["p50"] == pytest.approx(50.5) and lat["mean"] == pytest.approx(50.5)
    assert metrics.latency_summary([]) == {}
    # two bins used: 0.95-conf answers all right, 0.15-conf answers half right
    cal = metrics.calibration([0.95, 0.95, 0.15, 0.15], [True, True, True, False], bins=10)
    assert [b["count"] for b in cal["bins"]] == [2, 2]
    # ECE = 0.5 * |0.15 - 0.5| + 0.5 * |0.95 - 1.0| = 0.2
    assert cal["ece"] == pytest.approx(0.2)


def test_filtered_ranks_hand_computed_ties_and_filter():
    scores = np.array([
        [0.9, 0.5, 0.5, 0.5, 0.1],  # target 1 tied with 2 and 3, one better -> 1 + 1 + 2/2 = 3
        [0.9, 0.5, 0.5, 0.5, 0.1],  # same, but 0 and 2 are other true answers -> 1 + 0 + 1/2 = 1.5
        [0.2, 0.2, 0.2, 0.2, 0.2],  # constant scorer: middle rank (5 + 1) / 2 = 3
        [0.1, 0.9, 0.9, 0.3, 0.0],  # the target's own mask entry never filters it out -> 1 + 1/2 = 1.5
    ])
    targets = np.array([1, 1, 4, 2])
    mask = np.zeros_like(scores, dtype=bool)
    mask[1, [0, 2]] = True
    mask[3, 2] = True
    assert list(metrics.filtered_ranks(scores, targets, mask)) == [3.0, 1.5, 3.0, 1.5]
    assert metrics.ranking_metrics([3.0, 1.5, 3.0, 1.5], ks=(1, 3)) == pytest.approx(
        {"mrr": (1 / 3 + 2 / 3 + 1 / 3 + 2 / 3) / 4, "hits@1": 0.0, "hits@3": 1.0})


def test_swap_estimated_ranks_hand_computed():
    scores = np.array([
        [0.9, 0.8, 0.7, 0.6, 0.1],  # target 3; 0, 1, 2 unfiltered above; peer 4 below -> nothing taken: 4
        [0.9, 0.8, 0.7, 0.6, 0.1],  # peer 0 above (filtered): 1, 2 left above, one taken off: 2
        [0.9, 0.8, 0.7, 0.6, 0.1],  # peers 0, 1 filtered: 2 left above, 2 x 2 taken off, floored: 1
        [0.6, 0.6, 0.6, 0.6, 0.6],  # all tied: 1, 2, 3 at half each, peer 0 at half -> 1 + 1.5 - 0.5 = 2
    ])
    targets = np.array([3, 3, 3, 4])
    filt = np.zeros_like(scores, dtype=bool)
    peers = np.zeros_like(scores, dtype=bool)
    peers[0, 4] = peers[1, 0] = peers[2, [0, 1]] = peers[3, [0, 4]] = True  # [3, 4]: the target is never a peer
    filt[1, 0] = filt[2, [0, 1]] = filt[3, 0] = True  # peers are other true answers: filtered
    ranks = [metrics.swap_estimated_ranks(scores[i:i + 1], targets[i:i + 1], filt[i:i + 1], peers[i:i + 1],
                                          scale=2.0 if i == 2 else 1.0)[0] for i in range(4)]
    assert ranks == [4.0, 2.0, 1.0, 2.0]
    # with no peers above, the estimate is the incomplete-filter rank itself
    assert list(metrics.swap_estimated_ranks(scores[:1], targets[:1], filt[:1], peers[:1])) == list(
        metrics.filtered_ranks(scores[:1], targets[:1], filt[:1]))


def test_nan_scores_rank_last_not_above_everything():
    # NaN compares false both ways: a diverged model's NaN target ranked 0.5 (MRR 2.0); now it is the worst
    scores = np.array([[np.nan, 1.0, 2.0], [1.0, np.nan, 0.5]])
    none = np.zeros((2, 3), dtype=bool)
    assert metrics.filtered_rank(scores[0], 0) == 3.0
    assert metrics.filtered_rank(scores[1], 0) == 1.0  # a NaN rival is not above the target
    assert list(metrics.filtered_ranks(scores, np.array([0, 0]), none)) == [3.0, 1.0]
    assert list(metrics.swap_estimated_ranks(scores, np.array([0, 0]), none, none)) == [3.0, 1.0]
    assert metrics.filtered_rank(np.full(3, np.nan), 1) == 2.0  # all NaN: tied, as a constant scorer
    assert metrics.mrr(metrics.filtered_ranks(scores, np.array([0, 0]), none)) <= 1.0


def test_calibration_of_nan_scores_is_finite():
    # a NaN score made the ECE NaN, written as the invalid JSON token NaN in results.json
    cal = metrics.calibration([np.nan, 0.5, 1.0], [False, True, True])
    assert np.isfinite(cal["ece"]) and cal["bins"][0] == {"lo": 0.0, "hi": 0.1, "count": 1, "confidence": 0.0,
                                                           "accuracy": 0.0}
    assert cal["ece"] == pytest.approx((0.5 + 0.0) / 3)


def test_accuracy_of_numpy_arrays():
    # "if not gold" raised "The truth value of an array with more than one element is ambiguous"
    assert metrics.accuracy(np.array([1, 0, 2]), np.array([1, 1, 2])) == pytest.approx(2 / 3)
    assert metrics.accuracy(np.array([]), np.array([])) == 0.0
