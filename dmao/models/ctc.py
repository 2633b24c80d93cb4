"""What every CTC model here shares: input checks, the output layer, the DMAO module listing.

A model is a frontend + blocks encoder (``model.encoder`` with ``feature_norm``, ``frontend`` and
``blocks``; every block has one attribute per module kind and a ``widths`` property) followed by a
linear CTC output layer. :class:`EncoderCTCModel` gives such a model its ``forward``, its
``architecture`` and its ``adaptable_modules()``; the subclass declares ``MODULE_KINDS`` and its
uniform widths, and :meth:`EncoderCTCModel.build` builds ``encoder`` and ``output`` (in that
order: it fixes the order of parameter initialisation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from torch import Tensor, nn

from dmao.method.dropout import apply_width_scaled_dropout
from dmao.models.architecture import EncoderArchitecture

__all__ = ["EncoderCTCModel"]


class EncoderCTCModel(nn.Module):
    """Base class of the block-encoder CTC models (blank = index 0).

    Subclasses set ``MODULE_KINDS`` and, in their constructor, check their arguments
    (:meth:`check_arguments`), derive their uniform architecture and call :meth:`build`.
    """

    MODULE_KINDS: ClassVar[tuple[str, ...]] = ()
    vocab_size: int
    num_features: int
    d_model: int
    head_dim: int
    dropout: float
    default_architecture: EncoderArchitecture
    dropout_scaling: bool = True
    encoder: nn.Module
    output: nn.Linear

    def check_arguments(self, vocab_size: int, dropout: float) -> None:
        """Reject impossible constructor arguments, naming the model class."""
        name = type(self).__name__
        if vocab_size < 2:
            raise ValueError(f"{name} vocab_size must be >= 2 (blank + 1 label), got {vocab_size}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{name} dropout must be in [0, 1), got {dropout}")

    def resolve_architecture(
        self, default: EncoderArchitecture, architecture: EncoderArchitecture | None
    ) -> EncoderArchitecture:
        """``architecture`` if given (checked against the default's depth and kinds), else
        ``default``."""
        if architecture is None:
            return default
        name = type(self).__name__
        if architecture.kinds != self.MODULE_KINDS:
            raise ValueError(
                f"{name}: architecture has module kinds {list(architecture.kinds)}, this model "
                f"has {list(self.MODULE_KINDS)}; was it made by another model type?"
            )
        if architecture.num_layers != default.num_layers:
            raise ValueError(
                f"{name}: architecture has {architecture.num_layers} layers but "
                f"num_layers={default.num_layers}; pass num_layers={architecture.num_layers}"
            )
        return architecture

    def build(
        self,
        *,
        vocab_size: int,
        num_features: int,
        d_model: int,
        head_dim: int,
        dropout: float,
        default: EncoderArchitecture,
        architecture: EncoderArchitecture | None,
        make_encoder: Callable[[EncoderArchitecture], nn.Module],
        dropout_scaling: bool,
    ) -> None:
        """Set the model's sizes, build ``encoder`` (``make_encoder(architecture)``) and then the
        ``(d, V)`` output layer, in that order (it fixes the order of parameter initialisation),
        and scale the modules' dropout to their widths (:meth:`scale_dropout_to_widths`).

        Args:
            default: the uniform widths this model was sized from: DMAO's budget and dropout
                scaling (METHOD.md §4.7) are relative to them.
            architecture: per-layer widths to build instead (:meth:`resolve_architecture`).
        """
        architecture = self.resolve_architecture(default, architecture)
        self.vocab_size = vocab_size
        self.num_features = num_features
        self.d_model = d_model
        self.head_dim = head_dim
        self.dropout = dropout
        self.default_architecture = default
        self.encoder = make_encoder(architecture)
        self.output = nn.Linear(d_model, vocab_size)
        self.scale_dropout_to_widths(dropout_scaling)

    def scale_dropout_to_widths(self, enabled: bool) -> None:
        """Make per-module dropout a property of the architecture (METHOD.md §4.7): with
        ``enabled``, every adaptable module gets ``min(base · width / default, 0.9)``, the rule
        DMAO applies after an event, so a control built from a DMAO architecture matches the DMAO
        run module by module. Called at the end of the constructor."""
        self.dropout_scaling = enabled
        apply_width_scaled_dropout(self.adaptable_modules())

    def module_dropout(self) -> dict[str, float]:
        """The dropout every adaptable module trains with now, by module path."""
        return {name: float(m.dropout) for name, m in self.adaptable_modules().items()}

    @property
    def architecture(self) -> EncoderArchitecture:
        """The current per-layer widths, read from the modules."""
        return EncoderArchitecture([block.widths for block in self.encoder.blocks])

    def adaptable_modules(self) -> dict[str, nn.Module]:
        """The modules DMAO may resize, by their path in the model (``"encoder.blocks.3.conv"``).

        Each implements :class:`dmao.method.units.AdaptableModule`. Listing them (re)sets their
        ``kind``, ``default_width`` (from :attr:`default_architecture`, so it is right for a model
        rebuilt with a DMAO architecture too) and ``base_dropout``; the order is bottom block first,
        then the block's ``MODULE_KINDS`` in order.
        """
        modules: dict[str, nn.Module] = {}
        for i, (block, default) in enumerate(
            zip(self.encoder.blocks, self.default_architecture.layers, strict=True)
        ):
            for kind in self.MODULE_KINDS:
                module = getattr(block, kind)
                module.kind = kind
                module.default_width = default[kind]
                module.base_dropout = self.dropout
                module.dropout_scaling = self.dropout_scaling
                modules[f"encoder.blocks.{i}.{kind}"] = module
        return modules

    def adaptable_groups(self) -> list:
        """Sub-modules used only while one of a group of adaptable modules is non-empty
        (:class:`dmao.method.plan.SharedSubmodule`); none here, the E-Branchformer has some."""
        return []

    def forward(self, features: Tensor, feature_lens: Tensor) -> tuple[Tensor, Tensor]:
        """
        Args:
            features: ``(B, T, F)`` float features, ``T >= 4``.
            feature_lens: ``(B,)`` int64 valid frames per utterance.

        Returns:
            ``log_probs (B, T', V)`` float32 log-probabilities (blank = 0), ``T' = (T // 2) // 2``,
            and ``out_lens (B,)`` valid output frames per utterance.
        """
        name = type(self).__name__
        if features.dim() != 3 or features.shape[-1] != self.num_features:
            raise ValueError(
                f"{name} expects features (B, T, {self.num_features}), got {tuple(features.shape)}"
            )
        if feature_lens.shape != (features.shape[0],) or feature_lens.is_floating_point():
            raise ValueError(
                f"{name} expects integer feature_lens of shape ({features.shape[0]},), "
                f"got {feature_lens.dtype} {tuple(feature_lens.shape)}"
            )
        if features.shape[1] < 4:
            raise ValueError(
                f"{name} needs at least 4 frames (the frontend subsamples time by 4), "
                f"got T={features.shape[1]}"
            )
        x, out_lens = self.encoder(features, feature_lens)  # (B, T', d)
        # log-softmax in float32: CTC sums many small probabilities.
        log_probs = self.output(x).float().log_softmax(dim=-1)  # (B, T', V)
        return log_probs, out_lens
