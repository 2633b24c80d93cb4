"""Achieved FLOP/s of one Conformer-CTC training step against this machine's fp32 matmul peak.

    python benchmarks/bench_flops.py [--size small|paper] [--rounds 6 --threads 1]

1. FLOPs. ``torch.utils.flop_counter.FlopCounterMode`` counts one forward + CTC loss + backward.
   On CPU it does not see SDPA's fused kernel (``_scaled_dot_product_flash_attention_for_cpu`` has
   no FLOP formula, so attention counts 0), so the count is taken with SDPA forced to the math
   backend, whose bmm calls it does count; the attention FLOPs are also given analytically as a
   check. The counter's backward formula of grouped convolutions ignores ``groups``, so the
   depthwise convolutions are counted analytically. Elementwise work (activations, norms,
   dropout, AdamW) is not counted: FLOPs here are those of matrix products and convolutions.
2. Time. Training steps (forward, CTC, backward, AdamW; the default SDPA backend) interleaved
   round by round with a large fp32 matrix product (2048 × 2048 @ 2048 × 2048 by default, several
   repeats per round), at the same thread count, on both clocks of _timing.py (wall and process
   CPU time). Per round, achieved FLOP/s / matmul FLOP/s; the report is the median of those
   ratios.
3. Where the time goes. torch.profiler over one step: the top ops by self CPU time, and every
   top-level event (a forward op or an autograd node) summed into categories: frontend convs
   (+ pool, ReLU), linear layers, attention core, depthwise conv, layer norms, dropout masks,
   CTC loss, optimizer, and the remaining elementwise work (activations, applying dropout masks,
   masking, our masked BatchNorm, residual adds).

Sizes: ``small`` is dmao/configs/synthetic/small.yaml (d = 144 × 8, frontend 8/16/16/8, kernel 15)
with its training batch (50 s of audio: 17 utterances of ~3 s); ``paper`` is d = 256 × 12 with the
paper's frontend 32/64/64/32 and kernel 31 on 8 utterances of up to 15 s.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import torch
import torch.nn.functional as F
from _timing import thread_note
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from dmao.models import ConformerCTC

VOCAB = 30  # characters + blank, as the small recipe
SIZES = {
    # d, layers, head_dim, kernel, frontend, batch, longest utterance in feature frames (10 ms)
    "small": dict(d=144, layers=8, head_dim=36, kernel=15, frontend=(8, 16, 16, 8), B=17, T=300),
    "paper": dict(d=256, layers=12, head_dim=64, kernel=31, frontend=(32, 64, 64, 32), B=8, T=1500),
}


def build(size: str) -> tuple[ConformerCTC, dict[str, torch.Tensor]]:
    """The model and one random batch (lengths from T down to ~2/3 T, targets ~1 label per 4
    output frames)."""
    s = SIZES[size]
    torch.manual_seed(0)
    model = ConformerCTC(
        VOCAB,
        d_model=s["d"],
        num_layers=s["layers"],
        head_dim=s["head_dim"],
        conv_kernel_size=s["kernel"],
        frontend_channels=s["frontend"],
    ).train()
    B, T = s["B"], s["T"]
    lens = torch.linspace(T, round(T * 2 / 3), B).round().long()
    target_lens = (lens // 16).clamp(min=1)
    batch = dict(
        features=torch.randn(B, T, 80),
        lens=lens,
        targets=torch.randint(1, VOCAB, (B, int(target_lens.max()))),
        target_lens=target_lens,
    )
    return model, batch


def forward_backward(model: ConformerCTC, batch: dict[str, torch.Tensor]) -> None:
    log_probs, out_lens = model(batch["features"], batch["lens"])
    loss = F.ctc_loss(
        log_probs.transpose(0, 1), batch["targets"], out_lens, batch["target_lens"], reduction="sum"
    )
    (loss / batch["target_lens"].sum()).backward()


def count_flops(model: ConformerCTC, batch: dict[str, torch.Tensor]) -> tuple[int, dict[str, int]]:
    """FLOPs of forward + backward (math SDPA so attention is seen) and a split by part."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        forward_backward(model, batch)
    model.zero_grad(set_to_none=True)
    counts = counter.get_flop_counts()
    total = counter.get_total_flops()

    def by_op(scope: str, word: str) -> int:
        return sum(v for k, v in counts.get(scope, {}).items() if word in str(k))

    frontend_conv = by_op("ConformerCTC.encoder.frontend", "convolution")
    conv = by_op("Global", "convolution")
    bmm = by_op("Global", "bmm")
    # The counter's convolution_backward formula ignores `groups` (a depthwise Conv1d's backward
    # comes out ~C times too large; pytorch/pytorch PR #183405); count the depthwise convolutions
    # analytically instead and correct the total.
    depthwise_counted = conv - frontend_conv
    depthwise = depthwise_flops_analytic(model, batch)
    total = total - depthwise_counted + depthwise
    print(
        f"(FLOP counter's depthwise Conv1d: {depthwise_counted / 1e9:.2f} GFLOP, wrong for grouped "
        f"convolutions' backward; analytic {depthwise / 1e9:.2f} GFLOP used)"
    )
    parts = {
        "frontend Conv2d": frontend_conv,
        "depthwise Conv1d (analytic)": depthwise,
        "attention q·kᵀ and weights·v (bmm)": bmm,
        "linear layers (blocks, frontend linear, output)": total - frontend_conv - depthwise - bmm,
    }
    return total, parts


