"""The fused QKV projection against the three separate projections it replaced (issue 17, item 4).

    python benchmarks/bench_fused_qkv.py [--sizes small paper] [--rounds 10] [--device cpu|cuda]

The attention module computes Q, K and V with one ``Linear(d, 3·H·Dh)`` (``qkv``) instead of
three ``Linear(d, H·Dh)`` (``q``, ``k``, ``v``, dmao before 2026-12-05). For each model size this
script builds the production model and the same weights in the old layout
(:func:`separate_qkv`: the ``qkv`` rows split into three layers, the old forward), and reports,
in the same process:

- numerics: with dropout off, the loss of two training steps and the norm-relative difference of
  the first step's gradients (the fused rows against the concatenated q, k, v gradients);
- ATen ops per training step (forward, CTC loss, backward, clipping, the recipe's fused AdamW),
  counted by :class:`dmao.perf.counters.OpCounter` on one step of each;
- the step time: one step of each per round, interleaved (``benchmarks/_timing.py``), median
  per-round ratio fused ÷ separate on the wall and process-CPU clocks.

Sizes: ``small`` (the small recipe: d = 144 × 8, 4 heads of 36, frontend 8/16/16/8, kernel 15;
17 utterances of 2–3 s) and ``paper`` (d = 256 × 12, 4 heads of 64, frontend 32/64/64/32,
kernel 31; 8 utterances of 15–10 s). ``--device cuda`` runs the same on a GPU (fp32; read the
wall-clock ratios there: the CPU clock only counts the launching thread); benchmarks/gpu_perf.sh
does that for the paper size.
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.nn.functional as F
from _timing import format_summary, interleaved, thread_note
from bench_step_options import VOCAB, make_step
from bench_step_options import make_batch as step_options_batch
from torch import Tensor, nn

from dmao.models import ConformerCTC
from dmao.models.attention import MultiHeadSelfAttention, fuse_legacy_qkv, legacy_qkv_modules
from dmao.models.dropout import attention_with_dropout, dropout
from dmao.perf.counters import OpCounter

SIZES = {
    # d_model, layers, head_dim, kernel, frontend, (batch, frames)
    "small": (144, 8, 36, 15, (8, 16, 16, 8), (17, 300)),
    "paper": (256, 12, 64, 31, (32, 64, 64, 32), (8, 1500)),
    "toy": (32, 2, 16, 7, (4, 4, 4, 4), (4, 100)),  # the toy test of benchmarks/gpu_perf.sh
}


class SeparateQKV(MultiHeadSelfAttention):
    """The attention module before the fused projection: three layers ``q``, ``k``, ``v`` and
    the forward of that version (dmao commit bc80c26), for comparison only."""

    @property
    def num_heads(self) -> int:
        return self.q.weight.shape[0] // self.head_dim

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        B, T, _ = x.shape
        H, Dh = self.num_heads, self.head_dim
        h = self.norm(x)
        q = self.q(h).view(B, T, H, Dh).transpose(1, 2)  # (B, H, T, Dh)
        k = self.k(h).view(B, T, H, Dh).transpose(1, 2)  # (B, H, T, Dh)
        v = self.v(h).view(B, T, H, Dh).transpose(1, 2)  # (B, H, T, Dh)
        key_mask = mask | ~mask.any(dim=1, keepdim=True)  # (B, T)
        if self.training and self.dropout > 0.0 and x.device.type == "cpu":
            a = attention_with_dropout(q, k, v, key_mask, self.dropout)  # (B, H, T, Dh)
        else:
            a = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=key_mask[:, None, None, :],
                dropout_p=self.dropout if self.training else 0.0,
            )  # (B, H, T, Dh)
        a = a.transpose(1, 2).reshape(B, T, H * Dh)
        return dropout(self.out(a), self.dropout, self.training)  # (B, T, d)


@torch.no_grad()
def separate_qkv(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every attention module in the old three-layer layout."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, MultiHeadSelfAttention) and module.qkv is not None:
            d, inner = module.d_model, module.qkv.weight.shape[0] // 3
            for name, w, b in zip(
                ("q", "k", "v"),
                module.qkv.weight.chunk(3),
                module.qkv.bias.chunk(3),
                strict=True,
            ):
                layer = nn.Linear(d, inner, device=w.device)
                layer.weight.copy_(w)
                layer.bias.copy_(b)
                setattr(module, name, layer)
            del module.qkv
            module.__class__ = SeparateQKV
    return model


DEVICE = torch.device("cpu")


def build(size: str, dropout_p: float) -> ConformerCTC:
    d, layers, head_dim, kernel, frontend, _ = SIZES[size]
    torch.manual_seed(0)
    return (
        ConformerCTC(
            VOCAB,
            d_model=d,
            num_layers=layers,
            head_dim=head_dim,
            conv_kernel_size=kernel,
            dropout=dropout_p,
            frontend_channels=frontend,
        )
        .to(DEVICE)
        .train()
    )


def make_batch(size: str) -> dict[str, Tensor]:
    """The size's recipe-like batch (bench_step_options.make_batch: ``B`` utterances from ``T``
    frames down to ``2T/3``) on the benchmark's device."""
    B, T = SIZES[size][5]
    return {k: v.to(DEVICE) for k, v in step_options_batch(B=B, T=T).items()}


