"""CTC beam search with an n-gram language model, through flashlight-text's decoders and KenLM.

Two modes (``pip install flashlight-text``; the LM is an ARPA or KenLM binary file):

* **Lexicon** (:class:`flashlight.lib.text.decoder.LexiconDecoder`): hypotheses are sequences of
  words from a lexicon; each word is spelled in tokens (its characters followed by the word
  boundary ``|`` for character models, its sentencepiece pieces for BPE). The LM is a *word*
  n-gram, scored whenever a spelling completes, with a look-ahead (the best unigram score below
  each trie node, "smearing") so that partial words are pruned fairly. ``word_score`` is added per
  word (a word insertion bonus, negative for a penalty). Words outside the lexicon are impossible
  unless ``unk_score`` is finite.
* **Lexicon-free** (:class:`flashlight.lib.text.decoder.LexiconFreeDecoder`): hypotheses are
  token sequences and the LM is a *token* n-gram whose words are the token symbols (``|`` for the
  word boundary of character models, the ``▁``-pieces of BPE), built with ``dmao lm build
  --unit token``. It can spell words never seen in the LM text.

For character models the word boundary ``|`` is also flashlight's "silence" token. The model is
trained on ``A|CAT`` with no boundary after the last word, while a lexicon spelling ends in ``|``:
the lexicon decoder is given one extra frame at the end in which ``|`` has probability one, so
the last word can complete (its acoustic score is ``log 1 = 0``, so scores are unchanged).

Scores follow flashlight: ``acoustic log-prob + lm_weight · LM log10-prob(KenLM) + word_score ·
#words + sil_score · #boundary frames``. With ``lm_weight = 0``, ``word_score = sil_score = 0`` and
a wide beam, the result is the most probable CTC path (best path, i.e. greedy decoding) among the
paths the lexicon allows, so it equals greedy decoding when the greedy words are in the lexicon.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dmao.data.tokenizer import Tokenizer
from dmao.decoding.lexicon import read_lexicon, token_symbols, word_boundary_symbol
from dmao.evaluation.nbest import distinct_texts

__all__ = [
    "LM_OPTION_FIELDS",
    "MAX_LM_ORDER",
    "CTCLMDecoder",
    "LMDecoderOptions",
    "LMHypothesis",
    "arpa_order",
    "arpa_unigrams",
    # re-exported from dmao.decoding.lexicon, where they live
    "token_symbols",
    "word_boundary_symbol",
]

log = logging.getLogger(__name__)

UNK_WORD = "<unk>"
# Log-probability of every token but the word boundary in the appended end frame (see module
# docstring): effectively zero probability, but finite, so flashlight's float arithmetic stays
# clear of inf - inf.
_IMPOSSIBLE = -1.0e4


def _flashlight():
    """flashlight-text's decoder and dictionary modules, with an install hint when missing."""
    try:
        from flashlight.lib.text import decoder, dictionary
        from flashlight.lib.text.decoder.kenlm import KenLM
    except ImportError as e:  # pragma: no cover - the dependency is declared in pyproject.toml
        raise ImportError(
            "LM decoding needs flashlight-text (`pip install flashlight-text`)"
        ) from e
    return decoder, dictionary, KenLM


def _load_kenlm(kenlm_class: type, lm_path: Path, dictionary: object) -> object:
    """``KenLM(lm_path, dictionary)``, with what KenLM prints while loading an ARPA file (a hint
    to build a binary and a progress bar, on file descriptor 2) in the debug log instead of on
    the console, where ``dmao transcribe`` and ``dmao decode`` keep stderr for errors."""
    with _native_stderr_to_debug_log(f"KenLM loading {lm_path}"):
        return kenlm_class(str(lm_path), dictionary)


