"""CTC decoding: greedy best path and prefix beam search (``ctc``), n-gram LM beam search
through flashlight-text (``lm_decoder``), word times from frame paths (``timing``), and the
``dmao decode`` driver (``decode_run``)."""

from dmao.decoding.ctc import beam_search_batch, greedy_decode, prefix_beam_search

__all__ = ["beam_search_batch", "greedy_decode", "prefix_beam_search"]
