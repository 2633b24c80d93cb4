"""Training-step speed of our Conformer blocks against torchaudio's Conformer, in one process.

    benchmarks/.venv-ref/bin/python benchmarks/bench_vs_torchaudio.py [--sizes 256x12 144x8]
        [--batch 8 --frames 375 --rounds 8 --threads 1] [--profile]

torchaudio does not install with this project's torch (2.13), so this runs in the separate
environment ``benchmarks/.venv-ref`` (torch 2.9.1 + torchaudio 2.9.1, this repository installed
with ``pip install -e . --no-deps``; see docs/performance.md). Both systems run under that same
torch. Without torchaudio (e.g. in ``.venv``) it times ours alone.

What is compared: the ENCODER BLOCKS only. Ours is a stack of
:class:`dmao.models.conformer.ConformerBlock` (no VGG frontend, no output layer); torchaudio's is
``torchaudio.models.Conformer`` with the same d_model, ffn_dim = 4d, num_heads, depthwise kernel,
num_layers and dropout, and ``convolution_first=True`` (our block order: FF1 → Conv → MHSA → FF2 →
LayerNorm). Both get the same random input ``(B, T, d)`` with the same lengths (the longest
utterance ``--frames`` long, the shortest ~2/3 of it: a duration-bucketed batch), the same loss
(a fixed random projection of the valid output frames) and one AdamW step (same settings, the
default implementation). With ``--torch-dropout`` ours also runs with ``F.dropout`` and SDPA's
dropout, as before dmao.models.dropout. Steps are interleaved (A, B, A, B, ...) and the report is
the median of the per-round time ratios ours / torchaudio.

Sizes: ``256x12`` is the paper's d = 256 × 12 layers (4 heads × 64, kernel 31); ``144x8`` is
our small recipe (4 heads × 36, kernel 15, dmao/configs/synthetic/small.yaml).
"""

from __future__ import annotations

import argparse
import contextlib
import sys

import torch
import torch.nn.functional as F
from _timing import format_summary, interleaved, thread_note
from torch import Tensor, nn

import dmao.models.attention
import dmao.models.convolution
import dmao.models.feed_forward
from dmao.models.architecture import EncoderArchitecture
from dmao.models.conformer import ConformerBlock

try:
    import torchaudio
except ImportError:  # ours alone, e.g. in the project's own .venv
    torchaudio = None

# d_model -> (num_heads, head_dim, depthwise kernel): the paper's size and our small recipe.
SIZES = {256: (4, 64, 31), 144: (4, 36, 15)}


class OurBlocks(nn.Module):
    """Our Conformer blocks alone, called like torchaudio's Conformer: ``(x, lengths)``."""

    def __init__(self, d_model: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        num_heads, head_dim, kernel = SIZES[d_model]
        arch = EncoderArchitecture.uniform(num_layers, d_model, 4, head_dim, num_heads)
        self.blocks = nn.ModuleList(
            ConformerBlock(d_model, widths, head_dim, kernel, dropout) for widths in arch.layers
        )

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, T, d)``, ``lengths (B,)`` → ``(B, T, d)``, ``lengths``."""
        mask = torch.arange(x.shape[1])[None, :] < lengths[:, None]  # (B, T)
        for block in self.blocks:
            x = block(x, mask)
        return x, lengths


def _sdpa_with_dropout(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor, p: float) -> Tensor:
    attn_mask = key_mask[:, None, None, :]  # (B, 1, 1, T)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)


@contextlib.contextmanager
def torch_dropout():
    """Run our blocks as they were before dmao.models.dropout: F.dropout and SDPA's dropout."""
    modules = (dmao.models.attention, dmao.models.convolution, dmao.models.feed_forward)
    saved = [m.dropout for m in modules]
    saved_attention = dmao.models.attention.attention_with_dropout
    for m in modules:
        m.dropout = F.dropout
    dmao.models.attention.attention_with_dropout = _sdpa_with_dropout
    try:
        yield
    finally:
        for m, fn in zip(modules, saved, strict=True):
            m.dropout = fn
        dmao.models.attention.attention_with_dropout = saved_attention