@contextlib.contextmanager
def _native_stderr_to_debug_log(what: str) -> Iterator[None]:
    """File descriptor 2 — where C++ code writes, past Python's ``sys.stderr`` — goes to a
    temporary file while the block runs; its text is then logged at debug level. Without a
    usable descriptor 2 (a closed stderr), the block runs as it is."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    sys.stderr.flush()
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", errors="replace").strip()
            if text:
                log.debug("%s printed:\n%s", what, text)


def arpa_unigrams(path: str | Path) -> set[str] | None:
    """The unigram words of an ARPA file (read up to its 2-gram section), or ``None`` when the
    file is not ARPA text (e.g. a KenLM binary)."""
    with open(path, "rb") as f:
        if b"\\data\\" not in f.read(4096):
            return None
    words: set[str] = set()
    in_unigrams = False
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.strip()
            if line == "\\1-grams:":
                in_unigrams = True
            elif in_unigrams and line.startswith("\\"):
                break
            elif in_unigrams and line:
                fields = line.split()
                if len(fields) >= 2:
                    words.add(fields[1])
    return words


# flashlight-text's wheels build KenLM with KENLM_MAX_ORDER=6 (measured: an 8-gram fails to load
# with "KenLM was compiled to support up to 6").
MAX_LM_ORDER = 6


def arpa_order(path: str | Path) -> int | None:
    """The order of an ARPA file (its highest ``ngram N=`` header line), ``None`` if not ARPA."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if b"\\data\\" not in head:
        return None
    orders = [int(m) for m in re.findall(rb"^ngram (\d+)=", head, flags=re.MULTILINE)]
    return max(orders) if orders else None


def _check_lm_vocabulary(lm_path: Path, words: Iterable[str], lexicon: bool) -> None:
    """Fail early on an ARPA LM of the wrong kind, which KenLM would silently score as all
    ``<unk>``: with a lexicon, the LM must know most lexicon ``words``; without one, most of the
    LM's words must be token symbols (``words``)."""
    order = arpa_order(lm_path)
    if order is not None and order > MAX_LM_ORDER:
        raise ValueError(
            f"{lm_path} is a {order}-gram LM, but flashlight-text's KenLM loads orders up to "
            f"{MAX_LM_ORDER}; build it with dmao lm build --order {MAX_LM_ORDER} or less"
        )
    vocabulary = arpa_unigrams(lm_path)
    if vocabulary is None:
        return
    words = set(words)
    if lexicon:
        covered = len(words & vocabulary) / max(len(words), 1)
        what = "of the lexicon words are LM words"
    else:
        lm_words = vocabulary - {"<s>", "</s>", "<unk>"}
        covered = len(lm_words & words) / max(len(lm_words), 1)
        what = "of the LM's words are token symbols of the model"
    if covered < 0.5:
        raise ValueError(
            f"{lm_path}: only {100 * covered:.0f} % {what}; with a lexicon the LM must be a word "
            "LM (dmao lm build --unit word), without one a token LM over the model's symbols "
            "(dmao lm build --unit token)"
        )


LM_OPTION_FIELDS = (
    "lm_weight",
    "word_score",
    "sil_score",
    "beam_size",
    "beam_size_token",
    "beam_threshold",
)
"""The search settings that are also ``DecodeConfig`` fields (what a decode's ``result.json``
and an export's manifest record)."""


@dataclass(frozen=True)
class LMDecoderOptions:
    """Search settings (the fields of the same names in :class:`dmao.config.DecodeConfig`)."""

    lm_weight: float = 0.5
    """Weight of the LM's log10 score added to the acoustic natural-log score."""
    word_score: float = 0.0
    """Added per emitted word (lexicon mode only); negative values penalise insertions."""
    sil_score: float = 0.0
    """Added per frame in which the word boundary (flashlight's silence) is emitted."""
    unk_score: float = -math.inf
    """Score of spelling a word outside the lexicon (lexicon mode); ``-inf`` forbids it."""
    beam_size: int = 50
    """Hypotheses kept per frame."""
    beam_size_token: int | None = None
    """Tokens tried per frame and hypothesis (the most probable ones); ``None`` = all."""
    beam_threshold: float = 25.0
    """Hypotheses scoring more than this below the frame's best are pruned."""
    log_add: bool = False
    """Merge hypotheses that reach the same state by log-add instead of max."""


@dataclass(frozen=True)
class LMHypothesis:
    """The best hypothesis of one utterance."""

    text: str
    """The words, space-separated."""
    frame_tokens: list[int]
    """``(T,)`` token id emitted per frame of the search path (blanks included)."""
    score: float
    """Total search score (acoustic + weighted LM + word/silence scores)."""
    lm_score: float
    """The LM's log10 score of the hypothesis (unweighted)."""


