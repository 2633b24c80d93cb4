"""DMAO on a model that has nothing to do with speech: a tiny causal Transformer language model.

    python examples/dmao_tiny_lm.py                  # ~1 min on 2 CPU cores
    python examples/dmao_tiny_lm.py --steps 100 --d-model 32 --layers 2   # a few seconds

What it shows (see docs/dmao_api.md):

1. A model defines its own adaptable modules — here :class:`MLP` (hidden units) and
   :class:`CausalSelfAttention` (heads) — by describing where each unit lives in its tensors with
   :class:`~dmao.method.units.UnitSlice`; the :class:`~dmao.method.units.SlicedUnits` mixin turns
   that into the whole :class:`~dmao.method.units.AdaptableModule` interface (scores, component
   costs, real tensor reselection). A module of width 0 owns nothing and its block skips it.
2. The model lists them in ``adaptable_modules()``, setting ``kind``, ``default_width`` and
   ``base_dropout``.
3. The training loop calls :class:`~dmao.method.allocator.DmaoAllocator` twice per step; the events
   drop the least useful units and duplicate the most useful ones across all layers and both module
   kinds at a constant parameter count, and remap the AdamW state.

The data is a synthetic formal language generated here: Dyck-2 (balanced ``()`` and ``[]``) with a
depth limit. Predicting a closing bracket needs the matching opener, which only attention can find;
the generator knows the true next-token distribution, so the script prints the best achievable
loss next to the model's.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dmao.method import DmaoAllocator, DmaoConfig, SlicedUnits, UnitSlice

__all__ = ["MLP", "CausalSelfAttention", "DyckLanguage", "TinyLM", "main", "run"]

# -- the language ---------------------------------------------------------------------------------

PAD, BOS, EOS = 0, 1, 2
OPEN = {3: 4, 5: 6}  # "(" → ")", "[" → "]"
VOCAB_SIZE = 7
SYMBOLS = {PAD: "_", BOS: "^", EOS: "$", 3: "(", 4: ")", 5: "[", 6: "]"}


@dataclass
class DyckLanguage:
    """Dyck-2 sentences: at depth 0 end with ``stop_probability`` (never before the first bracket),
    else open; below ``max_depth`` open or close with equal probability; close when the depth
    limit or the length limit forces it. The bracket type of an opener is uniform."""

    max_brackets: int = 30
    max_depth: int = 6
    stop_probability: float = 0.15

    @property
    def max_len(self) -> int:
        """Tokens of the longest sentence: BOS + brackets + EOS."""
        return self.max_brackets + 2

    def sample(self, rng: random.Random) -> tuple[list[int], float]:
        """One sentence ``[BOS, ..., EOS]`` and the sum of ``-log p`` of its tokens after BOS
        under the true distribution (the best any model can do on it)."""
        tokens: list[int] = [BOS]
        stack: list[int] = []
        nll = 0.0
        while True:
            used = len(tokens) - 1
            # Opening is possible only if the brackets still fit: this one and every close.
            room = used + len(stack) + 2 <= self.max_brackets
            if not stack:
                if used > 0 and not room:
                    return [*tokens, EOS], nll  # EOS forced: p = 1
                if used > 0 and rng.random() < self.stop_probability:
                    return [*tokens, EOS], nll - math.log(self.stop_probability)
                p_open = 1.0 if used == 0 else 1.0 - self.stop_probability
            elif len(stack) < self.max_depth and room:
                p_open = 0.5
                if rng.random() >= p_open:
                    tokens.append(OPEN[stack.pop()])
                    nll -= math.log(1.0 - p_open)
                    continue
            else:
                tokens.append(OPEN[stack.pop()])  # close forced: p = 1
                continue
            opener = rng.choice(list(OPEN))
            stack.append(opener)
            tokens.append(opener)
            nll -= math.log(p_open / len(OPEN))

    def batch(self, rng: random.Random, size: int) -> tuple[Tensor, float]:
        """``(size, max_len)`` int64 tokens right-padded with PAD, and the true mean ``-log p`` per
        predicted token."""
        out = torch.full((size, self.max_len), PAD, dtype=torch.int64)
        total_nll, total_tokens = 0.0, 0
        for i in range(size):
            tokens, nll = self.sample(rng)
            out[i, : len(tokens)] = torch.tensor(tokens)
            total_nll += nll
            total_tokens += len(tokens) - 1
        return out, total_nll / total_tokens


# -- adaptable modules: the only DMAO-specific code of the model ----------------------------------


class MLP(SlicedUnits, nn.Module):
    """pre-LN → Linear(d, hidden) → GELU → Linear(hidden, d) → dropout.

    DMAO unit = one hidden unit: row ``i`` of ``fc1.weight`` and ``fc1.bias[i]`` (its input
    projection, which DMAO scores) and column ``i`` of ``fc2.weight`` (its outgoing weights).
    """

    UNIT_SUBMODULES = ("norm", "fc1", "fc2")  # every child: all become None at width 0

    def __init__(self, d_model: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.d_model = d_model
        self.dropout = dropout  # a plain float: DMAO rescales it with the width
        self.norm = nn.LayerNorm(d_model) if hidden else None
        self.fc1 = nn.Linear(d_model, hidden) if hidden else None
        self.fc2 = nn.Linear(hidden, d_model) if hidden else None

    @property
    def width(self) -> int:
        """Hidden units, read from the weights so it follows every reselection."""
        return 0 if self.fc1 is None else self.fc1.weight.shape[0]

    @property
    def params_per_unit(self) -> int:
        """Row of fc1 + its bias + column of fc2."""
        return 2 * self.d_model + 1

    def unit_slices(self) -> list[UnitSlice]:
        bound = 1.0 / self.d_model**0.5  # nn.Linear's init bound, for growth_init=random
        return [
            UnitSlice("fc1.weight", dim=0, role="input", init_bound=bound),
            UnitSlice("fc1.bias", dim=0, init_bound=bound),
            UnitSlice(
                "fc2.weight", dim=1, role="output", init_bound=1.0 / max(self.width, 1) ** 0.5
            ),
        ]

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, d)`` → ``(B, T, d)``."""
        h = F.gelu(self.fc1(self.norm(x)))  # (B, T, hidden)
        return F.dropout(self.fc2(h), self.dropout, self.training)


