"""Word (or token) n-gram language models with interpolated modified Kneser-Ney smoothing, written
in the ARPA format that KenLM (and so flashlight-text's decoder) loads.

Why this is written here: KenLM's estimator ``lmplz`` is a C++ program that no PyPI package
ships (the ``kenlm`` sdist builds the query module only, measured with ``kenlm==0.3.0``), and the
maintained Python n-gram libraries (e.g. NLTK's ``nltk.lm``) do not write ARPA files. The
estimate below is the one ``lmplz`` makes (Heafield et al., 2013, "Scalable Modified Kneser-Ney
Language Model Estimation"; Chen & Goodman, 1998, §3.5), small enough to read in one sitting,
and its tests check that every context's distribution sums to one and that the ``kenlm`` module
scores the file as :class:`ArpaModel` does.

The estimate, for order ``N`` over sentences padded as ``<s> w1 … wk </s>``:

* **Adjusted counts** ``a(g)``: the raw count for ``N``-grams and for n-grams that start with
  ``<s>`` (nothing can precede them); otherwise the number of distinct words seen right before
  ``g`` (the continuation count ``N1+(• g)``).
* **Discounts** per order from the counts-of-adjusted-counts ``t_k``:
  ``Y = t1 / (t1 + 2 t2)``, ``D_k = k − (k + 1) Y t_{k+1} / t_k`` for ``k = 1, 2, 3+``. Where a
  ``t_k`` is zero or a ``D_k`` falls outside ``(0, k)`` (tiny corpora), the order falls back to
  ``D = (0.5, 1.0, 1.5)``, the values of ``lmplz --discount_fallback``.
* **Interpolation**: ``p(w | h) = max(a(hw) − D(a(hw)), 0) / Σ_v a(hv) + γ(h) p(w | h')`` with
  ``γ(h) = (D1 N1(h•) + D2 N2(h•) + D3 N3+(h•)) / Σ_v a(hv)`` and ``h'`` the context without its
  first word; unigrams interpolate with the uniform distribution over the vocabulary (every word
  that can follow something, plus ``</s>`` and ``<unk>``, but not ``<s>``).
* **ARPA**: each listed n-gram carries ``log10 p(w | h)`` (already interpolated) and, when it is
  itself a context, the backoff weight ``log10 γ(hw)``; for an unlisted ``hw`` the reader backs
  off, ``p(w | h) = γ(h) p(w | h')``, which is exactly the interpolated value. ``<s>`` is listed
  with probability ``10^-99`` (never predicted), ``<unk>`` with the uniform share ``γ(ε) / |V|``.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "BOS",
    "EOS",
    "UNK",
    "ArpaModel",
    "NgramCounts",
    "estimate_kneser_ney",
    "read_arpa",
    "write_arpa",
]

log = logging.getLogger(__name__)

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
_SPECIAL = frozenset((BOS, EOS, UNK))
# lmplz --discount_fallback: the discounts used where the counts of counts cannot estimate them.
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)
# log10 probability written for <s>, which is never predicted (the SRILM/KenLM convention).
_LOG10_ZERO = -99.0

Ngram = tuple[str, ...]


@dataclass
class NgramCounts:
    """Raw n-gram counts of padded sentences, orders 1..``order`` (``order >= 2``)."""

    order: int
    counts: list[Counter[Ngram]] = field(default_factory=list)
    """``counts[n - 1][g]``: how often the n-gram ``g`` (a tuple of ``n`` words) occurs."""
    num_sentences: int = 0

    @classmethod
    def from_sentences(cls, sentences: Iterable[Sequence[str]], order: int) -> NgramCounts:
        """Count the n-grams of ``<s> w1 … wk </s>`` for every sentence (list of words).

        Empty sentences are skipped. Words must not contain whitespace nor be ``<s>``, ``</s>``
        or ``<unk>``.
        """
        if order < 2:
            # KenLM (and so flashlight-text) refuses unigram models.
            raise ValueError(
                f"the n-gram order must be >= 2 (KenLM loads no unigram LM), got {order}"
            )
        result = cls(order=order, counts=[Counter() for _ in range(order)])
        for index, words in enumerate(sentences):
            words = list(words)
            if not words:
                continue
            for word in words:
                if word in _SPECIAL or not word or any(ch.isspace() for ch in word):
                    raise ValueError(
                        f"sentence {index}: {word!r} cannot be an LM word (no whitespace, and "
                        f"{sorted(_SPECIAL)} are reserved)"
                    )
            padded = [BOS, *words, EOS]
            for n in range(1, order + 1):
                counter = result.counts[n - 1]
                for start in range(len(padded) - n + 1):
                    counter[tuple(padded[start : start + n])] += 1
            result.num_sentences += 1
        if result.num_sentences == 0:
            raise ValueError("cannot estimate an n-gram LM: no non-empty sentence")
        return result


@dataclass
class ArpaModel:
    """A back-off n-gram model as an ARPA file holds it (log10 values)."""

    order: int
    log10_probs: list[dict[Ngram, float]]
    """``log10_probs[n - 1][g]``: log10 p(g[-1] | g[:-1]) of each listed n-gram."""
    log10_backoffs: list[dict[Ngram, float]]
    """``log10_backoffs[n - 1][g]``: log10 backoff weight of the listed n-gram ``g`` as a context
    (absent means 0, i.e. weight 1)."""
    discounts: list[tuple[float, float, float]] = field(default_factory=list)
    """Modified Kneser-Ney discounts ``(D1, D2, D3+)`` per order (empty when read from a file)."""

    @property
    def vocabulary(self) -> list[str]:
        """All unigrams, ``<s>``, ``</s>`` and ``<unk>`` included, in file order."""
        return [g[0] for g in self.log10_probs[0]]

    def log10_prob(self, word: str, context: Sequence[str]) -> float:
        """``log10 p(word | context)`` by the ARPA back-off rule; unknown words score as ``<unk>``.

        Args:
            word: the predicted word.
            context: the preceding words, oldest first; only the last ``order - 1`` are used.
        """
        unigrams = self.log10_probs[0]
        if (word,) not in unigrams:
            word = UNK
        context = [w if (w,) in unigrams else UNK for w in context]
        context = context[len(context) - min(len(context), self.order - 1) :]
        backoff = 0.0
        while True:
            ngram = (*context, word)
            value = self.log10_probs[len(ngram) - 1].get(ngram)
            if value is not None:
                return backoff + value
            backoff += self.log10_backoffs[len(context) - 1].get(tuple(context), 0.0)
            context = context[1:]

    def log10_sentence(self, words: Sequence[str]) -> float:
        """log10 probability of ``words`` followed by ``</s>``, given ``<s>``."""
        total, history = 0.0, [BOS]
        for word in [*words, EOS]:
            total += self.log10_prob(word, history)
            history.append(word)
        return total


def _discounts(adjusted: Counter[Ngram], n: int) -> tuple[float, float, float]:
    """Modified Kneser-Ney ``(D1, D2, D3+)`` from counts of counts (Chen & Goodman, eq. 26)."""
    t = Counter(count for count in adjusted.values() if count <= 4)  # t[k]: n-grams seen k times
    try:
        y = t[1] / (t[1] + 2 * t[2])
        d = tuple(k - (k + 1) * y * t[k + 1] / t[k] for k in (1, 2, 3))
    except ZeroDivisionError:
        d = ()
    if len(d) != 3 or not all(0.0 < value < k for k, value in zip((1, 2, 3), d, strict=True)):
        log.warning(
            "order %d: counts of counts %s cannot estimate Kneser-Ney discounts (too little "
            "text); using the fallback %s",
            n,
            [t[k] for k in (1, 2, 3, 4)],
            FALLBACK_DISCOUNTS,
        )
        return FALLBACK_DISCOUNTS
    return d  # type: ignore[return-value]


def _adjusted_counts(counts: NgramCounts) -> list[Counter[Ngram]]:
    """Raw counts at the top order and for ``<s>``-initial n-grams, continuation counts else."""
    order = counts.order
    adjusted = [Counter() for _ in range(order)]
    adjusted[order - 1] = Counter(counts.counts[order - 1])
    for n in range(order - 1, 0, -1):
        # Every distinct (n+1)-gram v·g adds one distinct left word to g.
        continuation = Counter(g[1:] for g in counts.counts[n])
        for g, raw in counts.counts[n - 1].items():
            adjusted[n - 1][g] = raw if g[0] == BOS else continuation[g]
        # <s> as a unigram is only ever a context: it has no left neighbour and no count.
        if n == 1:
            del adjusted[0][(BOS,)]
    return adjusted


def estimate_kneser_ney(counts: NgramCounts) -> ArpaModel:
    """Interpolated modified Kneser-Ney estimate of ``counts`` (see the module docstring).

    Returns:
        The model with interpolated log10 probabilities for every n-gram seen in the text and
        back-off weights for every context.
    """
    order = counts.order
    adjusted = _adjusted_counts(counts)
    discounts = [_discounts(adjusted[n - 1], n) for n in range(1, order + 1)]

    # Per context h (order n - 1): total adjusted count and γ numerator.
    probs: list[dict[Ngram, float]] = [{} for _ in range(order)]  # natural probabilities
    gammas: list[dict[Ngram, float]] = [{} for _ in range(order)]  # γ(h) for h of length n-1
    for n in range(1, order + 1):
        d1, d2, d3 = discounts[n - 1]
        totals: dict[Ngram, float] = defaultdict(float)
        discount_mass: dict[Ngram, float] = defaultdict(float)
        for g, a in adjusted[n - 1].items():
            totals[g[:-1]] += a
            discount_mass[g[:-1]] += d1 if a == 1 else d2 if a == 2 else d3
        for h, total in totals.items():
            gammas[n - 1][h] = discount_mass[h] / total
        if n == 1:
            # Uniform over the words that can be predicted, plus <unk>.
            vocab_size = len(adjusted[0]) + ((UNK,) not in adjusted[0])
            lower = {g: 1.0 / vocab_size for g in adjusted[0]}
        for g, a in adjusted[n - 1].items():
            h = g[:-1]
            d = d1 if a == 1 else d2 if a == 2 else d3
            lower_prob = lower[g] if n == 1 else probs[n - 2][g[1:]]
            probs[n - 1][g] = max(a - d, 0.0) / totals[h] + gammas[n - 1][h] * lower_prob

    log10_probs: list[dict[Ngram, float]] = [{} for _ in range(order)]
    log10_backoffs: list[dict[Ngram, float]] = [{} for _ in range(order)]
    unigram_gamma = gammas[0][()]
    log10_probs[0][(BOS,)] = _LOG10_ZERO
    log10_probs[0][(UNK,)] = math.log10(unigram_gamma / vocab_size)
    for n in range(1, order + 1):
        for g in sorted(probs[n - 1]):
            log10_probs[n - 1][g] = math.log10(probs[n - 1][g])
        if n < order:
            for h, gamma in gammas[n].items():  # contexts of the next order
                log10_backoffs[n - 1][h] = math.log10(gamma)
    return ArpaModel(order, log10_probs, log10_backoffs, discounts)


def write_arpa(model: ArpaModel, path: str | Path) -> None:
    """Write ``model`` as an ARPA file (n-grams sorted within each order, 7 significant digits)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\\data\\"]
    lines += [f"ngram {n}={len(model.log10_probs[n - 1])}" for n in range(1, model.order + 1)]
    for n in range(1, model.order + 1):
        lines += ["", f"\\{n}-grams:"]
        backoffs = model.log10_backoffs[n - 1]
        for g, value in model.log10_probs[n - 1].items():
            line = f"{value:.7g}\t{' '.join(g)}"
            if n < model.order and g in backoffs:
                line += f"\t{backoffs[g]:.7g}"
            lines.append(line)
    lines += ["", "\\end\\", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def read_arpa(path: str | Path) -> ArpaModel:
    """Read an ARPA file (ours or any other tool's) into an :class:`ArpaModel`.

    Raises:
        ValueError: naming the file and line where the file does not follow the ARPA format.
    """
    path = Path(path)
    sizes: dict[int, int] = {}
    section = 0  # 0: header/\data\, n: inside \n-grams:
    log10_probs: list[dict[Ngram, float]] = []
    log10_backoffs: list[dict[Ngram, float]] = []
    seen_data = False
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line:
                continue
            where = f"{path}:{number}"
            if line == "\\data\\":
                seen_data = True
            elif line == "\\end\\":
                break
            elif line.startswith("ngram ") and section == 0:
                key, _, value = line[len("ngram ") :].partition("=")
                sizes[int(key)] = int(value)
            elif line.startswith("\\") and line.endswith("-grams:"):
                section = int(line[1 : -len("-grams:")])
                if section != len(log10_probs) + 1 or section not in sizes:
                    raise ValueError(f"{where}: unexpected section {line!r}")
                log10_probs.append({})
                log10_backoffs.append({})
            elif section > 0:
                fields = line.split()
                if len(fields) not in (section + 1, section + 2):
                    raise ValueError(
                        f"{where}: a {section}-gram line needs a log10 probability, {section} "
                        f"words and an optional backoff, got {line!r}"
                    )
                ngram = tuple(fields[1 : section + 1])
                log10_probs[-1][ngram] = float(fields[0])
                if len(fields) == section + 2:
                    log10_backoffs[-1][ngram] = float(fields[-1])
            elif seen_data:
                raise ValueError(f"{where}: unexpected line {line!r} in the \\data\\ header")
    if not seen_data or not log10_probs:
        raise ValueError(f"{path} is not an ARPA file (no \\data\\ header or no n-grams)")
    for n, table in enumerate(log10_probs, start=1):
        if len(table) != sizes[n]:
            raise ValueError(f"{path}: header says ngram {n}={sizes[n]}, found {len(table)}")
    return ArpaModel(len(log10_probs), log10_probs, log10_backoffs)
