"""The feature settings of an export (``features.json``): how audio becomes model input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lhotse import Fbank, FbankConfig

__all__ = ["FeatureSettings"]


@dataclass(frozen=True)
class FeatureSettings:
    """How audio becomes model input: rate, and lhotse's Kaldi-compatible fbank settings.

    ``fbank`` is :class:`lhotse.FbankConfig` as a dict, exactly as used in training
    (:func:`dmao.data.features.fbank_extractor`); ``normalisation_buffers`` names the model
    buffers that hold the global mean/variance normalisation (applied inside the model, so the
    features given to the model are raw log-mel fbank).
    """

    sampling_rate: int
    fbank: dict[str, Any]
    normalisation_buffers: tuple[str, ...] = ()

    @property
    def num_features(self) -> int:
        """Feature bins F per frame."""
        return int(self.fbank["num_filters"])

    @property
    def frame_shift_s(self) -> float:
        """Seconds between feature frames."""
        return float(self.fbank["frame_shift"])

    def extractor(self) -> Fbank:
        """The lhotse extractor; ``extract(samples (N,), rate)`` gives ``(T, F)`` float32."""
        return Fbank(FbankConfig.from_dict(dict(self.fbank)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "sampling_rate": self.sampling_rate,
            "extractor": "lhotse.Fbank",
            "fbank": dict(self.fbank),
            "normalisation": {
                "kind": "global mean/variance, inside the model: (x - mean) * inv_std",
                "buffers": list(self.normalisation_buffers),
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> FeatureSettings:
        try:
            fbank = dict(data["fbank"])
            FbankConfig.from_dict(dict(fbank))  # unknown or missing keys fail here
            return cls(
                sampling_rate=int(data["sampling_rate"]),
                fbank=fbank,
                normalisation_buffers=tuple(data.get("normalisation", {}).get("buffers", ())),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"{source}: expected {{'sampling_rate': int, 'fbank': lhotse FbankConfig dict, "
                f"...}}: {err!r}"
            ) from err
