"""What makes a CPU training step of the small recipe faster: optimizer, layout, precision, threads.

    python benchmarks/bench_step_options.py [--rounds 8] [--variants ...] [--compile]

The step is the small recipe's (dmao/configs/synthetic/small.yaml: d = 144 × 8, frontend
8/16/16/8, kernel 15) on one 50 s batch (17 utterances of 2-3 s): forward, CTC loss, backward,
gradient clipping and AdamW. Every variant gets its own copy of the same initial weights and is
timed interleaved with the others, one step each per round; the report is the median per-round
ratio to the eager baseline (AdamW's default implementation, fp32, 1 thread).

Before timing, every variant's numerics are checked against the baseline: with dropout off, two
steps from the same weights; the loss of the second step and the norm-relative differences of
the first step's gradients and of the two steps' parameter updates are printed (fp32 variants
agree to ~1e-5 or better; bf16 is shown for information).

Variants: ``foreach`` / ``fused`` (AdamW implementations), ``channels_last`` (the VGG frontend's
Conv2d weights in channels-last layout), ``bf16`` (autocast to bfloat16, the recipe's
``train.precision=bf16``; this CPU has AMX), ``threads2`` (two intra-op threads for this step),
``torch_dropout`` (the model with ``F.dropout`` and SDPA's dropout, as before
dmao.models.dropout: its ratio is the inverse gain of that change).
``--optimizer-alone`` times AdamW's step by itself (default, foreach, fused) at d = 144 × 8 and
d = 256 × 12. ``--compile`` additionally compiles the model with torch.compile, reports the
compile time, a second input length (recompile or error) and the step ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _timing import format_summary, interleaved, thread_note
from bench_vs_torchaudio import torch_dropout

from dmao.models import ConformerCTC

VOCAB = 30
ALL_VARIANTS = ("foreach", "fused", "channels_last", "bf16", "threads2", "torch_dropout")


def build_model(dropout: float) -> ConformerCTC:
    torch.manual_seed(0)
    return ConformerCTC(
        VOCAB,
        d_model=144,
        num_layers=8,
        head_dim=36,
        conv_kernel_size=15,
        dropout=dropout,
        frontend_channels=(8, 16, 16, 8),
    ).train()


def make_batch(B: int = 17, T: int = 300) -> dict[str, torch.Tensor]:
    """17 utterances from 3 s down to 2 s (~50 s of audio, the small recipe's batch)."""
    torch.manual_seed(1)
    lens = torch.linspace(T, round(T * 2 / 3), B).round().long()
    target_lens = (lens // 16).clamp(min=1)
    return dict(
        features=torch.randn(B, T, 80),
        lens=lens,
        targets=torch.randint(1, VOCAB, (B, int(target_lens.max()))),
        target_lens=target_lens,
    )


def make_step(
    model: ConformerCTC, variant: str, batch: dict[str, torch.Tensor], forward=None
) -> Callable[[], float]:
    """A closure running one training step of ``variant``; returns the loss."""
    opt_kwargs = {"foreach": True} if variant == "foreach" else {}
    if variant == "fused":
        opt_kwargs = {"fused": True}
    if variant == "channels_last":
        model.encoder.frontend.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-3, **opt_kwargs)
    forward = forward if forward is not None else model

    def step() -> float:
        threads = torch.get_num_threads()
        if variant == "threads2":
            torch.set_num_threads(2)
        autocast = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if variant == "bf16"
            else contextlib.nullcontext()
        )
        # The model as it was before dmao.models.dropout (F.dropout, SDPA's dropout).
        before = torch_dropout() if variant == "torch_dropout" else contextlib.nullcontext()
        optimizer.zero_grad(set_to_none=True)
        with autocast, before:
            log_probs, out_lens = forward(batch["features"], batch["lens"])
        loss = (
            F.ctc_loss(
                log_probs.transpose(0, 1),
                batch["targets"],
                out_lens,
                batch["target_lens"],
                reduction="sum",
            )
            / batch["target_lens"].sum()
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        torch.set_num_threads(threads)
        return loss.item()

    return step


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().flatten().float() for t in tensors])