class CTCLMDecoder:
    """Beam search over CTC log-probabilities with a KenLM n-gram LM, with or without a lexicon.

    Args:
        symbols: token symbol per output id (``token_symbols(tokenizer)``); the LM's words
            (lexicon-free) or the lexicon's spelling tokens (lexicon mode) use these names.
        blank_id: the CTC blank.
        lm_path: ARPA or KenLM binary file: a word LM with a lexicon, a token LM without.
        lexicon: ``{word: [spelling]}`` (see :func:`build_lexicon`), or ``None`` for lexicon-free.
        word_boundary: the boundary symbol (``|``) of character models, ``None`` for BPE (then
            the blank stands in for flashlight's silence token, which never changes a score with
            ``sil_score = 0``).
        options: search settings.
    """

    def __init__(
        self,
        symbols: Sequence[str],
        blank_id: int,
        lm_path: str | Path,
        lexicon: Mapping[str, Sequence[Sequence[str]]] | None = None,
        word_boundary: str | None = "|",
        options: LMDecoderOptions | None = None,
    ) -> None:
        decoder, dictionary, KenLM = _flashlight()
        self.options = options or LMDecoderOptions()
        self.symbols = list(symbols)
        self.blank_id = blank_id
        self.word_boundary = word_boundary
        lm_path = Path(lm_path)
        if not lm_path.is_file():
            raise FileNotFoundError(f"LM file {lm_path} does not exist (build one: dmao lm build)")
        if word_boundary is not None and word_boundary not in self.symbols:
            raise ValueError(f"word boundary {word_boundary!r} is not one of the token symbols")
        self._token_dict = dictionary.Dictionary()
        for symbol in self.symbols:
            self._token_dict.add_entry(symbol)
        self._sil_id = self.symbols.index(word_boundary) if word_boundary else blank_id
        self.lexicon = (
            None if lexicon is None else {w: [list(s) for s in sp] for w, sp in lexicon.items()}
        )
        self._trie = None
        if self.lexicon is None:
            non_blank = [t for i, t in enumerate(self.symbols) if i != blank_id]
            _check_lm_vocabulary(lm_path, non_blank, lexicon=False)
            self._lm = _load_kenlm(KenLM, lm_path, self._token_dict)
        else:
            _check_lm_vocabulary(lm_path, self.lexicon, lexicon=True)
            self._word_dict = dictionary.Dictionary()
            for word in self.lexicon:
                self._word_dict.add_entry(word)
            if UNK_WORD not in self.lexicon:
                self._word_dict.add_entry(UNK_WORD)
            self._lm = _load_kenlm(KenLM, lm_path, self._word_dict)
            self._trie = self._lexicon_trie(decoder)
        self._decoder = self._search(self.options)

    def _lexicon_trie(self, decoder: Any) -> Any:
        """The lexicon's spellings as flashlight's trie, smeared with the words' unigram scores."""
        trie = decoder.Trie(len(self.symbols), self._sil_id)
        start = self._lm.start(False)
        token_id = {symbol: i for i, symbol in enumerate(self.symbols)}
        for word, spellings in self.lexicon.items():
            word_id = self._word_dict.get_index(word)
            _, unigram = self._lm.score(start, word_id)
            for spelling in spellings:
                unknown = [t for t in spelling if t not in token_id]
                if unknown:
                    raise ValueError(
                        f"lexicon word {word!r} is spelled with {unknown}, which are not token "
                        f"symbols of the model ({self.symbols[:8]}...)"
                    )
                trie.insert([token_id[t] for t in spelling], word_id, unigram)
        trie.smear(decoder.SmearingMode.MAX)
        return trie

    def _search(self, opt: LMDecoderOptions) -> Any:
        """Flashlight's decoder with the search settings ``opt`` over the loaded LM (and trie)."""
        decoder, _, _ = _flashlight()
        common = dict(
            beam_size=opt.beam_size,
            beam_size_token=opt.beam_size_token or len(self.symbols),
            beam_threshold=opt.beam_threshold,
            lm_weight=opt.lm_weight,
            sil_score=opt.sil_score,
            log_add=opt.log_add,
            criterion_type=decoder.CriterionType.CTC,
        )
        if self._trie is None:
            return decoder.LexiconFreeDecoder(
                decoder.LexiconFreeDecoderOptions(**common),
                self._lm,
                self._sil_id,
                self.blank_id,
                [],
            )
        return decoder.LexiconDecoder(
            decoder.LexiconDecoderOptions(
                **common, word_score=opt.word_score, unk_score=opt.unk_score
            ),
            self._trie,
            self._lm,
            self._sil_id,
            self.blank_id,
            self._word_dict.get_index(UNK_WORD),
            [],
            False,
        )

    def with_options(self, options: LMDecoderOptions) -> CTCLMDecoder:
        """The same LM, lexicon and tokens searched with other settings (e.g. another
        ``lm_weight``), without loading the LM again: for grids of settings (``dmao tune``)."""
        other = copy.copy(self)
        other.options = options
        other._decoder = self._search(options)
        return other

    @classmethod
    def from_tokenizer(
        cls,
        tokenizer: Tokenizer,
        lm_path: str | Path,
        lexicon_path: str | Path | None = None,
        options: LMDecoderOptions | None = None,
    ) -> CTCLMDecoder:
        """A decoder for a model with ``tokenizer``; lexicon mode when ``lexicon_path`` is set."""
        lexicon = read_lexicon(lexicon_path) if lexicon_path is not None else None
        return cls(
            token_symbols(tokenizer),
            tokenizer.blank_id,
            lm_path,
            lexicon=lexicon,
            word_boundary=word_boundary_symbol(tokenizer),
            options=options,
        )

    def decode(self, log_probs: torch.Tensor) -> LMHypothesis:
        """Decode one utterance.

        Args:
            log_probs: ``(T, V)`` CTC log-probabilities, already cut to the utterance's length.

        Returns:
            The best hypothesis (for ``T = 0``, the empty one).
        """
        return self.decode_nbest(log_probs, 1)[0]

    def decode_nbest(self, log_probs: torch.Tensor, n: int) -> list[LMHypothesis]:
        """The ``n`` best hypotheses of one utterance with different texts, best first (fewer
        when the beam ends with fewer): the search's final hypotheses in its order, a text seen
        before (another path to the same words) left out.

        Args:
            log_probs: ``(T, V)`` CTC log-probabilities, already cut to the utterance's length.
            n: how many, at least 1.
        """
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        if log_probs.dim() != 2 or log_probs.shape[1] != len(self.symbols):
            raise ValueError(
                f"log_probs must be (T, V={len(self.symbols)}), got {tuple(log_probs.shape)}"
            )
        T = log_probs.shape[0]
        if T == 0:
            return [LMHypothesis("", [], 0.0, 0.0)]
        emissions = log_probs.detach().to("cpu", torch.float32)
        lexicon_boundary = self.lexicon is not None and self.word_boundary is not None
        if lexicon_boundary:
            end = emissions.new_full((1, emissions.shape[1]), _IMPOSSIBLE)
            end[0, self._sil_id] = 0.0
            emissions = torch.cat([emissions, end])
        emissions = emissions.contiguous()
        results = self._decoder.decode(emissions.data_ptr(), emissions.shape[0], emissions.shape[1])
        if not results:
            raise RuntimeError(
                "the LM beam search kept no hypothesis (is beam_threshold too small, or are the "
                "acoustic evidence and the lexicon incompatible with unk_score=-inf?)"
            )
        return distinct_texts(
            (self._hypothesis(result, T) for result in results), lambda h: h.text, n
        )

    def _hypothesis(self, result: Any, T: int) -> LMHypothesis:
        """One of flashlight's final hypotheses of a ``T``-frame utterance."""
        # tokens[0] is the start state and tokens[-1] the end state; frames lie in between.
        frame_tokens = list(result.tokens)[1 : T + 1]
        if self.lexicon is not None:
            text = " ".join(self._word_dict.get_entry(w) for w in result.words if w >= 0)
        else:
            text = self._tokens_to_text(frame_tokens)
        return LMHypothesis(text, frame_tokens, float(result.score), float(result.lmScore))

    def _tokens_to_text(self, frame_tokens: Sequence[int]) -> str:
        """Collapse a CTC frame path to words (repeats merged, blanks dropped)."""
        pieces, previous = [], None
        for token in frame_tokens:
            if token != previous and token != self.blank_id:
                pieces.append(self.symbols[token])
            previous = token
        if self.word_boundary is not None:
            return " ".join("".join(pieces).replace(self.word_boundary, " ").split())
        return " ".join("".join(pieces).replace("\u2581", " ").split())

    def decode_batch(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[LMHypothesis]:
        """Decode a batch: ``log_probs`` ``(B, T, V)``, ``lengths`` ``(B,)`` valid frames."""
        if log_probs.dim() != 3 or lengths.shape != (log_probs.shape[0],):
            raise ValueError(
                f"expected log_probs (B, T, V) and lengths (B,), got {tuple(log_probs.shape)} "
                f"and {tuple(lengths.shape)}"
            )
        log_probs = log_probs.detach().cpu()
        return [self.decode(log_probs[b, : int(n)]) for b, n in enumerate(lengths.tolist())]
