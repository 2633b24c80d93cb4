"""Scoring: corpus-level WER/CER with per-utterance details and result tables."""

from dmao.evaluation.wer import (
    ALIGNERS,
    ErrorCounts,
    ScoreResult,
    UtteranceScore,
    align_words,
    count_errors,
    format_results_table,
    score_corpus,
    write_hypotheses,
)

__all__ = [
    "ALIGNERS",
    "ErrorCounts",
    "ScoreResult",
    "UtteranceScore",
    "align_words",
    "count_errors",
    "format_results_table",
    "score_corpus",
    "write_hypotheses",
]