def depthwise_flops_analytic(model: ConformerCTC, batch: dict[str, torch.Tensor]) -> int:
    """2 FLOPs × B·T'·C·K forward per block, the same again for the input gradient and for the
    weight gradient (over the padded length T' = T // 4)."""
    B, T = batch["features"].shape[0], batch["features"].shape[1] // 4
    total = 0
    for block in model.encoder.blocks:
        conv = block.conv
        if conv.depthwise is not None:
            total += 3 * 2 * B * T * conv.channels * conv.kernel_size
    return total


def attention_flops_analytic(model: ConformerCTC, batch: dict[str, torch.Tensor]) -> int:
    """q·kᵀ and a·v over the padded length: 2 matmuls × 2 FLOPs/MAC × B·H·T²·Dh forward,
    twice that backward."""
    B, T = batch["features"].shape[0], batch["features"].shape[1] // 4
    total = 0
    for block in model.encoder.blocks:
        H, Dh = block.mhsa.num_heads, block.mhsa.head_dim
        total += 3 * 2 * 2 * B * H * T * T * Dh
    return total


def categorise(root: torch.autograd.profiler_util.FunctionEvent) -> str:
    """The category of one top-level profiler event (a forward op or an autograd node)."""
    name = root.name.removeprefix("autograd::engine::evaluate_function: ")
    low = name.lower()
    if name.startswith("Optimizer."):
        return "optimizer (AdamW)"
    if "ctc" in low:
        return "CTC loss"
    if low.startswith("convolutionbackward"):
        # 4-D gradients are the frontend's Conv2d, 3-D the depthwise Conv1d.
        dims = {len(s) for e in root.cpu_children for s in e.input_shapes if s}
        return "frontend convs (+pool, ReLU)" if 4 in dims else "depthwise conv"
    if "conv2d" in low or "max_pool2d" in low or "relu" in low:
        return "frontend convs (+pool, ReLU)"
    if "conv1d" in low:
        return "depthwise conv"
    if low == "aten::linear" or low.startswith(("addmmbackward", "mmbackward")):
        return "linear layers"
    # nn.Linear never calls matmul/bmm on 3-D inputs; attention (ours or SDPA's) does.
    if low in ("aten::matmul", "aten::softmax") or "scaled_dot_product" in low:
        return "attention core (q·kᵀ, softmax, ·v)"
    if low.startswith(("bmmbackward", "softmaxbackward", "unsafeviewbackward")):
        return "attention core (q·kᵀ, softmax, ·v)"
    if low in ("aten::rand", "aten::dropout", "aten::bernoulli_"):
        return "dropout masks (random numbers)"
    if "layer_norm" in low or "layernorm" in low:
        return "layer norms"
    return "other elementwise (act., dropout, masks, BatchNorm, residuals)"


