"""Scoring word confidences against the reference (dmao.evaluation.confidence)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from dmao.evaluation.confidence import (
    Calibration,
    auc_roc,
    confidence_quality,
    fit_calibration,
    nce,
    word_correctness,
)


def test_hypothesis_words_are_labelled_by_the_alignment():
    ref = ["THE", "CAT", "SAT", "ON", "THE", "MAT"]
    hyp = ["THE", "BAT", "SAT", "ON", "ON", "THE", "MAT"]
    assert word_correctness(ref, hyp) == [True, False, True, True, False, True, True]
    assert word_correctness(ref, []) == []
    assert word_correctness([], ["A"]) == [False]


def test_auc_is_the_share_of_correct_wrong_pairs_ranked_right():
    rng = random.Random(0)
    conf = [rng.choice([0.1, 0.3, 0.5, 0.7, 0.9]) for _ in range(200)]  # many ties
    correct = [rng.random() < c for c in conf]
    right = [c for c, ok in zip(conf, correct, strict=True) if ok]
    wrong = [c for c, ok in zip(conf, correct, strict=True) if not ok]
    pairs = sum((r > w) + 0.5 * (r == w) for r in right for w in wrong)
    assert auc_roc(conf, correct) == pytest.approx(pairs / (len(right) * len(wrong)))
    assert 0.6 < auc_roc(conf, correct) < 1.0  # informative but not perfect
    assert auc_roc([0.9, 0.1], [True, False]) == 1.0
    assert auc_roc([0.1, 0.9], [True, False]) == 0.0
    assert math.isnan(auc_roc([0.5, 0.6], [True, True]))


def test_nce_is_one_for_perfect_zero_for_the_base_rate_negative_for_overconfidence():
    correct = [True] * 8 + [False] * 2
    assert nce([1.0] * 8 + [0.0] * 2, correct) == pytest.approx(1.0, abs=1e-4)
    assert nce([0.8] * 10, correct) == pytest.approx(0.0, abs=1e-12)
    assert nce([0.99] * 10, correct) < 0
    assert math.isnan(nce([0.9, 0.9], [True, True]))
    with pytest.raises(ValueError, match="2 confidences for 3 words"):
        nce([0.1, 0.2], [True, False, True])


def test_quality_over_utterances():
    quality = confidence_quality(
        ["THE CAT", "A DOG"],
        [["THE", "BAT"], ["A", "DOG", "BARKS"]],
        [[0.9, 0.2], [0.8, 0.7, 0.3]],
    )
    assert (quality.num_words, quality.num_wrong) == (5, 2)
    assert quality.auc_roc == 1.0
    assert quality.mean_correct == pytest.approx(0.8)
    assert quality.mean_wrong == pytest.approx(0.25)
    assert quality.as_dict()["auc_roc"] == 1.0
    empty = confidence_quality(["A"], [["A"]], [[0.9]])
    assert empty.as_dict()["auc_roc"] is None and empty.as_dict()["nce"] is None
    with pytest.raises(ValueError, match="1 confidences for 2 words"):
        confidence_quality(["A"], [["A", "B"]], [[0.5]])


def test_platt_scaling_recovers_the_map_that_made_the_labels():
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.02, 0.98, size=20_000)
    truth = Calibration(a=2.0, b=-0.5)
    correct = [bool(rng.random() < truth(c)) for c in raw]
    fitted = fit_calibration(raw.tolist(), correct)
    assert fitted.a == pytest.approx(2.0, abs=0.1) and fitted.b == pytest.approx(-0.5, abs=0.1)
    calibrated = [fitted(c) for c in raw]
    assert auc_roc(calibrated, correct) == pytest.approx(auc_roc(raw.tolist(), correct))
    # The identity (a=1, b=0) is one of the maps fitted over: on the fitting data the fit is
    # at least as likely, so its NCE is at least the raw confidences'.
    assert nce(calibrated, correct) >= nce(raw.tolist(), correct)
    assert nce(calibrated, correct) > 0
    with pytest.raises(ValueError, match="needs right and wrong words: 2 right of 2"):
        fit_calibration([0.2, 0.9], [True, True])
