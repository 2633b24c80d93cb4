"""Controlled-vocabulary sentence grammar for the synthetic corpus.

The grammar and its word lists (``vocabulary.txt`` next to this file) are original work written for
dmao and released under the project's licence, Apache-2.0; nothing is copied from an existing
corpus or word list.

Why our own grammar: the synthetic corpus is a benchmark in which word error rate should track
acoustic modelling, not language modelling. A closed vocabulary of about 1,400 words, spread over
many categories and combined by templates, keeps every sentence grammatical while leaving each
content word hard to predict from its neighbours ("the wooden ladder" is as likely as "the silk
ladder"). Sentences are 4-16 words long and come out in two forms: the LibriSpeech-style
transcript (upper case, apostrophes, no other punctuation) and a lower-case spoken form with
commas and a final ``.`` or ``?`` that only steer espeak-ng's prosody.

The sentence templates are here; the phrases they assemble (noun phrases, times, verb groups,
clauses) come from ``phrases.py`` and the word lists from ``vocabulary.py``.

Everything random draws from the ``random.Random`` passed in, so a seed fixes the sentence stream.
The stream is prefix-stable: asking for more sentences never changes the first ones.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache

from dmao.data.synthetic.phrases import (
    _WANT_TO_FORMS,
    FUNCTION_WORDS,
    PhraseBuilder,
    _indefinite_article,
    _number_words,
)
from dmao.data.synthetic.vocabulary import (
    Adjective,
    Noun,
    Place,
    Verb,
    Vocabulary,
    load_vocabulary,
)

__all__ = [
    "FUNCTION_WORDS",
    "MAX_WORDS",
    "MIN_WORDS",
    "Adjective",
    "Noun",
    "Place",
    "Sentence",
    "SentenceGrammar",
    "Verb",
    "Vocabulary",
    "generate_sentences",
    "iter_sentences",
    "load_vocabulary",
    "vocabulary_words",
]

MIN_WORDS = 4
MAX_WORDS = 16


@dataclass(frozen=True)
class Sentence:
    """One generated sentence.

    ``transcript`` is what the corpus stores (``THE OLD MAN OPENED A DOOR``); ``spoken`` is what
    espeak-ng reads (``the old man opened a door.``), with commas and a final ``.``/``?`` that only
    shape the intonation.
    """

    transcript: str
    spoken: str

    @property
    def num_words(self) -> int:
        return len(self.transcript.split())


class SentenceGrammar(PhraseBuilder):
    """Template grammar over a :class:`Vocabulary`.

    ``sample(rng)`` draws one sentence of ``min_words..max_words`` words. Templates cover
    statements in eight tenses (with negation and contractions), questions, imperatives,
    existentials, comparisons, reported speech, subordinate and coordinated clauses, timetables,
    prices and distances.
    """

    def __init__(
        self,
        vocabulary: Vocabulary | None = None,
        min_words: int = MIN_WORDS,
        max_words: int = MAX_WORDS,
    ) -> None:
        if not 1 <= min_words <= max_words:
            raise ValueError(f"need 1 <= min_words <= max_words, got {min_words}, {max_words}")
        super().__init__(vocabulary)
        self.min_words = min_words
        self.max_words = max_words
        self._templates: list[tuple[int, Callable[[random.Random], tuple[list[str], str]]]] = [
            (10, self._statement),
            (2, self._give),
            (2, self._existential),
            (3, self._copula),
            (2, self._comparison),
            (3, self._yes_no_question),
            (3, self._wh_question),
            (2, self._imperative),
            (3, self._coordination),
            (3, self._subordination),
            (2, self._reported),
            (2, self._schedule),
            (2, self._measure),
            (2, self._want_to),
            (1, self._relation),
        ]

    def words(self) -> frozenset[str]:
        """Every word this grammar can emit, in transcript form (upper case)."""
        possessives = {f"{name}'s" for name in self._names}
        return frozenset(w.upper() for w in self.vocab.words() | FUNCTION_WORDS | possessives)

    def sample(self, rng: random.Random) -> Sentence:
        """Draw one sentence whose length is within the word bounds (rejection sampling)."""
        weights = [w for w, _ in self._templates]
        for _ in range(1000):
            (template,) = rng.choices([t for _, t in self._templates], weights=weights)
            sentence = _make_sentence(*template(rng))
            if self.min_words <= sentence.num_words <= self.max_words:
                return sentence
        raise RuntimeError(
            f"no sentence of {self.min_words}..{self.max_words} words in 1000 "
            "tries; are the bounds too tight?"
        )

    # ---------------------------------------------------------------- templates

    def _statement(self, rng: random.Random) -> tuple[list[str], str]:
        return self._clause(rng), "."

    def _give(self, rng: random.Random) -> tuple[list[str], str]:
        tense = self._tense(rng)
        subject = self._subject(rng)
        verb = rng.choice(self.vocab.verbs_give)
        head = self._finite(rng, subject, verb, tense, negative=rng.random() < 0.1)
        thing = self._thing(rng, max_modifiers=1)[0]
        recipient = self._person_object(rng)
        words = head + (recipient + thing if rng.random() < 0.5 else [*thing, "to", *recipient])
        if rng.random() < 0.4:
            words += self._time(rng, tense)
        return words, "."

    def _existential(self, rng: random.Random) -> tuple[list[str], str]:
        v = self.vocab
        nouns = rng.choice([v.objects, v.objects, v.foods, v.animals, v.persons])
        noun = rng.choice(nouns)
        plural = rng.random() < 0.6
        mods = self._modifiers(rng, 1)
        past = rng.random() < 0.5
        if plural:
            count = rng.choice(
                [_number_words(rng.randrange(2, 13)), ["some"], ["many"], ["several"]]
            )
            be = ["were" if past else "are"]
            if rng.random() < 0.15:
                be, count = [("weren't" if past else "aren't")], ["any"]
            body = [*count, *mods, noun.plural]
        else:
            be = ["was" if past else "is"]
            body = [*mods, noun.singular]
            body = [_indefinite_article(body[0]), *body]
        words = ["there", *be, *body, *self._location(rng)]
        if rng.random() < 0.3:
            words += self._time(rng, "past" if past else "progressive")
        return words, "."

    def _degree(self, rng: random.Random) -> list[str]:
        return (
            [rng.choice(["very", "quite", "too", "really", "rather", "so"])]
            if (rng.random() < 0.5)
            else []
        )

    def _copula(self, rng: random.Random) -> tuple[list[str], str]:
        if rng.random() < 0.5:
            np_words, plural = self._thing(rng, max_modifiers=1, definite_only=True)
        else:
            np_words, plural = self._living(rng)
        if rng.random() < 0.3:
            np_words = np_words + self._location(rng)
        tense = rng.choice(["present", "past", "future"])
        be = {
            "present": "are" if plural else "is",
            "past": "were" if plural else "was",
            "future": "will",
        }[tense]
        negative = rng.random() < 0.15
        verb = [be, *(["not"] if negative else []), *(["be"] if tense == "future" else [])]
        adjective = rng.choice(self.vocab.adjectives).base
        words = [*np_words, *verb, *self._degree(rng), adjective]
        if rng.random() < 0.3:
            words += self._time(rng, tense)
        return words, "."

    def _comparison(self, rng: random.Random) -> tuple[list[str], str]:
        adjective = rng.choice(self.vocab.adjectives)
        noun = rng.choice(rng.choice([self.vocab.objects, self.vocab.animals, self.vocab.foods]))
        if rng.random() < 0.6:
            plural = rng.random() < 0.3
            be = rng.choice(["are", "were"] if plural else ["is", "was"])
            a = self._determined(rng, noun, plural, [rng.choice(self.vocab.colours)], True)
            b_mod = [rng.choice(self.vocab.colours)]
            b = ["the", *b_mod, "ones" if plural else "one"]
            if rng.random() < 0.5:  # compare with another noun: "than the old boxes"
                b = self._determined(rng, rng.choice(self.vocab.objects), plural, [], True)
            comparative = (
                [adjective.comparative] if adjective.comparative else ["more", adjective.base]
            )
            return [*a, be, *comparative, "than", *b], "."
        superlative = [adjective.superlative] if adjective.superlative else ["most", adjective.base]
        opener = rng.choice(
            [["this", "is"], ["that", "was"], ["it", "is"], [*self._name(rng), "has"]]
        )
        return [*opener, "the", *superlative, noun.singular, *self._location(rng)], "."

    def _yes_no_question(self, rng: random.Random) -> tuple[list[str], str]:
        subject = self._subject(rng, pronoun_prob=0.4)
        s3 = subject.third_singular
        verb = rng.choice(self.vocab.verbs_thing)
        thing = self._thing(rng, max_modifiers=1)[0]
        r = rng.random()
        if r < 0.25:
            words = ["did", *subject.words, verb.base, *thing]
        elif r < 0.4:
            words = ["does" if s3 else "do", *subject.words, verb.base, *thing]
        elif r < 0.55:
            aux = rng.choice(["will", "can", "could", "should"])
            words = [aux, *subject.words, verb.base, *thing]
        elif r < 0.7:
            be = "am" if subject.pronoun == "i" else ("is" if s3 else "are")
            words = [be, *subject.words, verb.ing, *thing]
        elif r < 0.8:
            words = ["has" if s3 else "have", *subject.words, "ever", verb.participle, *thing]
        elif r < 0.9:
            np_words, plural = self._thing(rng, max_modifiers=1, definite_only=True)
            adjective = rng.choice(self.vocab.adjectives).base
            words = ["are" if plural else "is", *np_words, *self._degree(rng), adjective]
            return words, "?"
        else:
            noun = rng.choice(self.vocab.objects + self.vocab.animals)
            words = ["are", "there", "any", noun.plural, *self._location(rng)]
            return words, "?"
        if rng.random() < 0.4:
            words += self._location(rng)
        return words, "?"

    def _wh_question(self, rng: random.Random) -> tuple[list[str], str]:
        v = self.vocab
        subject = self._subject(rng, pronoun_prob=0.4)
        s3 = subject.third_singular
        be = "am" if subject.pronoun == "i" else ("is" if s3 else "are")
        verb = rng.choice(v.verbs_thing)
        thing = self._thing(rng, max_modifiers=1, definite_only=True)[0]
        r = rng.randrange(10)
        if r == 0:
            words = ["where", "did", *subject.words, verb.base, *thing]
        elif r == 1:
            words = ["what", be, *subject.words, "doing", *self._location(rng)]
        elif r == 2:
            adjective = rng.choice(v.adjectives).base
            words = ["why", be, *subject.words, "so", adjective]
        elif r == 3:
            noun = rng.choice(v.objects + v.foods)
            words = ["how", "many", noun.plural, "did", *subject.words, verb.base]
        elif r == 4:
            words = ["who", verb.past, *thing, *self._time(rng, "past")]
        elif r == 5:
            timed = rng.choice(v.vehicles + v.events).singular
            sched = rng.choice(v.verbs_schedule)
            words = ["when", "does", "the", timed, sched.base]
        elif r == 6:
            noun = rng.choice(v.objects)
            words = ["which", noun.singular, "did", *subject.words, rng.choice(v.verbs_thing).base]
        elif r == 7:
            noun = rng.choice(v.objects)
            words = ["whose", noun.singular, "is", rng.choice(["this", "that"])]
        elif r == 8:
            thing = self._determined(
                rng, rng.choice(v.objects), False, self._modifiers(rng, 1), definite_only=True
            )
            words = ["how", "much", "does", *thing, "cost"]
        else:
            sched = rng.choice(v.verbs_schedule)
            words = ["what", "time", "does", "the", rng.choice(v.events).singular, sched.base]
        return words, "?"

    def _imperative(self, rng: random.Random) -> tuple[list[str], str]:
        v = self.vocab
        r = rng.random()
        if r < 0.2:
            return ["let's", "go", *self._destination(rng), *self._time(rng, "future")], "."
        verb = rng.choice(v.verbs_thing + v.verbs_food)
        nouns = v.foods if verb in v.verbs_food else v.objects
        words = [verb.base, *self._thing(rng, nouns, max_modifiers=2, definite_only=True)[0]]
        if r < 0.4:
            words = ["don't", *words]
        elif r < 0.7:
            words = ["please", *words]
        if rng.random() < 0.5:
            words += self._location(rng)
        elif rng.random() < 0.5:
            words += [rng.choice(v.manners)]
        return words, "."

    def _coordination(self, rng: random.Random) -> tuple[list[str], str]:
        tense = self._tense(rng)
        first = self._clause(rng, tense, short=True)
        second = self._clause(rng, tense if rng.random() < 0.7 else None, short=True)
        return [*first, ",", rng.choice(["and", "but", "so"]), *second], "."

    def _subordination(self, rng: random.Random) -> tuple[list[str], str]:
        conj = rng.choice(["when", "because", "after", "before", "while", "although", "if"])
        if conj == "if":
            sub = self._clause(rng, "present", short=True)
            main = self._clause(rng, rng.choice(["future", "modal"]), short=True)
        elif conj == "while":
            sub = self._clause(rng, "past_progressive", short=True)
            main = self._clause(rng, "past", short=True)
        else:
            tense = rng.choice(["past", "past", "present"])
            sub = self._clause(rng, tense, short=True)
            main = self._clause(rng, tense, short=True)
        if rng.random() < 0.5:
            return [conj, *sub, ",", *main], "."
        return [*main, conj, *sub], "."

    def _reported(self, rng: random.Random) -> tuple[list[str], str]:
        verb = rng.choice(self.vocab.verbs_say)
        subject = self._subject(rng, pronoun_prob=0.5)
        tense = rng.choice(["past", "past", "present", "past_progressive", "perfect"])
        head = self._finite(rng, subject, verb, tense, negative=False)
        inner = self._clause(rng, rng.choice(["past", "past_progressive", "perfect"]), short=True)
        that = ["that"] if rng.random() < 0.6 else []
        return [*head, *that, *inner], "."

    def _schedule(self, rng: random.Random) -> tuple[list[str], str]:
        v = self.vocab
        verb = rng.choice(v.verbs_schedule)
        plural = rng.random() < 0.3
        if rng.random() < 0.5:
            noun = rng.choice(v.vehicles)
            what = ["the", noun.plural if plural else noun.singular, "to", rng.choice(v.cities)]
        else:
            noun = rng.choice(v.events)
            what = ["the", *self._modifiers(rng, 1)[:1], noun.plural if plural else noun.singular]
        tense = rng.choice(["present", "past", "future", "progressive", "perfect"])
        if tense == "perfect":  # "the lesson has already started"
            have = "have" if plural else "has"
            return [*what, have, rng.choice(["already", "just"]), verb.participle], "."
        form = {
            "present": [verb.base if plural else verb.third],
            "past": [verb.past],
            "future": ["will", verb.base],
            "progressive": ["are" if plural else "is", verb.ing],
        }[tense]
        words = [*what, *form, *self._clock(rng)]
        if rng.random() < 0.5:
            words += ["on", rng.choice(v.days).singular]
        return words, "."

    def _measure(self, rng: random.Random) -> tuple[list[str], str]:
        v = self.vocab
        r = rng.random()
        if r < 0.4:
            thing, plural = self._thing(rng, max_modifiers=1, definite_only=True)
            verb = rng.choice(["cost", "will cost"] if plural else ["costs", "cost", "will cost"])
            return [*thing, *verb.split(), *self._amount(rng, v.money_units)], "."
        if r < 0.7:
            a, b = rng.sample(v.cities, 2)
            return [a, "is", *self._amount(rng, v.distance_units), "from", b], "."
        subject = self._subject(rng)
        verb = rng.choice(v.verbs_intransitive)
        head = self._finite(rng, subject, verb, "past", negative=False)
        words = [*head, "for", *self._duration(rng)]
        if rng.random() < 0.4:
            words += self._location(rng)
        return words, "."

    def _amount(self, rng: random.Random, units: Sequence[Noun]) -> list[str]:
        """ "a mile", "forty two dollars", "three hundred euros"."""
        unit = rng.choice(units)
        r = rng.random()
        if r < 0.1:
            return [_indefinite_article(unit.singular), unit.singular]
        if r < 0.2:
            return [
                *rng.choice([["a"], *(_number_words(n) for n in range(2, 10))]),
                "hundred",
                unit.plural,
            ]
        return [*_number_words(rng.randrange(2, 100)), unit.plural]

    def _want_to(self, rng: random.Random) -> tuple[list[str], str]:
        v = self.vocab
        subject = self._subject(rng, pronoun_prob=0.4)
        s3 = subject.third_singular
        lead = rng.choice(_WANT_TO_FORMS)
        lead = [lead[1] if s3 and len(lead) == 2 else lead[0]]
        if lead == ["would"]:
            lead = ["would", "like"]
        verb = rng.choice(v.verbs_thing + v.verbs_food)
        nouns = v.foods if verb in v.verbs_food else v.objects
        words = [
            *subject.words,
            *lead,
            "to",
            verb.base,
            *self._thing(rng, nouns, max_modifiers=1)[0],
        ]
        if rng.random() < 0.4:
            past = lead[0] in ("wanted", "needed", "tried", "had")
            words += self._time(rng, "past" if past else "future")
        return words, "."

    def _relation(self, rng: random.Random) -> tuple[list[str], str]:
        v = self.vocab
        relative = rng.choice(v.persons)
        owner = rng.choice(["my", "your", "his", "her", "their"])
        if rng.random() < 0.5:
            return [*self._name(rng), rng.choice(["is", "was"]), owner, relative.singular], "."
        subject = self._subject(rng)
        has = "has" if subject.third_singular else "have"
        count = rng.randrange(2, 10)
        noun = rng.choice(v.animals + v.objects)
        return [
            *subject.words,
            rng.choice([has, "had"]),
            *_number_words(count),
            *self._modifiers(rng, 1),
            noun.plural,
        ], "."


def _make_sentence(words: list[str], end: str) -> Sentence:
    """Join tokens: "'s" attaches to the previous word; "," only shapes the spoken form."""
    tokens: list[str] = []
    for word in words:
        if word == "'s" and tokens:
            tokens[-1] += "'s"
        elif word:
            tokens.append(word)
    spoken_tokens: list[str] = []
    for token in tokens:
        if token == ",":
            if spoken_tokens and not spoken_tokens[-1].endswith(","):
                spoken_tokens[-1] += ","
        else:
            spoken_tokens.append(token)
    transcript = " ".join(t for t in spoken_tokens).replace(",", "").upper()
    return Sentence(transcript=transcript, spoken=" ".join(spoken_tokens) + end)


@cache
def _default_grammar() -> SentenceGrammar:
    return SentenceGrammar()


def vocabulary_words() -> frozenset[str]:
    """All upper-case words the default grammar can write in a transcript."""
    return _default_grammar().words()


def iter_sentences(seed: int, grammar: SentenceGrammar | None = None) -> Iterator[Sentence]:
    """The endless stream of distinct sentences (by transcript) fixed by ``seed``."""
    grammar = grammar if grammar is not None else _default_grammar()
    rng = random.Random(f"dmao-synthetic-sentences-{seed}")
    seen: set[str] = set()
    repeats = 0
    while True:
        sentence = grammar.sample(rng)
        if sentence.transcript in seen:
            repeats += 1
            if repeats > 10_000:  # consecutive repeats: the sentence space is used up
                raise RuntimeError(
                    f"the grammar yields no new sentence after {len(seen)}; it is too small"
                )
            continue
        repeats = 0
        seen.add(sentence.transcript)
        yield sentence


def generate_sentences(
    num_sentences: int,
    seed: int,
    grammar: SentenceGrammar | None = None,
) -> list[Sentence]:
    """The first ``num_sentences`` distinct sentences of the stream fixed by ``seed``.

    Sentences are distinct by transcript. The stream is prefix-stable: the first ``k`` sentences
    are the same for every ``num_sentences >= k``.
    """
    if num_sentences < 0:
        raise ValueError(f"num_sentences must be >= 0, got {num_sentences}")
    return list(itertools.islice(iter_sentences(seed, grammar), num_sentences))