def check_numerics(variants: list[str], batch: dict[str, torch.Tensor]) -> None:
    """Two dropout-free steps per variant from the same weights, compared with the baseline.

    Norm-relative differences: element-wise maxima mislead with Adam, which turns gradients that
    are zero up to rounding (e.g. attention key biases: softmax ignores a constant shift) into
    full-size updates of random sign.
    """
    base_model = build_model(dropout=0.0)
    start = _flat(base_model.parameters())

    def run(variant: str) -> tuple[float, torch.Tensor, torch.Tensor]:
        model = copy.deepcopy(base_model)
        step = make_step(model, variant, batch)
        step()
        grads = _flat(p.grad for p in model.parameters())  # step 1's gradients
        loss = step()
        return loss, grads, _flat(model.parameters()) - start

    ref_loss, ref_grads, ref_update = run("eager")
    print("numerics (dropout off; vs eager: loss of step 2, ||grad diff|| / ||grad|| at step 1, ")
    print("          ||update diff|| / ||update|| of the parameters after 2 steps):")
    print(f"  {'eager':<16} loss {ref_loss:.6f}")
    for variant in variants:
        loss, grads, update = run(variant)
        g = ((grads - ref_grads).norm() / ref_grads.norm()).item()
        u = ((update - ref_update).norm() / ref_update.norm()).item()
        print(
            f"  {variant:<16} loss {loss:.6f} (rel. {abs(loss / ref_loss - 1):.1e}), "
            f"grad {g:.1e}, update {u:.1e}"
        )


def bench_compile(batch: dict[str, torch.Tensor], rounds: int) -> None:
    """torch.compile(model): compile time, a second length, and the step-time ratio."""
    print("\ntorch.compile (default mode, inductor):")
    eager_model = build_model(dropout=0.1)
    compiled_model = copy.deepcopy(eager_model)
    compiled = torch.compile(compiled_model)
    eager_step = make_step(eager_model, "eager", batch)
    compiled_step = make_step(compiled_model, "compiled", batch, forward=compiled)
    start = time.perf_counter()
    try:
        compiled_step()
    except Exception as err:  # report, do not hide: the point is whether it works here
        print(f"  first compiled step FAILED: {type(err).__name__}: {str(err)[:300]}")
        return
    print(f"  first step (compile + run): {time.perf_counter() - start:.1f} s")
    shorter = make_batch(B=17, T=260)
    other_step = make_step(compiled_model, "compiled", shorter, forward=compiled)
    start = time.perf_counter()
    try:
        loss = other_step()
        print(
            f"  another length (T=260 instead of 300): ran, {time.perf_counter() - start:.1f} s "
            f"(recompile for dynamic shapes), loss finite: {math.isfinite(loss)}"
        )
    except Exception as err:
        print(f"  another length FAILED: {type(err).__name__}: {str(err)[:300]}")
    times = interleaved({"eager": eager_step, "compiled": compiled_step}, rounds, verbose=False)
    print(format_summary(times, "eager"))


def _optimizer_step(d_model: int, num_layers: int, head_dim: int, **kwargs) -> Callable[[], None]:
    """AdamW's step on a fresh model whose gradients are random."""
    torch.manual_seed(0)
    model = ConformerCTC(
        VOCAB,
        d_model=d_model,
        num_layers=num_layers,
        head_dim=head_dim,
        conv_kernel_size=15,
        frontend_channels=(8, 16, 16, 8),
    )
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    return torch.optim.AdamW(model.parameters(), lr=1e-3, **kwargs).step


def bench_optimizer_alone(rounds: int) -> None:
    """AdamW's step alone (random gradients), default vs foreach vs fused, at two model sizes."""
    for shape in ((144, 8, 36), (256, 12, 64)):
        systems = {
            "default": _optimizer_step(*shape),
            "foreach": _optimizer_step(*shape, foreach=True),
            "fused": _optimizer_step(*shape, fused=True),
        }
        print(f"\nAdamW step alone, d = {shape[0]} x {shape[1]}:")
        times = interleaved(systems, rounds, warmup=2, verbose=False)
        print(format_summary(times, "default"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(ALL_VARIANTS), choices=ALL_VARIANTS)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="threads of all but threads2")
    parser.add_argument("--compile", action="store_true", help="also try torch.compile")
    parser.add_argument(
        "--optimizer-alone", action="store_true", help="also time AdamW's step by itself"
    )
    parser.add_argument("--skip-numerics", action="store_true", help="timing only")
    parser.add_argument("--skip-timing", action="store_true", help="numerics (and compile) only")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    print(thread_note())
    batch = make_batch()
    if not args.skip_numerics:
        check_numerics(args.variants, batch)
    if not args.skip_timing:
        base = build_model(dropout=0.1)
        systems = {"eager": make_step(copy.deepcopy(base), "eager", batch)}
        for variant in args.variants:
            systems[variant] = make_step(copy.deepcopy(base), variant, batch)
        print(f"\ntiming ({len(systems)} systems interleaved, {args.rounds} rounds):")
        times = interleaved(systems, args.rounds)
        print(format_summary(times, "eager"))
    if args.optimizer_alone:
        bench_optimizer_alone(max(args.rounds, 15))
    if args.compile:
        bench_compile(batch, args.rounds)


if __name__ == "__main__":
    main()
