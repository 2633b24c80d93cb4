"""Frame and word confidence from CTC posteriors (dmao.decoding.confidence)."""

from __future__ import annotations

import math

import pytest
import torch

from dmao.decoding.confidence import ConfidenceMeasure, aggregate, frame_confidence
from dmao.decoding.timing import word_timings

MEASURES = [
    ConfidenceMeasure(alpha=0.33),  # Tsallis, NeMo's default
    ConfidenceMeasure(),  # Gibbs
    ConfidenceMeasure(measure="max_prob"),
]


@pytest.mark.parametrize("measure", MEASURES, ids=lambda m: m.label)
def test_one_hot_is_one_uniform_is_zero_and_sharper_is_higher(measure):
    v = 30
    uniform = torch.full((1, v), -math.log(v))
    peaked = torch.log_softmax(torch.tensor([[60.0] + [0.0] * (v - 1)]), dim=-1)
    assert frame_confidence(uniform, measure).item() == pytest.approx(0.0, abs=1e-6)
    assert frame_confidence(peaked, measure).item() == pytest.approx(1.0, abs=1e-6)
    logits = torch.randn(1, v)
    temperatures = torch.tensor([4.0, 2.0, 1.0, 0.5, 0.25])[:, None]
    conf = frame_confidence(torch.log_softmax(logits / temperatures, dim=-1), measure)
    assert conf.shape == (5,) and conf.dtype == torch.float32
    assert torch.all(conf[1:] > conf[:-1]), conf  # lower temperature, sharper, more confident
    assert torch.all((conf >= 0) & (conf <= 1))


def test_known_values():
    """p = (0.7, 0.2, 0.1), worked by hand from the formulas in the module docstring."""
    log_p = torch.tensor([[0.7, 0.2, 0.1]]).log()
    max_prob = frame_confidence(log_p, ConfidenceMeasure(measure="max_prob")).item()
    assert max_prob == pytest.approx((0.7 * 3 - 1) / 2)  # 0.55
    assert frame_confidence(log_p, ConfidenceMeasure(alpha=0.5)).item() == pytest.approx(
        0.0908627, abs=1e-6
    )
    assert frame_confidence(log_p, ConfidenceMeasure(alpha=1.0)).item() == pytest.approx(
        0.1727689, abs=1e-6
    )
    # Unnormalised rows (logits, float16 roundings) are renormalised first.
    assert frame_confidence(log_p + 3.0, ConfidenceMeasure(measure="max_prob")).item() == (
        pytest.approx(0.55)
    )


def test_defaults_per_search():
    assert ConfidenceMeasure.for_method("greedy") == ConfidenceMeasure("entropy", 1.0, "min")
    assert ConfidenceMeasure.for_method("beam").aggregation == "min"
    assert ConfidenceMeasure.for_method("lm").label == "entropy(a=1)/mean"


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="measure must be one of"):
        ConfidenceMeasure(measure="entropi")
    with pytest.raises(ValueError, match="alpha must be > 0"):
        ConfidenceMeasure(alpha=0.0)
    with pytest.raises(ValueError, match="aggregation must be one of"):
        ConfidenceMeasure(aggregation="median")
    with pytest.raises(ValueError, match=r"\(T, V\)"):
        frame_confidence(torch.zeros(5))
    assert aggregate([0.5, 0.2, 0.8], "min") == 0.2
    assert aggregate([0.5, 0.2, 0.8], "mean") == pytest.approx(0.5)
    assert aggregate([0.5, 0.2, 0.8], "prod") == pytest.approx(0.08)


CHAR_SYMBOLS = ["<blk>", "|", "A", "C", "T"]


def test_word_confidence_aggregates_the_frames_of_its_tokens_only():
    # frames: _ C C A _ T | | _ A T T _  ->  "CAT AT"
    path = [0, 3, 3, 2, 0, 4, 1, 1, 0, 2, 4, 4, 0]
    conf = [0.0, 0.9, 0.8, 0.7, 0.1, 0.6, 0.05, 0.05, 0.2, 0.5, 0.4, 0.3, 0.0]
    words = word_timings(path, CHAR_SYMBOLS, frame_confidence=conf)
    # CAT: frames 1, 2, 3, 5 (blank frame 4 and the boundary frames 6-7 are not the word's).
    assert words[0].confidence == pytest.approx(0.6)
    assert words[1].confidence == pytest.approx(0.3)
    mean = word_timings(path, CHAR_SYMBOLS, frame_confidence=conf, aggregation="mean")
    assert [w.confidence for w in mean] == pytest.approx([0.75, 0.4])
    assert all(w.confidence is None for w in word_timings(path, CHAR_SYMBOLS))
    with pytest.raises(ValueError, match="frame_confidence has 3 frames"):
        word_timings(path, CHAR_SYMBOLS, frame_confidence=[1.0, 1.0, 1.0])


def test_sentencepiece_word_confidence():
    symbols = ["<blk>", "<unk>", "\u2581THE", "\u2581C", "AT", "\u2581"]
    # ▁THE _ ▁C AT ▁ AT -> "THE CAT AT"
    conf = [0.9, 0.0, 0.8, 0.7, 0.1, 0.6]
    words = word_timings([2, 0, 3, 4, 5, 4], symbols, word_boundary=None, frame_confidence=conf)
    assert [(w.word, w.confidence) for w in words] == [
        ("THE", pytest.approx(0.9)),
        ("CAT", pytest.approx(0.7)),
        ("AT", pytest.approx(0.6)),
    ]
