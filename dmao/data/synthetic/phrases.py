"""Phrase builders of the synthetic corpus's grammar: noun phrases, times, verb groups, clauses.

:class:`PhraseBuilder` draws the parts a sentence template (``grammar.py``) assembles, each
agreeing in number, person and tense with what it is given. The function words the builders
write literally are listed here, so that the grammar's word set is complete.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from dmao.data.synthetic.vocabulary import Noun, Verb, Vocabulary, load_vocabulary

# Every word the templates below write literally (all other words come from the vocabulary file).
# Kept explicit so that `vocabulary_words()` is the complete set and tests can check it.
_NUMBER_WORDS = (
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
)
_TENS_WORDS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_FUNCTION_WORD_TEXT = """
the a an this that these those some many several every any all my your his her their one other
ones i you he she it we they me him us them
am is are was were be has have had do does did will would can could should might must not
don't doesn't didn't won't can't couldn't shouldn't isn't aren't wasn't weren't hasn't haven't
i'm he's she's i'll you'll he'll they'll let's
in on at to from into under behind beside near inside outside with without for since until than
past before after and but so because while when although if what where why how who which whose
there very quite too really rather home back away now right moment ago today tonight tomorrow
yesterday soon later already just ever never again last next o'clock half quarter noon midnight
hundred time please going doing to much more most cost costs want wants wanted need needs needed try
tries tried like likes
"""
FUNCTION_WORDS: frozenset[str] = frozenset(
    (*_NUMBER_WORDS, *_TENS_WORDS, *_FUNCTION_WORD_TEXT.split())
)


def _indefinite_article(next_word: str) -> str:
    """ "a" or "an" by the sound of the next word (our vocabulary's exceptions only)."""
    if next_word.startswith(("hour", "honest")):
        return "an"
    if next_word.startswith(("uni", "use", "usu", "eu", "one")):
        return "a"
    return "an" if next_word[0] in "aeiou" else "a"


def _number_words(n: int) -> list[str]:
    """Cardinal 1..99 as words: 42 -> ["forty", "two"]."""
    if not 1 <= n <= 99:
        raise ValueError(f"number must be in 1..99, got {n}")
    if n < 20:
        return [_NUMBER_WORDS[n - 1]]
    tens, units = divmod(n, 10)
    return [_TENS_WORDS[tens - 2]] + ([_NUMBER_WORDS[units - 1]] if units else [])


@dataclass
class _Subject:
    words: list[str]
    person: int  # 1, 2 or 3
    plural: bool
    pronoun: str | None = None  # set when the subject is a personal pronoun

    @property
    def third_singular(self) -> bool:
        return self.person == 3 and not self.plural


# Tenses of a finite clause. Time adverbials are chosen to agree with them.
_TENSES = (
    "present",
    "past",
    "progressive",
    "past_progressive",
    "future",
    "going_to",
    "modal",
    "perfect",
)
_TENSE_WEIGHTS = (3, 5, 2, 1, 2, 1, 2, 1)

_SUBJECT_PRONOUNS = (
    ("i", 1, False),
    ("you", 2, False),
    ("he", 3, False),
    ("she", 3, False),
    ("we", 1, True),
    ("they", 3, True),
)
# Contractions whose homophones are not already in the vocabulary ("she'll"/"shell",
# "we'll"/"wheel", "they're"/"there" are left out on purpose).
_BE_CONTRACTION = {"i": "i'm", "he": "he's", "she": "she's"}
_WILL_CONTRACTION = {"i": "i'll", "you": "you'll", "he": "he'll", "they": "they'll"}
# Verbs that take "to" + infinitive in `_want_to`: (form for other subjects, third singular) or
# one form for every subject; "would" becomes "would like".
_WANT_TO_FORMS = (
    ("want", "wants"),
    ("wanted",),
    ("would",),
    ("need", "needs"),
    ("needed",),
    ("tried",),
    ("try", "tries"),
    ("had",),
    ("have", "has"),
    ("like", "likes"),
)
_MODALS = (
    ("can", "can't"),
    ("could", "couldn't"),
    ("should", "shouldn't"),
    ("might", "might not"),
    ("must", "must not"),
    ("would", "would not"),
)


class PhraseBuilder:
    """Draws phrases from a :class:`Vocabulary`; the base of :class:`~.grammar.SentenceGrammar`."""

    def __init__(self, vocabulary: Vocabulary | None = None) -> None:
        self.vocab = vocabulary if vocabulary is not None else load_vocabulary()
        self._names = self.vocab.male_names + self.vocab.female_names

    # ---------------------------------------------------------------- noun phrases

    def _name(self, rng: random.Random) -> list[str]:
        if rng.random() < 0.15:
            return [rng.choice(self.vocab.titles), rng.choice(self.vocab.surnames)]
        return [rng.choice(self._names)]

    def _modifiers(self, rng: random.Random, max_count: int = 2) -> list[str]:
        """Up to ``max_count`` prenominal modifiers in English order: quality, colour, material."""
        slots = []
        if rng.random() < 0.45:
            slots.append(rng.choice(self.vocab.adjectives).base)
        if rng.random() < 0.3:
            slots.append(rng.choice(self.vocab.colours))
        if rng.random() < 0.15:
            slots.append(rng.choice(self.vocab.materials))
        while len(slots) > max_count:
            slots.pop(rng.randrange(len(slots)))
        return slots

    def _determined(
        self,
        rng: random.Random,
        noun: Noun,
        plural: bool,
        modifiers: list[str],
        definite_only: bool = False,
    ) -> list[str]:
        """Determiner + modifiers + noun, with a/an and number agreement."""
        head = noun.plural if plural else noun.singular
        body = [*modifiers, head]
        if definite_only:
            options = ["the"] * 4 + ["this", "that", "my", "your", "his", "her", "their"]
            if plural:
                options = ["the"] * 4 + ["these", "those", "my", "your", "his", "her", "their"]
            return [rng.choice(options), *body]
        r = rng.random()
        if r < 0.1:
            return [rng.choice(self._names), "'s", *body]  # joined to "john's" by _make_sentence
        if plural:
            if r < 0.35:
                count = rng.choice(range(2, 13)) if rng.random() < 0.7 else rng.randrange(13, 100)
                return [*_number_words(count), *body]
            det = rng.choice(
                ["the"] * 4
                + [
                    "these",
                    "those",
                    "some",
                    "many",
                    "several",
                    "my",
                    "your",
                    "his",
                    "her",
                    "their",
                    "all the",
                    "the other",
                ]
            )
            return [*det.split(), *body]
        if r < 0.45:
            return [_indefinite_article(body[0]), *body]
        return [
            rng.choice(
                ["the"] * 4 + ["this", "that", "every", "my", "your", "his", "her", "their", "one"]
            ),
            *body,
        ]

    def _thing(
        self,
        rng: random.Random,
        nouns: Sequence[Noun] | None = None,
        max_modifiers: int = 2,
        definite_only: bool = False,
    ) -> tuple[list[str], bool]:
        """A noun phrase for a thing; returns (words, plural)."""
        nouns = nouns if nouns is not None else self.vocab.objects
        plural = rng.random() < 0.35
        mods = self._modifiers(rng, max_modifiers)
        return self._determined(rng, rng.choice(nouns), plural, mods, definite_only), plural

    def _living(self, rng: random.Random, max_modifiers: int = 1) -> tuple[list[str], bool]:
        """A noun phrase for a person or an animal; returns (words, plural)."""
        r = rng.random()
        if r < 0.35:
            return self._name(rng), False
        if r < 0.45:
            first, second = rng.sample(self._names, 2)
            return [first, "and", second], True
        nouns = self.vocab.persons if rng.random() < 0.65 else self.vocab.animals
        plural = rng.random() < 0.3
        mods = [rng.choice(self.vocab.adjectives).base] if rng.random() < 0.35 else []
        return self._determined(rng, rng.choice(nouns), plural, mods[:max_modifiers]), plural

    def _subject(self, rng: random.Random, pronoun_prob: float = 0.3) -> _Subject:
        if rng.random() < pronoun_prob:
            word, person, plural = rng.choice(_SUBJECT_PRONOUNS)
            return _Subject([word], person, plural, pronoun=word)
        words, plural = self._living(rng)
        return _Subject(words, 3, plural)

    def _person_object(self, rng: random.Random) -> list[str]:
        if rng.random() < 0.2:
            return [rng.choice(["me", "you", "him", "her", "us", "them"])]
        return self._living(rng)[0]

    def _location(self, rng: random.Random) -> list[str]:
        r = rng.random()
        if r < 0.6:
            place = rng.choice(self.vocab.places)
            return [place.preposition, "the", place.noun]
        if r < 0.8:
            prep = rng.choice(["on", "under", "behind", "beside", "near", "inside", "outside"])
            return [prep, *self._thing(rng, max_modifiers=1, definite_only=True)[0]]
        return ["in", rng.choice(self.vocab.cities)]

    def _destination(self, rng: random.Random) -> list[str]:
        r = rng.random()
        if r < 0.55:
            place = rng.choice(self.vocab.places)
            into = place.preposition == "in" and rng.random() < 0.3  # "into the kitchen"
            return ["into" if into else "to", "the", place.noun]
        if r < 0.8:
            return ["to", rng.choice(self.vocab.cities)]
        if r < 0.9:
            return ["from", rng.choice(self.vocab.cities), "to", rng.choice(self.vocab.cities)]
        return rng.choice([["home"], ["back", "home"], ["away"]])

    # ---------------------------------------------------------------- time

    def _clock(self, rng: random.Random) -> list[str]:
        hour = _number_words(rng.randrange(1, 13))
        return rng.choice(
            [
                ["at", *hour, "o'clock"],
                ["at", *hour, "o'clock"],
                ["at", "half", "past", *hour],
                ["at", "a", "quarter", "past", *hour],
                ["at", "a", "quarter", "to", *hour],
                ["at", *hour, rng.choice(["fifteen", "thirty", "forty", "twenty"])],
                ["at", rng.choice(["noon", "midnight"])],
            ]
        )

    def _duration(self, rng: random.Random) -> list[str]:
        n = rng.choice(range(2, 13)) if rng.random() < 0.8 else rng.randrange(13, 60)
        unit = rng.choice(self.vocab.time_units)
        if rng.random() < 0.15:  # "a week", "an hour"
            return [_indefinite_article(unit.singular), unit.singular]
        return [*_number_words(n), unit.plural]

    def _time(self, rng: random.Random, tense: str) -> list[str]:
        """A time adverbial that agrees with ``tense``."""
        v = self.vocab
        day = rng.choice(v.days)
        part = rng.choice(v.day_parts)
        meal = rng.choice(v.meals)
        neutral = [
            ["on", day.singular],
            ["in", rng.choice(v.months)],
            self._clock(rng),
            [rng.choice(["after", "before"]), meal],
            ["in", "the", part],
            ["in", "the", rng.choice(v.seasons)],
        ]
        by_tense = {
            "present": [
                ["every", rng.choice([day.singular, part, "week"])],
                ["on", day.plural],
                ["in", rng.choice(v.seasons)],
            ],
            "past": [
                ["yesterday"],
                ["yesterday", part],
                [
                    "last",
                    rng.choice([day.singular, "week", "night", "year", rng.choice(v.seasons)]),
                ],
                [*self._duration(rng), "ago"],
                ["this", part],
            ],
            "progressive": [
                ["now"],
                ["right", "now"],
                ["at", "the", "moment"],
                ["today"],
                ["this", part],
            ],
            "past_progressive": [
                ["yesterday"],
                ["last", "night"],
                ["all", part],
                ["at", "noon", "yesterday"],
                ["until", rng.choice(["noon", "midnight", "dinner", "lunch"])],
            ],
            "future": [
                ["tomorrow"],
                ["tomorrow", part],
                ["tonight"],
                ["soon"],
                ["later"],
                ["next", rng.choice([day.singular, "week", "year"])],
                ["in", *self._duration(rng)],
                ["again"],
            ],
            "perfect": [
                ["this", rng.choice(["week", "year", part])],
                ["since", day.singular],
                ["since", rng.choice(v.months)],
                ["for", *self._duration(rng)],
                ["today"],
            ],
        }
        by_tense["going_to"] = by_tense["future"]
        by_tense["modal"] = [*by_tense["future"], ["today"], ["now"]]
        options = by_tense[tense]
        if tense not in ("progressive", "past_progressive", "perfect"):
            options = options + neutral
        return rng.choice(options)

    # ---------------------------------------------------------------- verb groups

    def _finite(
        self, rng: random.Random, subject: _Subject, verb: Verb, tense: str, negative: bool
    ) -> list[str]:
        """Subject + auxiliaries + main verb form, e.g. ``she hasn't opened``."""
        pro = subject.pronoun
        s3 = subject.third_singular
        contract = pro is not None and rng.random() < 0.5
        if tense == "present":
            if negative:
                aux = rng.choice(["doesn't", "does not"] if s3 else ["don't", "do not"])
                return [*subject.words, *aux.split(), verb.base]
            freq = [rng.choice(self.vocab.frequencies)] if rng.random() < 0.2 else []
            return [*subject.words, *freq, verb.third if s3 else verb.base]
        if tense == "past":
            if negative:
                return [*subject.words, *rng.choice(["didn't", "did not"]).split(), verb.base]
            return [*subject.words, verb.past]
        if tense in ("progressive", "going_to"):
            tail = [verb.ing] if tense == "progressive" else ["going", "to", verb.base]
            be = "am" if pro == "i" else ("is" if s3 else "are")
            if contract and pro in _BE_CONTRACTION:
                return [_BE_CONTRACTION[pro], *(["not"] if negative else []), *tail]
            if negative:
                neg = ["am", "not"] if be == "am" else [rng.choice([be + "n't", be + " not"])]
                return [*subject.words, *" ".join(neg).split(), *tail]
            return [*subject.words, be, *tail]
        if tense == "past_progressive":
            be = "was" if (s3 or pro == "i") else "were"
            return [*subject.words, *([be + "n't"] if negative else [be]), verb.ing]
        if tense == "future":
            if contract and not negative and pro in _WILL_CONTRACTION:
                return [_WILL_CONTRACTION[pro], verb.base]
            will = rng.choice(["won't", "will not"]) if negative else "will"
            return [*subject.words, *will.split(), verb.base]
        if tense == "modal":
            positive, negated = rng.choice(_MODALS)
            return [*subject.words, *(negated if negative else positive).split(), verb.base]
        if tense == "perfect":
            have = "has" if s3 else "have"
            if negative:
                return [
                    *subject.words,
                    *rng.choice([[have + "n't"], [have, "not"]]),
                    verb.participle,
                ]
            adverb = [rng.choice(["already", "just", "never"])] if rng.random() < 0.3 else []
            return [*subject.words, have, *adverb, verb.participle]
        raise ValueError(f"unknown tense {tense!r}")

    def _tense(self, rng: random.Random) -> str:
        return rng.choices(_TENSES, weights=_TENSE_WEIGHTS)[0]

    def _clause(
        self,
        rng: random.Random,
        tense: str | None = None,
        short: bool = False,
        pronoun_prob: float = 0.3,
    ) -> list[str]:
        """A finite declarative clause; ``short`` drops optional adverbials."""
        tense = tense or self._tense(rng)
        subject = self._subject(rng, pronoun_prob)
        negative = rng.random() < 0.15
        v = self.vocab
        kind = rng.choices(
            ["thing", "food", "person", "intransitive", "motion"], weights=[5, 2, 3, 3, 2]
        )[0]
        optional: list[list[str]] = []
        if kind == "thing":
            verb = rng.choice(v.verbs_thing)
            core = self._thing(rng, max_modifiers=1 if short else 2)[0]
            optional = [self._location(rng), self._time(rng, tense)]
        elif kind == "food":
            verb = rng.choice(v.verbs_food)
            core = self._thing(rng, v.foods, max_modifiers=1)[0]
            optional = [self._location(rng), self._time(rng, tense)]
        elif kind == "person":
            verb = rng.choice(v.verbs_person)
            core = self._person_object(rng)
            optional = [self._location(rng), self._time(rng, tense)]
        elif kind == "intransitive":
            verb = rng.choice(v.verbs_intransitive)
            core = []
            optional = [[rng.choice(v.manners)], self._location(rng), self._time(rng, tense)]
        else:
            verb = rng.choice(v.verbs_motion)
            core = self._destination(rng)
            companion = [rng.choice(["with", "without"]), *self._person_object(rng)]
            optional = [self._time(rng, tense), companion]
        words = [*self._finite(rng, subject, verb, tense, negative), *core]
        keep = 0.25 if short else 0.55
        for extra in optional:
            if rng.random() < keep:
                words += extra
        if not core and len(words) < 3:  # "we laughed" alone is too bare: add one adverbial
            words += optional[rng.randrange(len(optional))]
        return words