def profile_step(step, rows: int) -> None:
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step()
    events = prof.events()
    roots = [e for e in events if e.cpu_parent is None]
    by_category: dict[str, float] = defaultdict(float)
    for root in roots:
        by_category[categorise(root)] += root.cpu_time_total
    total = sum(by_category.values())
    print("\nwhere one step's time goes (top-level events by category, profiled step):")
    for name, us in sorted(by_category.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<62} {us / 1000:9.1f} ms  {100 * us / total:5.1f} %")
    print(f"\ntop {rows} ops by self CPU time:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--matmul-n", type=int, default=2048)
    parser.add_argument("--matmul-repeats", type=int, default=3, help="per round")
    parser.add_argument("--profile-rows", type=int, default=20)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    print(thread_note())
    model, batch = build(args.size)
    s = SIZES[args.size]
    params = sum(p.numel() for p in model.parameters())
    print(
        f"size {args.size}: d={s['d']} x {s['layers']}, {params:,} parameters; batch "
        f"{s['B']} utterances, lengths {batch['lens'].tolist()} feature frames"
    )
    flops, parts = count_flops(model, batch)
    print(f"FLOPs of one forward + backward: {flops / 1e9:.1f} GFLOP")
    for name, value in parts.items():
        print(f"  {name:<56} {value / 1e9:8.2f} GFLOP  {100 * value / flops:5.1f} %")
    print(
        f"  (attention analytically: {attention_flops_analytic(model, batch) / 1e9:.2f} GFLOP "
        "over the padded length)"
    )

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        forward_backward(model, batch)
        optimizer.step()

    n = args.matmul_n
    a, b = torch.randn(n, n), torch.randn(n, n)
    mm_flops = 2 * n**3
    step()  # warm-up
    a @ b
    # Both clocks: wall time, and process CPU time (with one thread: the work itself, without
    # the time other processes held the cores; see _timing.py).
    clocks = {"wall": time.perf_counter, "cpu": time.process_time}
    step_times = {c: [] for c in clocks}
    mm_times = {c: [] for c in clocks}
    for r in range(args.rounds):
        starts = {c: clock() for c, clock in clocks.items()}
        step()
        for c, clock in clocks.items():
            step_times[c].append(clock() - starts[c])
        t_mm = {c: [] for c in clocks}
        for _ in range(args.matmul_repeats):
            starts = {c: clock() for c, clock in clocks.items()}
            a @ b
            for c, clock in clocks.items():
                t_mm[c].append(clock() - starts[c])
        for c in clocks:
            mm_times[c].append(statistics.median(t_mm[c]))
        print(
            f"  round {r + 1}: "
            + "; ".join(
                f"{c} step {step_times[c][-1] * 1000:.0f} ms "
                f"({flops / step_times[c][-1] / 1e9:.1f} GFLOP/s), matmul "
                f"{mm_times[c][-1] * 1000:.0f} ms ({mm_flops / mm_times[c][-1] / 1e9:.1f} GFLOP/s)"
                for c in clocks
            ),
            flush=True,
        )
    for c in clocks:
        ratios = [
            (flops / ts) / (mm_flops / tm)
            for ts, tm in zip(step_times[c], mm_times[c], strict=True)
        ]
        med_step, med_mm = statistics.median(step_times[c]), statistics.median(mm_times[c])
        print(
            f"\n[{c}] median step {med_step * 1000:.0f} ms ({flops / med_step / 1e9:.1f} GFLOP/s), "
            f"median matmul {med_mm * 1000:.0f} ms ({mm_flops / med_mm / 1e9:.1f} GFLOP/s, "
            f"{n}^3 fp32)\n[{c}] achieved / matmul peak (median of per-round ratios): "
            f"{statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f}, "
            f"{args.rounds} rounds)"
        )
    profile_step(step, args.profile_rows)


if __name__ == "__main__":
    main()
