"""CTC decoding: greedy best path and prefix beam search (no language model)."""

from dmao.decoding.ctc import beam_search_batch, greedy_decode, prefix_beam_search

__all__ = ["beam_search_batch", "greedy_decode", "prefix_beam_search"]
