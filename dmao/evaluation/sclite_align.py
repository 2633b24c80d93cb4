"""NIST sclite's word alignment: weighted edit costs and sclite's tie-breaking, in Python.

sclite (SCTK ``src/sclite/word.c``, ``wwd_WORD``) does not minimise the plain edit distance: a
correct word costs 0, an insertion or a deletion 3 and a substitution 4. Its dynamic programme
(``src/sclite/net_dp.c``, ``calculate_internal_cells``) keeps, for every cell, the first of

1. the diagonal step (correct or substitution) when it costs no more than both others,
2. the deletion when it costs strictly less than the insertion,
3. the insertion otherwise,

and traces back from the last cell. Different costs give different alignments on high-error
utterances: ``A B`` → ``C`` is one substitution and one deletion for both, but ``A B C`` →
``D A E`` costs 3 with unit costs either as three substitutions or as an insertion, a
substitution and a deletion, and which one is reported changes the substitution / deletion /
insertion split (and, for some pairs, the total). :func:`sclite_alignment` reproduces sclite's
choice exactly; ``tests/evaluation/test_sclite_align.py`` checks it utterance by utterance against
the ``sclite`` binary of Debian's ``sctk`` package on random high-error pairs.

kaldialign's ``sclite_mode=True`` uses the same costs but breaks ties differently (it takes the
diagonal only when strictly cheaper), so its counts differ from sclite's on some pairs.

Not modelled (dmao's normalised transcripts never contain them): sclite's ``@`` null words,
optionally deletable ``(words)``, fragments (``-F``) and its default case folding (dmao scores
upper-cased text, so case never differs).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

import numpy as np

__all__ = [
    "SCLITE_DEL_COST",
    "SCLITE_INS_COST",
    "SCLITE_SUB_COST",
    "sclite_alignment",
    "sclite_edit_counts",
]

# SCTK src/sclite/word.c, wwd_WORD: "0 -> Correct, 3 -> Deletion or insertion, 4 ->
# Substitution" (costs of the default word-weight function; sclite has no option to change them).
SCLITE_SUB_COST = 4
SCLITE_INS_COST = 3
SCLITE_DEL_COST = 3

Symbol = TypeVar("Symbol", bound=Hashable)

# Back-pointer codes of the DP table.
_DIAG, _DEL, _INS = 0, 1, 2


def _backpointers(ref_ids: np.ndarray, hyp_ids: np.ndarray) -> np.ndarray:
    """sclite's DP over ``ref`` (rows) × ``hyp`` (columns).

    Args:
        ref_ids: ``(N,)`` int symbol ids of the reference.
        hyp_ids: ``(M,)`` int symbol ids of the hypothesis.

    Returns:
        ``(N + 1, M + 1)`` int8 back-pointers (``_DIAG``, ``_DEL``, ``_INS``); row 0 is all
        insertions and column 0 all deletions, as sclite's margin cells.
    """
    n, m = len(ref_ids), len(hyp_ids)
    sub_cost = np.where(ref_ids[:, None] == hyp_ids[None, :], 0, SCLITE_SUB_COST)  # (N, M)
    ins_chain = np.arange(m + 1, dtype=np.int64) * SCLITE_INS_COST  # (M+1,)
    cost = np.empty((n + 1, m + 1), dtype=np.int64)  # cumulative cost of each cell
    cost[0] = ins_chain
    best = np.empty(m + 1, dtype=np.int64)
    for a in range(1, n + 1):
        prev = cost[a - 1]
        best[0] = a * SCLITE_DEL_COST
        np.minimum(prev[:-1] + sub_cost[a - 1], prev[1:] + SCLITE_DEL_COST, out=best[1:])
        # Insertions chain along the row: D[b] = min_k (best[k] + 3 (b - k)), a running minimum.
        best -= ins_chain
        np.minimum.accumulate(best, out=cost[a])
        cost[a] += ins_chain
    # Every cell's choice from its three predecessors (net_dp.c, calculate_internal_cells): the
    # diagonal if sub <= del and sub <= ins; else the deletion if del < ins; else the insertion.
    sub = cost[:-1, :-1] + sub_cost  # (N, M)
    dele = cost[:-1, 1:] + SCLITE_DEL_COST
    ins = cost[1:, :-1] + SCLITE_INS_COST
    back = np.full((n + 1, m + 1), _INS, dtype=np.int8)
    back[1:, 0] = _DEL
    back[1:, 1:] = np.where((sub <= dele) & (sub <= ins), _DIAG, np.where(dele < ins, _DEL, _INS))
    return back


def sclite_alignment(
    ref: Sequence[Symbol], hyp: Sequence[Symbol]
) -> list[tuple[Symbol | None, Symbol | None]]:
    """sclite's alignment of two symbol sequences (words, or characters for ``sclite -c``).

    Args:
        ref: reference symbols (``N``).
        hyp: hypothesis symbols (``M``).

    Returns:
        Pairs ``(ref_symbol, hyp_symbol)`` in order: ``(r, None)`` is a deletion, ``(None, h)``
        an insertion, a pair of different symbols a substitution.
    """
    ref, hyp = list(ref), list(hyp)
    if ref == hyp:
        return list(zip(ref, hyp, strict=True))
    vocab: dict[Hashable, int] = {}
    ref_ids = np.array([vocab.setdefault(s, len(vocab)) for s in ref], dtype=np.int64)
    hyp_ids = np.array([vocab.setdefault(s, len(vocab)) for s in hyp], dtype=np.int64)
    back = _backpointers(ref_ids, hyp_ids).tolist()
    pairs: list[tuple[Symbol | None, Symbol | None]] = []
    a, b = len(ref), len(hyp)
    while a > 0 or b > 0:
        step = back[a][b]
        if step == _DIAG:
            a, b = a - 1, b - 1
            pairs.append((ref[a], hyp[b]))
        elif step == _DEL:
            a -= 1
            pairs.append((ref[a], None))
        else:
            b -= 1
            pairs.append((None, hyp[b]))
    pairs.reverse()
    return pairs


def sclite_edit_counts(ref: Sequence[Symbol], hyp: Sequence[Symbol]) -> tuple[int, int, int]:
    """``(substitutions, deletions, insertions)`` of :func:`sclite_alignment`."""
    subs = dels = ins = 0
    for r, h in sclite_alignment(ref, hyp):
        if r is None:
            ins += 1
        elif h is None:
            dels += 1
        elif r != h:
            subs += 1
    return subs, dels, ins