def build_reference(d_model: int, num_layers: int, dropout: float) -> nn.Module:
    """torchaudio's Conformer with our block order and sizes."""
    num_heads, _, kernel = SIZES[d_model]
    return torchaudio.models.Conformer(
        input_dim=d_model,
        num_heads=num_heads,
        ffn_dim=4 * d_model,
        num_layers=num_layers,
        depthwise_conv_kernel_size=kernel,
        dropout=dropout,
        convolution_first=True,
    )


def make_step(model: nn.Module, x: Tensor, lengths: Tensor, projection: Tensor):
    """One training step (forward, loss, backward, AdamW) of ``model`` as a closure."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-3)
    valid = (torch.arange(x.shape[1])[None, :] < lengths[:, None])[:, :, None]  # (B, T, 1)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        y, _ = model(x, lengths)  # (B, T, d)
        loss = (y * projection).masked_fill(~valid, 0.0).sum() / valid.sum()
        loss.backward()
        optimizer.step()

    return step


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def profile_step(name: str, step, rows: int) -> None:
    """Print the top ops by self CPU time of one step (after the timed rounds)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    print(f"\n--- profile: {name} (one step, top {rows} ops by self CPU time)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["256x12", "144x8"], help="dxLAYERS")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=375, help="longest utterance, frames")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument(
        "--torch-dropout",
        action="store_true",
        help="also time ours with F.dropout / SDPA dropout (before dmao.models.dropout)",
    )
    parser.add_argument("--profile", action="store_true", help="profile one step of each")
    parser.add_argument("--profile-rows", type=int, default=25)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    print(thread_note(), f"| torchaudio {getattr(torchaudio, '__version__', 'not installed')}")
    B, T = args.batch, args.frames
    # A duration-bucketed batch: lengths evenly from T down to ~2/3 T.
    lengths = torch.linspace(T, round(T * 2 / 3), B).round().long()
    print(f"batch {B}, lengths {lengths.tolist()} frames (after 4x subsampling; 25 frames/s)")
    for size in args.sizes:
        d_model, num_layers = (int(v) for v in size.split("x"))
        if d_model not in SIZES:
            sys.exit(f"--sizes: d_model must be one of {sorted(SIZES)}, got {size!r}")
        torch.manual_seed(0)
        x = torch.randn(B, T, d_model)
        projection = torch.randn(B, T, d_model)
        systems = {}
        ours = OurBlocks(d_model, num_layers, args.dropout).train()
        systems["ours"] = make_step(ours, x, lengths, projection)
        counts = {"ours": param_count(ours)}
        if args.torch_dropout:
            before = OurBlocks(d_model, num_layers, args.dropout).train()
            step_before = make_step(before, x, lengths, projection)

            def ours_torch_dropout(step=step_before) -> None:
                with torch_dropout():
                    step()

            systems["ours, F.dropout"] = ours_torch_dropout
        if torchaudio is not None:
            reference = build_reference(d_model, num_layers, args.dropout).train()
            systems["torchaudio"] = make_step(reference, x, lengths, projection)
            counts["torchaudio"] = param_count(reference)
        heads, head_dim, kernel = SIZES[d_model]
        print(
            f"\n== d={d_model} x {num_layers} layers, {heads} heads x {head_dim}, "
            f"ffn {4 * d_model}, kernel {kernel}; parameters: "
            + ", ".join(f"{n} {c:,}" for n, c in counts.items())
        )
        times = interleaved(systems, args.rounds, args.warmup)
        reference_name = "torchaudio" if "torchaudio" in systems else "ours"
        print(format_summary(times, reference_name))
        if args.profile:
            for name, step in systems.items():
                profile_step(f"{name} d={d_model}x{num_layers}", step, args.profile_rows)


if __name__ == "__main__":
    main()
