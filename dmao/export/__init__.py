"""Using a trained model outside its run: a self-contained export folder (safetensors weights,
architecture, tokenizer, feature settings, ONNX graph) and transcription of audio files."""

from dmao.export.artefact import ExportedModel, FeatureSettings, export_run, load_exported
from dmao.export.audio import load_audio
from dmao.export.onnx_export import OnnxAcousticModel, export_onnx
from dmao.export.transcribe import Transcriber, Transcription

__all__ = [
    "ExportedModel",
    "FeatureSettings",
    "OnnxAcousticModel",
    "Transcriber",
    "Transcription",
    "export_onnx",
    "export_run",
    "load_audio",
    "load_exported",
]
