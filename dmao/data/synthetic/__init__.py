"""The built-in offline synthetic speech corpus: grammar sentences spoken by espeak-ng.

``prepare_synthetic(out_dir)`` writes a LibriSpeech-layout corpus (train/dev/test) that
``lhotse.recipes.prepare_librispeech`` reads; ``synthesize(text)`` speaks one sentence. The sentence
grammar and word lists are our own work under the project's licence (Apache-2.0); see README.md.
"""

from dmao.data.synthetic.corpus import (
    SyntheticPlan,
    SyntheticSpeaker,
    plan_synthetic,
    prepare_synthetic,
)
from dmao.data.synthetic.espeak import synthesize
from dmao.data.synthetic.grammar import Sentence, generate_sentences, vocabulary_words

__all__ = [
    "Sentence",
    "SyntheticPlan",
    "SyntheticSpeaker",
    "generate_sentences",
    "plan_synthetic",
    "prepare_synthetic",
    "synthesize",
    "vocabulary_words",
]
