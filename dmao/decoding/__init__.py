"""CTC decoding: greedy best path and prefix beam search (``ctc``), n-gram LM beam search
through flashlight-text (``lm_decoder``, with its lexicons in ``lexicon``), word times from frame
paths (``timing``) and their confidences (``confidence``), the CTC prior (``prior``), loading a
trained run for decoding (``run_loading``), the ``dmao decode`` driver (``decode_run``) and the
dev-split grid of ``dmao tune`` (``tune``)."""

from dmao.decoding.ctc import beam_search_batch, greedy_decode, prefix_beam_search

__all__ = ["beam_search_batch", "greedy_decode", "prefix_beam_search"]