def check_numerics(size: str, batch: dict[str, Tensor]) -> None:
    """Two dropout-free steps from the same weights, fused vs separate."""
    fused = build(size, dropout_p=0.0)
    separate = separate_qkv(fused)
    results = {}
    for name, model in (("fused", fused), ("separate", separate)):
        step = make_step(model, "fused", batch)
        step()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        results[name] = (step(), grads)
    loss_f, g_f = results["fused"]
    loss_s, g_s = results["separate"]
    for prefix in legacy_qkv_modules(g_s):  # the q, k, v gradients in the fused layout
        fuse_legacy_qkv(g_s, prefix)
    assert g_s.keys() == g_f.keys(), sorted(set(g_s) ^ set(g_f))[:4]
    a = torch.cat([g_f[n].flatten() for n in g_f])
    b = torch.cat([g_s[n].flatten() for n in g_f])
    print(
        f"  numerics (dropout off): loss of step 2 {loss_f:.6f} fused, {loss_s:.6f} separate "
        f"(rel. {abs(loss_f / loss_s - 1):.1e}); ||grad diff|| / ||grad|| at step 1: "
        f"{((a - b).norm() / b.norm()).item():.1e}"
    )


def count_ops(model: nn.Module, batch: dict[str, Tensor]) -> int:
    """ATen ops of one whole training step (after one warm-up step)."""
    step = make_step(model, "fused", batch)
    step()
    with OpCounter() as ops:
        step()
    return ops.total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["small", "paper"], choices=list(SIZES))
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-timing", action="store_true", help="numerics and op counts only")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    global DEVICE
    DEVICE = torch.device(args.device)
    torch.set_num_threads(args.threads)
    print(thread_note())
    for size in args.sizes:
        batch = make_batch(size)
        name = torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else "cpu"
        print(
            f"\n{size} (d = {SIZES[size][0]} x {SIZES[size][1]}, batch {SIZES[size][5]}), {name}:"
        )
        check_numerics(size, batch)
        base = build(size, dropout_p=0.1)
        fused_ops = count_ops(copy.deepcopy(base), batch)
        separate_ops = count_ops(separate_qkv(base), batch)
        print(
            f"  ATen ops per training step: fused {fused_ops}, separate {separate_ops} "
            f"({fused_ops - separate_ops:+d})"
        )
        if args.skip_timing:
            continue
        systems = {
            "separate": make_step(separate_qkv(base), "fused", batch),
            "fused": make_step(copy.deepcopy(base), "fused", batch),
        }
        times = interleaved(systems, args.rounds, warmup=1, verbose=False)
        print(format_summary(times, "separate"))


if __name__ == "__main__":
    main()
