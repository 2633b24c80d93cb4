"""Using a trained model outside its run: a self-contained export folder (safetensors weights,
architecture, tokenizer, feature settings, ONNX graph and its optional int8 copy, an optional
n-gram LM and CTC prior) and transcription of audio files."""

from dmao.export.artefact import ExportedModel, FeatureSettings, export_run, load_exported
from dmao.export.audio import RawFormat, load_audio
from dmao.export.inputs import AudioInput, expand_inputs
from dmao.export.language_model import LanguageModel
from dmao.export.onnx_export import OnnxAcousticModel, export_onnx
from dmao.export.quantize import quantize_onnx
from dmao.export.transcribe import Failure, Transcriber, Transcription

__all__ = [
    "AudioInput",
    "ExportedModel",
    "Failure",
    "FeatureSettings",
    "LanguageModel",
    "OnnxAcousticModel",
    "RawFormat",
    "Transcriber",
    "Transcription",
    "expand_inputs",
    "export_onnx",
    "export_run",
    "load_audio",
    "load_exported",
    "quantize_onnx",
]
