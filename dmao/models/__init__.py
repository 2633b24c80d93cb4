"""Encoder blocks, Conformer-CTC, per-layer architecture and parameter accounting.

Layout: ``architecture`` (per-layer widths) ← ``frontend``, ``feed_forward``, ``convolution``,
``attention`` (one module kind each) ← ``conformer`` (block, encoder, CTC model) ← ``accounting``,
``registry``.
"""

from __future__ import annotations

from dmao.models.accounting import ParameterReport, count_parameters, format_report
from dmao.models.architecture import MODULE_KINDS, EncoderArchitecture, LayerWidths
from dmao.models.attention import MultiHeadSelfAttention
from dmao.models.conformer import ConformerBlock, ConformerCTC, ConformerEncoder
from dmao.models.convolution import ConvolutionModule
from dmao.models.feed_forward import FeedForward
from dmao.models.frontend import VGGFrontend, lengths_to_mask, subsampled_length
from dmao.models.registry import build_model, list_models, register_model

__all__ = [
    "MODULE_KINDS",
    "ConformerBlock",
    "ConformerCTC",
    "ConformerEncoder",
    "ConvolutionModule",
    "EncoderArchitecture",
    "FeedForward",
    "LayerWidths",
    "MultiHeadSelfAttention",
    "ParameterReport",
    "VGGFrontend",
    "build_model",
    "count_parameters",
    "format_report",
    "lengths_to_mask",
    "list_models",
    "register_model",
    "subsampled_length",
]
