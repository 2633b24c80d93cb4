"""The synthetic corpus's word lists: ``vocabulary.txt`` read into typed, checked entries.

Each section of the file (``[animal]``, ``[verb_thing]`` ...) becomes one field of
:class:`Vocabulary`; nouns carry singular and plural, verbs their five forms, adjectives their
comparison. The grammar (``grammar.py``) combines them; this module only reads and checks them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["VOCABULARY_PATH", "Adjective", "Noun", "Place", "Verb", "Vocabulary", "load_vocabulary"]

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
