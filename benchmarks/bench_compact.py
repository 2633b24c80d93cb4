"""Inference speed of a non-uniform (DMAO) architecture against the uniform one it came from.

    python benchmarks/bench_compact.py [--run exp/ablate/dmao/seed0] [--rounds 10 --threads 1]

DMAO keeps the parameter count, not the shape: layers end up with unequal FFN, convolution and
attention widths. This measures what that does to inference (eval mode, no grad, 15 s
utterances, batch 1 and batch 8), interleaved with the uniform model of the same recipe, and
reports parameters and multiply-accumulates (MACs, from torch's FLOP counter with SDPA on its math
backend so attention is counted; FLOPs / 2) next to the time ratio.

Pairs:
- ``dmao-run``: the architecture in ``RUN/checkpoints/best.pt`` (a finished DMAO run of the small
  recipe, d = 144 × 8), built with ``build_model_from_config(config, vocab, architecture=...)``,
  against the same config with uniform widths. Skipped if the run folder is missing.
- ``skewed-256``: a synthetic DMAO-like shape at the paper's d = 256 × 12 (frontend 32/64/64/32,
  kernel 31): every convolution module doubled (256 → 512 channels) and, to pay for it, the FFNs
  of the upper six blocks shrunk until the parameter count matches the uniform model's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _timing import format_summary, interleaved, thread_note
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from dmao.config.loading import config_from_dict
from dmao.models import ConformerCTC, EncoderArchitecture, LayerWidths
from dmao.training.checkpoint import load_checkpoint
from dmao.training.model_setup import build_model_from_config

FRAMES_15S = 1500  # 15 s of 10 ms feature frames


def dmao_run_pair(run: Path) -> tuple[nn.Module, nn.Module]:
    """(uniform, DMAO) models of a finished DMAO run, from its best checkpoint."""
    state = load_checkpoint(run / "checkpoints" / "best.pt")
    config = config_from_dict(state["config"], source=str(run))
    vocab = state["model"]["output.weight"].shape[0]
    architecture = EncoderArchitecture.from_dict(state["architecture"])
    torch.manual_seed(0)
    uniform = build_model_from_config(config.model, vocab)
    dmao = build_model_from_config(config.model, vocab, architecture=architecture)
    dmao.load_state_dict(state["model"])  # the trained weights (irrelevant to speed, but real)
    return uniform, dmao


def skewed_pair(d_model: int = 256, num_layers: int = 12) -> tuple[nn.Module, nn.Module]:
    """(uniform, skewed) d = 256 × 12 models with (nearly) equal parameter counts."""
    kwargs = dict(vocab_size=80, d_model=d_model, num_layers=num_layers, conv_kernel_size=31)
    uniform = ConformerCTC(**kwargs)
    base = uniform.default_architecture.layers[0]
    kernel = 31
    conv_unit = 2 * (d_model + 1) + (kernel + 1) + 2 + d_model  # ConvolutionModule.params_per_unit
    ffn_unit = 2 * d_model + 1  # FeedForward.params_per_unit
    extra = num_layers * base.conv * conv_unit  # doubling every conv module
    upper = num_layers // 2
    shrink = round(extra / (ffn_unit * 2 * upper))  # FFN units removed per upper FFN module
    layers = [
        LayerWidths(
            base.ff1 - (shrink if i >= upper else 0),
            2 * base.conv,
            base.mhsa,
            base.ff2 - (shrink if i >= upper else 0),
        )
        for i in range(num_layers)
    ]
    skewed = ConformerCTC(**kwargs, architecture=EncoderArchitecture(layers))
    return uniform, skewed


def macs(model: nn.Module, features: torch.Tensor, lens: torch.Tensor) -> int:
    """Multiply-accumulates of one forward (FLOP counter / 2; attention via the math SDPA)."""
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        model(features, lens)
    return fc.get_total_flops() // 2


def _inference(model: nn.Module, features: torch.Tensor, lens: torch.Tensor):
    def run() -> None:
        with torch.no_grad():
            model(features, lens)

    return run


def describe(model: nn.Module) -> str:
    arch = model.architecture
    return " | ".join(
        f"{k}: " + ",".join(str(w) for w in arch.widths(k)) for k in ("ff1", "conv", "mhsa", "ff2")
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("exp/ablate/dmao/seed0"))
    parser.add_argument("--pairs", nargs="+", default=["dmao-run", "skewed-256"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    print(thread_note())
    for pair in args.pairs:
        if pair == "dmao-run":
            if not (args.run / "checkpoints" / "best.pt").is_file():
                print(f"\n== dmao-run: {args.run}/checkpoints/best.pt not found, skipped")
                continue
            uniform, other = dmao_run_pair(args.run)
            label = f"DMAO ({args.run})"
        elif pair == "skewed-256":
            uniform, other = skewed_pair()
            label = "skewed (conv x2, upper FFNs shrunk)"
        else:
            raise SystemExit(f"--pairs: unknown pair {pair!r}; known: dmao-run, skewed-256")
        uniform.eval()
        other.eval()
        num_features = uniform.num_features
        p_u = sum(p.numel() for p in uniform.parameters())
        p_o = sum(p.numel() for p in other.parameters())
        print(f"\n== {pair}: uniform {p_u:,} parameters, {label} {p_o:,} ({p_o / p_u - 1:+.2%})")
        print(f"  uniform: {describe(uniform)}")
        print(f"  other:   {describe(other)}")
        for B in args.batches:
            torch.manual_seed(0)
            features = torch.randn(B, FRAMES_15S, num_features)
            lens = torch.full((B,), FRAMES_15S)
            m_u, m_o = macs(uniform, features, lens), macs(other, features, lens)
            fe = macs(uniform.encoder.frontend, features, lens)
            print(
                f"  batch {B} x 15 s: MACs uniform {m_u / 1e9:.2f} G, other {m_o / 1e9:.2f} G "
                f"(ratio {m_o / m_u:.3f}; frontend {fe / 1e9:.2f} G of each)"
            )

            times = interleaved(
                {
                    "uniform": _inference(uniform, features, lens),
                    "non-uniform": _inference(other, features, lens),
                },
                args.rounds,
                verbose=False,
            )
            print(format_summary(times, "uniform"))


if __name__ == "__main__":
    main()
