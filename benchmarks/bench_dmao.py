"""Cost of DMAO on this machine: scoring overhead per training step and the time of one event.

    python benchmarks/bench_dmao.py [--overhead-steps 30] [--event-repeats 3]

1. Overhead. The demo model (d = 144, 8 layers) trains on random 80-dim features (17 utterances
   of 3 s, the demo's 50 s batches) with and without the DMAO scoring hook, interleaved step by
   step in one process so machine noise hits both alike. The hook runs with score_every_steps = 1
   (the worst case: a measurement after every backward); the overhead at an interval of N steps is
   the measured extra time divided by N, reported for the default interval.
2. Event time. A 12-layer d = 384 Conformer-CTC (42 M parameters) with AdamW state after one real
   step: the wall time of one reallocation event moving 15 % of the adaptable parameters (plan,
   module rebuild, optimizer-state remap, invariant checks). Median over repeats, each on a fresh
   model.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from dmao.method import DmaoAllocator, DmaoConfig
from dmao.models import ConformerCTC


def _step(model, optimizer, features, lens, targets, target_lens, allocator, step) -> float:
    start = time.perf_counter()
    log_probs, out_lens = model(features, lens)
    loss = F.ctc_loss(log_probs.transpose(0, 1), targets, out_lens, target_lens, reduction="sum")
    optimizer.zero_grad(set_to_none=True)
    (loss / target_lens.sum()).backward()
    if allocator is not None:
        allocator.tracker.measure(step)  # what after_backward does when a measurement is due
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    optimizer.step()
    return time.perf_counter() - start


def bench_overhead(steps: int, default_interval: int) -> None:
    torch.manual_seed(0)
    kwargs = dict(
        vocab_size=30,
        d_model=144,
        num_layers=8,
        head_dim=36,
        conv_kernel_size=15,
        frontend_channels=(8, 16, 16, 8),
    )
    base = ConformerCTC(**kwargs)
    scored = ConformerCTC(**kwargs)
    scored.load_state_dict(base.state_dict())
    opt_base = torch.optim.AdamW(base.parameters(), lr=1e-4)
    opt_scored = torch.optim.AdamW(scored.parameters(), lr=1e-4)
    allocator = DmaoAllocator(
        scored.adaptable_modules(), DmaoConfig(enabled=True, score_every_steps=1), 10**6
    )
    B, T, U = 17, 300, 40
    features = torch.randn(B, T, 80)
    lens = torch.full((B,), T)
    targets = torch.randint(1, 30, (B, U))
    target_lens = torch.full((B,), U)
    times_base, times_scored = [], []
    for i in range(steps + 2):
        tb = _step(base, opt_base, features, lens, targets, target_lens, None, i)
        ts = _step(scored, opt_scored, features, lens, targets, target_lens, allocator, i)
        if i >= 2:  # warm-up
            times_base.append(tb)
            times_scored.append(ts)
    med_b, med_s = statistics.median(times_base), statistics.median(times_scored)
    measure = []
    for i in range(20):
        start = time.perf_counter()
        allocator.tracker.measure(10_000 + i)
        measure.append(time.perf_counter() - start)
    med_m = statistics.median(measure)
    print(
        f"step without scoring: {med_b * 1000:.1f} ms, with a measurement every step: "
        f"{med_s * 1000:.1f} ms (median of {steps}, interleaved); ratio {med_s / med_b:.4f}"
    )
    print(f"one score measurement alone: {med_m * 1000:.2f} ms (median of 20)")
    print(
        f"overhead at score_every_steps={default_interval}: step-time ratio "
        f"{1 + med_m / default_interval / med_b:.5f}"
    )


def bench_event(repeats: int) -> None:
    times = []
    for r in range(repeats):
        torch.manual_seed(r)
        model = ConformerCTC(vocab_size=80, d_model=384, num_layers=12)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        allocator = DmaoAllocator(
            model.adaptable_modules(), DmaoConfig(enabled=True, score_every_steps=1), 1000
        )
        features = torch.randn(2, 200, 80)
        log_probs, out_lens = model(features, torch.full((2,), 200))
        loss = F.ctc_loss(
            log_probs.transpose(0, 1), torch.randint(1, 80, (2, 20)), out_lens, torch.full((2,), 20)
        )
        loss.backward()
        allocator.after_backward(0)
        optimizer.step()
        start = time.perf_counter()
        event = allocator.reallocate(1, 0.15, optimizer)
        times.append(time.perf_counter() - start)
        print(
            f"  repeat {r}: {times[-1]:.3f} s, dropped {len(event.dropped)}, duplicated "
            f"{len(event.duplicated)}, adaptable params {event.params_before:,} -> "
            f"{event.params_after:,}"
        )
    print(
        f"one event, 12-layer d=384 Conformer (42 M): {statistics.median(times):.3f} s "
        f"(median of {repeats})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--overhead-steps", type=int, default=30)
    parser.add_argument("--event-repeats", type=int, default=3)
    parser.add_argument("--default-interval", type=int, default=DmaoConfig().score_every_steps)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_event(args.event_repeats)
    bench_overhead(args.overhead_steps, args.default_interval)


if __name__ == "__main__":
    main()
