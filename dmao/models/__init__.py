"""Encoder blocks, CTC models, per-layer architecture and parameter accounting.

Layout: ``architecture`` (per-layer widths) ← ``frontend``, ``feed_forward``, ``convolution``,
``attention``, ``cgmlp`` (one module kind each) ← ``ctc`` (shared CTC model base) ←
``conformer``, ``ebranchformer``, ``transformer`` (block, encoder, CTC model each) ←
``accounting``, ``registry``.
"""

from __future__ import annotations

from dmao.models.accounting import ParameterReport, count_parameters, format_report
from dmao.models.architecture import (
    BLOCK_KINDS,
    MODULE_KINDS,
    EncoderArchitecture,
    LayerWidths,
    register_block_kinds,
)
from dmao.models.attention import MultiHeadSelfAttention
from dmao.models.cgmlp import ConvolutionalGatingMLP
from dmao.models.conformer import ConformerBlock, ConformerCTC, ConformerEncoder
from dmao.models.convolution import ConvolutionModule
from dmao.models.ctc import EncoderCTCModel
from dmao.models.ebranchformer import EBranchformerBlock, EBranchformerCTC, EBranchformerEncoder
from dmao.models.feed_forward import FeedForward
from dmao.models.frontend import VGGFrontend, lengths_to_mask, subsampled_length
from dmao.models.registry import build_model, list_models, model_arguments, register_model
from dmao.models.transformer import TransformerBlock, TransformerCTC, TransformerEncoder

__all__ = [
    "BLOCK_KINDS",
    "MODULE_KINDS",
    "ConformerBlock",
    "ConformerCTC",
    "ConformerEncoder",
    "ConvolutionModule",
    "ConvolutionalGatingMLP",
    "EBranchformerBlock",
    "EBranchformerCTC",
    "EBranchformerEncoder",
    "EncoderArchitecture",
    "EncoderCTCModel",
    "FeedForward",
    "LayerWidths",
    "MultiHeadSelfAttention",
    "ParameterReport",
    "TransformerBlock",
    "TransformerCTC",
    "TransformerEncoder",
    "VGGFrontend",
    "build_model",
    "count_parameters",
    "format_report",
    "lengths_to_mask",
    "list_models",
    "model_arguments",
    "register_block_kinds",
    "register_model",
    "subsampled_length",
]
