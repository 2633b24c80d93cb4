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

Everything random draws from the ``random.Random`` passed in, so a seed fixes the sentence stream.
The stream is prefix-stable: asking for more sentences never changes the first ones.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

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
VOCABULARY_PATH = Path(__file__).with_name("vocabulary.txt")

_WORD_RE = re.compile(r"^[a-z]+('[a-z]+)?$")


@dataclass(frozen=True)
class Noun:
    singular: str
    plural: str


@dataclass(frozen=True)
class Verb:
    base: str
    third: str  # third person singular present: "opens"
    past: str
    participle: str
    ing: str


@dataclass(frozen=True)
class Adjective:
    base: str
    comparative: str | None  # None: compared with "more"
    superlative: str | None


@dataclass(frozen=True)
class Place:
    preposition: str  # where something is: "in" the kitchen, "at" the station, "on" the farm
    noun: str


@dataclass(frozen=True)
class Vocabulary:
    """The content words of the grammar, by category (see ``vocabulary.txt``)."""

    male_names: tuple[str, ...]
    female_names: tuple[str, ...]
    surnames: tuple[str, ...]
    titles: tuple[str, ...]
    persons: tuple[Noun, ...]
    animals: tuple[Noun, ...]
    objects: tuple[Noun, ...]
    foods: tuple[Noun, ...]
    vehicles: tuple[Noun, ...]
    events: tuple[Noun, ...]
    places: tuple[Place, ...]
    cities: tuple[str, ...]
    verbs_thing: tuple[Verb, ...]
    verbs_food: tuple[Verb, ...]
    verbs_person: tuple[Verb, ...]
    verbs_intransitive: tuple[Verb, ...]
    verbs_motion: tuple[Verb, ...]
    verbs_give: tuple[Verb, ...]
    verbs_say: tuple[Verb, ...]
    verbs_schedule: tuple[Verb, ...]
    adjectives: tuple[Adjective, ...]
    colours: tuple[str, ...]
    materials: tuple[str, ...]
    manners: tuple[str, ...]
    frequencies: tuple[str, ...]
    days: tuple[Noun, ...]
    months: tuple[str, ...]
    day_parts: tuple[str, ...]
    seasons: tuple[str, ...]
    meals: tuple[str, ...]
    time_units: tuple[Noun, ...]
    distance_units: tuple[Noun, ...]
    money_units: tuple[Noun, ...]

    def words(self) -> frozenset[str]:
        """Every lower-case word form listed in the vocabulary file."""
        out: set[str] = set()
        for value in self.__dict__.values():
            for entry in value:
                if isinstance(entry, str):
                    out.add(entry)
                else:
                    out.update(w for w in entry.__dict__.values() if w is not None)
        return frozenset(out)


def _noun(forms: list[str]) -> Noun:
    return Noun(*forms)


def _verb(forms: list[str]) -> Verb:
    return Verb(*forms)


def _adjective(forms: list[str]) -> Adjective:
    return Adjective(*forms)


def _plain_adjective(forms: list[str]) -> Adjective:
    return Adjective(forms[0], None, None)


def _place(forms: list[str]) -> Place:
    if forms[0] not in ("in", "at", "on"):
        raise ValueError(f"place preposition must be in/at/on, found {forms[0]!r}")
    return Place(*forms)


def _word(forms: list[str]) -> str:
    return forms[0]


# section -> (Vocabulary field, number of forms per entry, constructor). Sections with one form
# may list several entries on a line.
_SECTIONS: dict[str, tuple[str, int, Callable[[list[str]], object]]] = {
    "male_name": ("male_names", 1, _word),
    "female_name": ("female_names", 1, _word),
    "surname": ("surnames", 1, _word),
    "title": ("titles", 1, _word),
    "person": ("persons", 2, _noun),
    "animal": ("animals", 2, _noun),
    "object": ("objects", 2, _noun),
    "food": ("foods", 2, _noun),
    "vehicle": ("vehicles", 2, _noun),
    "event": ("events", 2, _noun),
    "place": ("places", 2, _place),
    "city": ("cities", 1, _word),
    "verb_thing": ("verbs_thing", 5, _verb),
    "verb_food": ("verbs_food", 5, _verb),
    "verb_person": ("verbs_person", 5, _verb),
    "verb_intransitive": ("verbs_intransitive", 5, _verb),
    "verb_motion": ("verbs_motion", 5, _verb),
    "verb_give": ("verbs_give", 5, _verb),
    "verb_say": ("verbs_say", 5, _verb),
    "verb_schedule": ("verbs_schedule", 5, _verb),
    "adjective": ("adjectives", 3, _adjective),
    "adjective_plain": ("adjectives", 1, _plain_adjective),
    "colour": ("colours", 1, _word),
    "material": ("materials", 1, _word),
    "manner": ("manners", 1, _word),
    "frequency": ("frequencies", 1, _word),
    "day": ("days", 2, _noun),
    "month": ("months", 1, _word),
    "day_part": ("day_parts", 1, _word),
    "season": ("seasons", 1, _word),
    "meal": ("meals", 1, _word),
    "unit_time": ("time_units", 2, _noun),
    "unit_distance": ("distance_units", 2, _noun),
    "unit_money": ("money_units", 2, _noun),
}


def load_vocabulary(path: Path | str | None = None) -> Vocabulary:
    """Read and check a vocabulary file (default: the shipped ``vocabulary.txt``).

    Raises ``ValueError`` naming the file and line for an unknown section, an entry with the wrong
    number of forms, or a word that is not lower-case letters with an optional apostrophe.
    """
    path = Path(path) if path is not None else VOCABULARY_PATH
    fields: dict[str, list[object]] = {field: [] for field, _, _ in _SECTIONS.values()}
    section: str | None = None
    for line_no, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{line_no}"
        if line.startswith("["):
            section = line.strip("[]")
            if section not in _SECTIONS:
                raise ValueError(
                    f"{where}: unknown section [{section}]; expected one of {sorted(_SECTIONS)}"
                )
            continue
        if section is None:
            raise ValueError(f"{where}: entry before the first [section] header")
        tokens = line.split()
        for token in tokens:
            if not _WORD_RE.match(token):
                raise ValueError(
                    f"{where}: {token!r} is not a lower-case word "
                    "(letters and at most one inner apostrophe)"
                )
        field, num_forms, make = _SECTIONS[section]
        if num_forms == 1:
            fields[field].extend(make([t]) for t in tokens)
        elif len(tokens) != num_forms:
            raise ValueError(
                f"{where}: [{section}] entries have {num_forms} forms, "
                f"found {len(tokens)}: {line!r}"
            )
        else:
            fields[field].append(make(tokens))
    empty = [field for field, entries in fields.items() if not entries]
    if empty:
        raise ValueError(f"{path}: no entries for {empty}")
    return Vocabulary(**{field: tuple(entries) for field, entries in fields.items()})


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


class SentenceGrammar:
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
        self.vocab = vocabulary if vocabulary is not None else load_vocabulary()
        self.min_words = min_words
        self.max_words = max_words
        v = self.vocab
        self._names = v.male_names + v.female_names
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
