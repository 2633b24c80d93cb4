from __future__ import annotations

import json

import pytest
from lhotse import CutSet
from lhotse.utils import fastcopy

from dmao.data.filtering import (
    CTC_INFEASIBLE,
    EMPTY_TRANSCRIPT,
    REASONS,
    TOO_LONG,
    TOO_SHORT,
    UNTOKENIZABLE,
    ctc_min_frames,
    filter_cuts,
)
from dmao.data.manifests import cut_transcript, load_cuts, prepare_manifests


def subsample_by_4(num_frames: int) -> int:
    """The conformer frontend's output length (ARCHITECTURE.md: T' = (T // 2) // 2)."""
    return (num_frames // 2) // 2


@pytest.mark.parametrize(
    ("labels", "frames"),
    [([], 0), ([3], 1), ([1, 2, 3], 3), ([1, 1], 3), ([5, 5, 5], 5), ([1, 2, 2, 1], 5)],
)
def test_ctc_min_frames(labels: list[int], frames: int) -> None:
    assert ctc_min_frames(labels) == frames


def test_train_split_problem_cuts_are_excluded(tiny_corpus, tiny_cuts, tiny_char_tokenizer) -> None:
    assert tiny_corpus.audio_kind == "espeak"  # espeakng-loader is a dependency
    cuts = tiny_cuts["train"]
    kept, report = filter_cuts(cuts, tiny_char_tokenizer, subsampled_length=subsample_by_4)
    excluded = {e.cut_id: e.reason for e in report.excluded}
    assert excluded == {
        tiny_corpus.empty_id: EMPTY_TRANSCRIPT,
        tiny_corpus.infeasible_id: CTC_INFEASIBLE,
    }
    assert list(kept.ids) == [cid for cid in cuts.ids if cid not in excluded]
    assert report.num_input == len(cuts)
    assert report.num_kept == len(cuts) - 2
    assert report.kept_duration_s == pytest.approx(sum(c.duration for c in kept))
    assert report.counts == {
        EMPTY_TRANSCRIPT: 1,
        UNTOKENIZABLE: 0,
        TOO_SHORT: 0,
        TOO_LONG: 0,
        CTC_INFEASIBLE: 1,
    }
    infeasible = next(e for e in report.excluded if e.reason == CTC_INFEASIBLE)
    num_labels = len(tiny_char_tokenizer.encode(cut_transcript(cuts[tiny_corpus.infeasible_id])))
    # 0.5 s = 50 frames -> 12 after 4x subsampling, for a 54-character transcript.
    assert infeasible.detail.startswith(f"12 output frames (50 input) < {num_labels} labels")


def test_dev_split_unknown_characters_are_excluded(
    tiny_corpus, tiny_cuts, tiny_char_tokenizer
) -> None:
    kept, report = filter_cuts(
        tiny_cuts["dev"], tiny_char_tokenizer, subsampled_length=subsample_by_4
    )
    assert [(e.cut_id, e.reason) for e in report.excluded] == [
        (tiny_corpus.unknown_char_id, UNTOKENIZABLE)
    ]
    assert tiny_corpus.unknown_char_id not in set(kept.ids)
    assert all(tiny_char_tokenizer.can_encode(cut_transcript(c)) for c in kept)


def test_ctc_feasibility_boundary_counts_repeats(tiny_cuts, tiny_char_tokenizer) -> None:
    # A real cut whose transcript has doubled letters ("TREES", "HILLS", "GREEN", ...).
    cut = next(
        c
        for c in tiny_cuts["train"]
        if (ids := tiny_char_tokenizer.encode(cut_transcript(c))) and ctc_min_frames(ids) > len(ids)
    )
    labels = tiny_char_tokenizer.encode(cut_transcript(cut))
    needed = ctc_min_frames(labels)
    one = CutSet.from_cuts([cut])
    for available, kept_count in [(needed, 1), (needed - 1, 0), (len(labels), 0)]:
        kept, report = filter_cuts(
            one, tiny_char_tokenizer, subsampled_length=lambda _n, a=available: a
        )
        assert len(kept) == kept_count, available
        assert report.counts[CTC_INFEASIBLE] == 1 - kept_count


def test_duration_bounds(tiny_cuts, tiny_char_tokenizer) -> None:
    cuts = tiny_cuts["test"]
    durations = sorted(c.duration for c in cuts)
    low, high = durations[1], durations[-2]
    kept, report = filter_cuts(
        cuts,
        tiny_char_tokenizer,
        subsampled_length=subsample_by_4,
        min_duration_s=low,
        max_duration_s=high,
    )
    assert all(low <= c.duration <= high for c in kept)
    assert report.counts[TOO_SHORT] == sum(d < low for d in durations)
    assert report.counts[TOO_LONG] == sum(d > high for d in durations)
    assert report.num_kept + len(report.excluded) == len(cuts)


def test_cuts_without_features_use_duration_and_frame_shift(
    tiny_corpus, tiny_cuts, tiny_char_tokenizer, tmp_path
) -> None:
    featureless = prepare_manifests(tiny_corpus.root, tmp_path, ["train"], compute_features=False)[
        "train"
    ]
    assert not any(c.has_features for c in featureless)
    _, with_feats = filter_cuts(
        tiny_cuts["train"], tiny_char_tokenizer, subsampled_length=subsample_by_4
    )
    _, without = filter_cuts(featureless, tiny_char_tokenizer, subsampled_length=subsample_by_4)
    assert without.excluded == with_feats.excluded


def test_lazy_cuts_are_filtered_lazily(tiny_corpus, tiny_char_tokenizer, tmp_path) -> None:
    prepare_manifests(tiny_corpus.root, tmp_path, ["train"], compute_features=False)
    lazy = load_cuts(tmp_path, "train", lazy=True)
    kept, report = filter_cuts(lazy, tiny_char_tokenizer, subsampled_length=subsample_by_4)
    assert kept.is_lazy
    assert len(list(kept.ids)) == report.num_kept == report.num_input - 2


def test_report_summary_and_json(tiny_corpus, tiny_cuts, tiny_char_tokenizer) -> None:
    empty_twice = CutSet.from_cuts(
        [
            *tiny_cuts["train"],
            fastcopy(
                tiny_cuts["train"][tiny_corpus.empty_id],
                id="extra-empty",
                supervisions=[
                    fastcopy(
                        tiny_cuts["train"][tiny_corpus.empty_id].supervisions[0],
                        text="",
                        custom=None,
                    )
                ],
            ),
        ]
    )
    _, report = filter_cuts(empty_twice, tiny_char_tokenizer, subsampled_length=subsample_by_4)

    summary = report.summary(max_per_reason=1)
    assert summary.startswith(f"kept {report.num_kept}/{report.num_input} cuts")
    assert f"empty_transcript: 2 — {tiny_corpus.empty_id}: transcript '... !'" in summary
    assert "(+1 more)" in summary
    assert f"ctc_infeasible: 1 — {tiny_corpus.infeasible_id}" in summary
    assert UNTOKENIZABLE not in summary

    examples = report.examples(max_per_reason=1)
    assert set(examples) == {EMPTY_TRANSCRIPT, CTC_INFEASIBLE}
    assert len(examples[EMPTY_TRANSCRIPT]) == 1

    data = json.loads(report.to_json())
    assert data["num_input"] == report.num_input == len(tiny_cuts["train"]) + 1
    assert list(data["counts"]) == list(REASONS)
    assert {e["cut_id"] for e in data["excluded"]} == {
        tiny_corpus.empty_id,
        "extra-empty",
        tiny_corpus.infeasible_id,
    }
    assert all({"cut_id", "reason", "detail", "duration_s"} == set(e) for e in data["excluded"])


def test_fallback_corpus_without_espeak_has_the_same_problem_cuts(
    tiny_corpus_tones, tiny_char_tokenizer, tmp_path
) -> None:
    assert tiny_corpus_tones.audio_kind == "tones"
    cuts = prepare_manifests(tiny_corpus_tones.root, tmp_path, ["train", "dev"], num_jobs=1)
    _, train = filter_cuts(cuts["train"], tiny_char_tokenizer, subsampled_length=subsample_by_4)
    _, dev = filter_cuts(cuts["dev"], tiny_char_tokenizer, subsampled_length=subsample_by_4)
    assert {(e.cut_id, e.reason) for e in train.excluded + dev.excluded} == {
        (tiny_corpus_tones.empty_id, EMPTY_TRANSCRIPT),
        (tiny_corpus_tones.infeasible_id, CTC_INFEASIBLE),
        (tiny_corpus_tones.unknown_char_id, UNTOKENIZABLE),
    }


def test_a_split_that_filtering_empties_stops_the_run_saying_why(tiny_corpus, tmp_path):
    """Not an obscure failure later (it was "cannot compute feature statistics")."""
    from conftest import tiny_train_overrides

    from dmao.config import load_config
    from dmao.training.data_setup import prepare_data
    from dmao.training.distributed import DistributedContext

    overrides = [*tiny_train_overrides(tiny_corpus.root, tmp_path / "m"), "data.max_duration_s=0.2"]
    with pytest.raises(ValueError) as err:
        prepare_data(
            load_config(None, overrides), tmp_path / "run", DistributedContext.from_env("cpu")
        )
    message = str(err.value)
    assert message.startswith("train: all ") and "utterances were filtered out (" in message
    assert "too_long, e.g. " in message and "> max_duration_s=0.2" in message
    assert (
        "check data.train_parts=['train'] and data.min_duration_s / data.max_duration_s" in message
    )