class CausalSelfAttention(SlicedUnits, nn.Module):
    """pre-LN → causal multi-head attention → out projection → dropout.

    DMAO unit = one head: rows ``[h·Dh, (h+1)·Dh)`` of ``q``, ``k`` and ``v`` (scored) and the same
    columns of ``out``. A head is always one component.
    """

    UNIT_SUBMODULES = ("norm", "q", "k", "v", "out")
    ONE_UNIT_PER_COMPONENT = True

    def __init__(self, d_model: int, num_heads: int, head_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.d_model, self.head_dim, self.dropout = d_model, head_dim, dropout
        inner = num_heads * head_dim
        self.norm = nn.LayerNorm(d_model) if num_heads else None
        self.q = nn.Linear(d_model, inner) if num_heads else None
        self.k = nn.Linear(d_model, inner) if num_heads else None
        self.v = nn.Linear(d_model, inner) if num_heads else None
        self.out = nn.Linear(inner, d_model) if num_heads else None

    @property
    def width(self) -> int:
        """Heads."""
        return 0 if self.q is None else self.q.weight.shape[0] // self.head_dim

    @property
    def params_per_unit(self) -> int:
        return 3 * self.head_dim * (self.d_model + 1) + self.head_dim * self.d_model

    def unit_slices(self) -> list[UnitSlice]:
        Dh, bound = self.head_dim, 1.0 / self.d_model**0.5
        slices = []
        for name in ("q", "k", "v"):
            slices.append(UnitSlice(f"{name}.weight", 0, Dh, role="input", init_bound=bound))
            slices.append(UnitSlice(f"{name}.bias", 0, Dh, init_bound=bound))
        out_bound = 1.0 / max(self.width * Dh, 1) ** 0.5
        slices.append(UnitSlice("out.weight", 1, Dh, role="output", init_bound=out_bound))
        return slices

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, d)`` → ``(B, T, d)``; position t attends to positions ≤ t (right padding
        therefore never reaches a real token)."""
        B, T, _ = x.shape
        H, Dh = self.width, self.head_dim
        h = self.norm(x)
        q = self.q(h).view(B, T, H, Dh).transpose(1, 2)  # (B, H, T, Dh)
        k = self.k(h).view(B, T, H, Dh).transpose(1, 2)  # (B, H, T, Dh)
        v = self.v(h).view(B, T, H, Dh).transpose(1, 2)  # (B, H, T, Dh)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, Dh)
        a = a.transpose(1, 2).reshape(B, T, H * Dh)  # head h at columns [h·Dh, (h+1)·Dh)
        return F.dropout(self.out(a), self.dropout, self.training)


# -- the model ------------------------------------------------------------------------------------


class Block(nn.Module):
    """``x + attn(x)``, then ``x + mlp(x)``; a module of width 0 is skipped."""

    def __init__(
        self, d_model: int, heads: int, head_dim: int, hidden: int, dropout: float
    ) -> None:
        super().__init__()
        self.attn = CausalSelfAttention(d_model, heads, head_dim, dropout)
        self.mlp = MLP(d_model, hidden, dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, d)`` → ``(B, T, d)``."""
        if self.attn.width:
            x = x + self.attn(x)
        if self.mlp.width:
            x = x + self.mlp(x)
        return x


