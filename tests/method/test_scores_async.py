"""A DMAO scoring step makes no host synchronisation: the scores of all modules reach the host in
one non-blocking copy, and the measurement is finished (finiteness check, EMA) when something
reads it. Checked on the real ConformerCTC with a dispatch mode that sees every ATen call."""

from __future__ import annotations

from collections import Counter

import torch
from test_allocator import _backward, _model
from torch.utils._python_dispatch import TorchDispatchMode

from dmao.method import DmaoAllocator, DmaoConfig, ScoreTracker

aten = torch.ops.aten
# What makes the host wait for the device: a scalar read (.item(), float(), bool(), a Python
# `if` on a tensor) is _local_scalar_dense; a copy between tensors is copy_/_to_copy.
_SCALAR_READS = {aten._local_scalar_dense.default, aten.is_nonzero.default, aten.item.default}


class _Ops(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[func] += 1
        return func(*args, **(kwargs or {}))


def _tracker(metric: str = "taylor") -> tuple[torch.nn.Module, ScoreTracker]:
    model = _model()
    modules = model.adaptable_modules()
    for m in modules.values():
        m.set_granularity(4)
    return model, ScoreTracker(modules, metric=metric, ema_beta=0.1, score_every_steps=10)


def test_a_scoring_step_reads_no_scalar_and_copies_once():
    model, tracker = _tracker()
    _backward(model, 0)
    with _Ops() as ops:
        assert tracker.measure(0)
    assert not _SCALAR_READS & set(ops.counts), ops.counts
    copies = ops.counts[aten.copy_.default] + ops.counts[aten._to_copy.default]
    assert copies == 1, ops.counts  # every module's scores in one buffer, one copy to the host

    # Through the allocator's hook, as the training step calls it (a due measurement).
    config = DmaoConfig(enabled=True, score_every_steps=10, granularity=4)
    allocator = DmaoAllocator(model.adaptable_modules(), config, total_steps=100)
    with _Ops() as ops:
        assert allocator.after_backward(0)
    assert not _SCALAR_READS & set(ops.counts), ops.counts


def test_the_measurement_is_finished_when_read_and_logged_once():
    model, tracker = _tracker()
    logged = []
    tracker.on_resolve = lambda step, scores: logged.append((step, sorted(scores)))
    _backward(model, 0)
    tracker.measure(0)
    assert logged == []  # not on the scoring step
    scores = tracker.scores  # reading finishes it
    assert logged == [(0, sorted(scores))] and tracker.num_measurements == 1
    assert all(s.device.type == "cpu" and torch.isfinite(s).all() for s in scores.values())
    assert tracker.resolve() is None and len(logged) == 1  # nothing pending any more


def test_a_non_finite_measurement_is_discarded_when_finished():
    model, tracker = _tracker()
    _backward(model, 0)
    tracker.measure(0)
    first = {k: v.clone() for k, v in tracker.scores.items()}
    name = "encoder.blocks.0.ff1"
    model.adaptable_modules()[name].linear1.weight.grad[0, 0] = float("nan")
    assert tracker.measure(10)  # taken, to be checked later
    assert tracker.resolve() is None  # discarded
    assert tracker.last_measured_step == 0 and tracker.num_measurements == 1
    assert tracker.due(11)  # the next step tries again
    for k, v in tracker.scores.items():
        assert torch.equal(v, first[k])
