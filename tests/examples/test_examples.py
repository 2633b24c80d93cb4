"""The worked examples run, and do what they claim (examples/ is not a package: loaded by path)."""

from __future__ import annotations

import importlib.util
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dmao.method import AdaptableModule, GrowthInit, components_to_units

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def tiny_lm():
    spec = importlib.util.spec_from_file_location("dmao_tiny_lm", EXAMPLES / "dmao_tiny_lm.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_the_language_is_balanced_dyck_2(tiny_lm):
    language = tiny_lm.DyckLanguage(max_brackets=12, max_depth=3)
    rng = random.Random(0)
    for _ in range(500):
        tokens, nll = language.sample(rng)
        assert tokens[0] == tiny_lm.BOS and tokens[-1] == tiny_lm.EOS
        assert len(tokens) <= language.max_len and nll > 0
        stack = []
        for t in tokens[1:-1]:
            if t in tiny_lm.OPEN:
                stack.append(t)
                assert len(stack) <= 3
            else:
                assert tiny_lm.OPEN[stack.pop()] == t
        assert not stack
    batch, best = language.batch(rng, 64)
    assert batch.shape == (64, 14) and 0 < best < torch.log(torch.tensor(4.0))


def test_dmao_on_the_tiny_lm_keeps_the_budget_and_learns(tiny_lm):
    logs: list[str] = []
    r = tiny_lm.run(steps=60, d_model=32, num_layers=2, head_dim=8, batch_size=16, log=logs.append)
    assert len(r["events"]) == 2
    for event in r["events"]:
        # The exact budget: within half of the costliest component, either side.
        delta = event["params_after"] - event["params_before"]
        assert abs(delta) <= r["max_component_cost"] // 2 + 1
        assert event["dropped"] and event["duplicated"]
    assert r["widths_after"] != r["widths_before"]
    model, optimizer = r["model"], r["optimizer"]
    in_optimizer = [p for g in optimizer.param_groups for p in g["params"]]
    assert {id(p) for p in in_optimizer} == {id(p) for p in model.parameters()}
    assert len(in_optimizer) == len(list(model.parameters()))
    losses = r["losses"]
    assert all(map(torch.isfinite, torch.tensor(losses)))
    assert sum(losses[-10:]) < 0.8 * sum(losses[:10])
    assert r["valid_loss_after"] < r["valid_loss_before"]
    text = "\n".join(logs)
    assert "per-layer widths before" in text and "per-layer widths after" in text
    assert text.count("DMAO event") == 2


@torch.no_grad()
def test_the_example_modules_implement_the_interface_exactly(tiny_lm):
    """Function-preserving duplication of one component per module leaves the logits unchanged,
    and emptying a module leaves a model that still runs (its block skips it)."""
    torch.manual_seed(0)
    model = tiny_lm.TinyLM(tiny_lm.VOCAB_SIZE, 16, d_model=32, num_layers=2, head_dim=8).eval()
    tokens = torch.randint(3, 7, (3, 16))
    reference = model(tokens)
    for m in model.adaptable_modules().values():
        assert isinstance(m, AdaptableModule)
        m.set_granularity(4)
        comps = [*range(m.num_components()), 0]
        m.reselect(
            components_to_units(torch.tensor(comps), m.units_per_component),
            GrowthInit("function_preserving"),
        )
    assert model.widths() == {"attn": [5, 5], "mlp": [160, 160]}
    torch.testing.assert_close(model(tokens), reference, atol=1e-5, rtol=0)
    mlp = model.blocks[1].mlp
    mlp.reselect(torch.zeros(0, dtype=torch.int64), GrowthInit())
    assert mlp.width == 0 and list(mlp.parameters()) == []
    assert torch.isfinite(model(tokens)).all()


def test_the_script_runs(tmp_path):
    args = ["--steps", "30", "--d-model", "16", "--layers", "2", "--head-dim", "8"]
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "dmao_tiny_lm.py"), *args, "--batch-size", "8"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "per-layer widths after" in proc.stdout and "DMAO event 2" in proc.stdout