class TinyLM(nn.Module):
    """Token + learned position embeddings → pre-LN blocks → LayerNorm → logits.

    Args:
        vocab_size: tokens V.
        max_len: longest sequence T.
        d_model: model dimension d.
        num_layers: blocks.
        head_dim: dimension of each head; ``d_model // head_dim`` heads per block.
        mlp_multiplier: MLP hidden units per model dimension.
        dropout: dropout at the default widths.
    """

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        d_model: int = 64,
        num_layers: int = 4,
        head_dim: int = 16,
        mlp_multiplier: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.dropout = dropout
        # The widths the model was sized with: DMAO's dropout scaling is relative to them.
        self.default_widths = {"attn": d_model // head_dim, "mlp": mlp_multiplier * d_model}
        self.embed = nn.Embedding(vocab_size, d_model)
        self.position = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(
            Block(d_model, d_model // head_dim, head_dim, mlp_multiplier * d_model, dropout)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def adaptable_modules(self) -> dict[str, nn.Module]:
        """What DMAO may resize, by name; sets each one's ``kind``, ``default_width`` and
        ``base_dropout``."""
        modules = {}
        for i, block in enumerate(self.blocks):
            for kind in ("attn", "mlp"):
                module = getattr(block, kind)
                module.kind = kind
                module.default_width = self.default_widths[kind]
                module.base_dropout = self.dropout
                modules[f"blocks.{i}.{kind}"] = module
        return modules

    def widths(self) -> dict[str, list[int]]:
        """Per kind, the width of every layer (bottom first)."""
        return {k: [getattr(b, k).width for b in self.blocks] for k in ("attn", "mlp")}

    def forward(self, tokens: Tensor) -> Tensor:
        """``tokens (B, T)`` int64 → next-token logits ``(B, T, V)``."""
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.embed(tokens) + self.position(positions)  # (B, T, d)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))  # (B, T, V)


def lm_loss(model: TinyLM, tokens: Tensor) -> Tensor:
    """Mean next-token cross-entropy over the real (non-PAD) targets of ``tokens (B, T)``."""
    logits = model(tokens[:, :-1])  # (B, T-1, V)
    return F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], ignore_index=PAD)


# -- training with DMAO ---------------------------------------------------------------------------


def format_widths(widths: dict[str, list[int]]) -> str:
    """One row per module kind, one column per layer."""
    num_layers = len(next(iter(widths.values())))
    rows = [["layer", *map(str, range(1, num_layers + 1))]]
    rows += [[k, *map(str, w)] for k, w in widths.items()]
    cols = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return "\n".join(
        " ".join(
            cell.rjust(w) if c else cell.ljust(w)
            for c, (cell, w) in enumerate(zip(r, cols, strict=True))
        )
        for r in rows
    )


def run(
    steps: int = 600,
    d_model: int = 64,
    num_layers: int = 4,
    head_dim: int = 16,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    dmao: DmaoConfig | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train a :class:`TinyLM` on Dyck-2 with DMAO events; returns what happened.

    The returned dict holds ``widths_before`` / ``widths_after`` (per kind, per layer),
    ``adaptable_params_before`` / ``_after``, ``max_component_cost``, ``events`` (the allocator's
    history), ``losses`` (training loss per step), ``valid_loss_before`` / ``_after`` (at step 0
    and at the end), ``best_possible_loss`` and the trained ``model`` and ``optimizer``.
    """
    torch.manual_seed(seed)
    rng = random.Random(seed)
    language = DyckLanguage()
    valid, best_loss = language.batch(random.Random(seed + 1), 256)
    model = TinyLM(VOCAB_SIZE, language.max_len, d_model, num_layers, head_dim)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    if dmao is None:
        # Two events up to 40 % of training move 30 % of the adaptable parameters in all.
        dmao = DmaoConfig(
            enabled=True,
            score_every_steps=max(1, steps // 60),
            num_events=2,
            last_event_fraction=0.4,
            total_fraction=0.3,
        )
    allocator = DmaoAllocator(model.adaptable_modules(), dmao, total_steps=steps)

    def adaptable_params() -> int:
        return sum(p.numel() for m in model.adaptable_modules().values() for p in m.parameters())

    def validate() -> float:
        model.eval()
        with torch.no_grad():
            loss = float(lm_loss(model, valid))
        model.train()
        return loss

    result: dict[str, Any] = {
        "widths_before": model.widths(),
        "adaptable_params_before": adaptable_params(),
        "max_component_cost": max(m.component_cost() for m in allocator.modules.values()),
        "valid_loss_before": validate(),
        "best_possible_loss": best_loss,
        "losses": [],
    }
    log(f"per-layer widths before (attn = heads of {head_dim}, mlp = hidden units):")
    log(format_widths(result["widths_before"]))
    for step in range(steps):  # step = optimizer updates completed so far
        tokens, _ = language.batch(rng, batch_size)
        optimizer.zero_grad()
        loss = lm_loss(model, tokens)
        loss.backward()
        allocator.after_backward(step)  # reads the gradients for the scores (no extra backward)
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        result["losses"].append(loss.item())
        event = allocator.maybe_reallocate(step + 1, optimizer)  # drops/duplicates when due
        if event is not None:
            log(
                f"step {step + 1}: DMAO event {event.index + 1}: dropped {len(event.dropped)}, "
                f"duplicated {len(event.duplicated)} components; adaptable parameters "
                f"{event.params_before:,} -> {event.params_after:,}; valid loss {validate():.3f}"
            )
        if (step + 1) % max(1, steps // 5) == 0:
            log(f"step {step + 1}: train loss {loss.item():.3f}")
    result.update(
        widths_after=model.widths(),
        adaptable_params_after=adaptable_params(),
        valid_loss_after=validate(),
        events=allocator.history,
        model=model,
        optimizer=optimizer,
    )
    log("per-layer widths after:")
    log(format_widths(result["widths_after"]))
    log(
        f"adaptable parameters {result['adaptable_params_before']:,} -> "
        f"{result['adaptable_params_after']:,} (within half of the costliest component: "
        f"{result['max_component_cost'] // 2:,}); valid loss {result['valid_loss_before']:.3f} -> "
        f"{result['valid_loss_after']:.3f} (best possible {best_loss:.3f} nats/token)"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    run(args.steps, args.d_model, args.layers, args.head_dim, args.batch_size, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
