"""`dmao compare --share-prefix`: systems that part only at their first event train the steps
before it once, and every one of them ends exactly where it would have ended alone."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import tiny_train_overrides

from dmao.config import load_config
from dmao.experiments import Variant, comparison_status, run_comparison
from dmao.experiments.jobs import train_if_needed
from dmao.experiments.sharing import plan_shared_prefixes, sharing_hint
from dmao.method.config import DmaoConfig
from dmao.method.prefix import event_time_differences, last_shared_step
from dmao.training.checkpoint import CheckpointError, load_checkpoint
from dmao.training.metrics import read_metrics
from dmao.training.recipe import TrainingRecipe

_TIMES = {"time", "utts_per_s", "audio_s_per_s", "seconds"}


def test_last_shared_step_stops_before_the_first_event_and_the_gradmax_window():
    one = DmaoConfig(enabled=True, last_event_fraction=0.5, num_events=2)
    assert last_shared_step(one, 1000) == 249  # first event after 250 updates
    gradmax = DmaoConfig(enabled=True, last_event_fraction=0.5, num_events=2,
                         growth_init="gradmax", growth_gradmax_steps=20)  # fmt: skip
    assert last_shared_step(gradmax, 1000) == 229
    assert last_shared_step(DmaoConfig(enabled=False), 1000) == 0


def test_only_event_time_settings_may_differ_and_only_before_the_first_event():
    base = DmaoConfig(enabled=True, last_event_fraction=0.5)
    other = DmaoConfig(enabled=True, last_event_fraction=0.5, rewarmup_steps=100,
                       total_fraction=0.2, budget_unit="macs")  # fmt: skip
    assert event_time_differences(base, other, 400, 1000) == [
        "total_fraction", "rewarmup_steps", "budget_unit",
    ]  # fmt: skip
    assert event_time_differences(base, other, 500, 1000) == []  # at the event: too late
    metric = DmaoConfig(enabled=True, last_event_fraction=0.5, metric="magnitude")
    assert event_time_differences(base, metric, 10, 1000) == []  # the scores differ from step 0


def test_a_comparison_without_share_prefix_is_told_what_it_would_save(tmp_path):
    def run(system: str, *extra: str):
        config = load_config(None, ["dmao.enabled=true", "train.max_steps=1000",
                                    "train.valid_every_steps=100",
                                    "train.checkpoint_every_steps=100", *extra])  # fmt: skip
        return (f"{system}/seed0", config, tmp_path / system / "seed0")

    runs = [run("dmao"), run("rw", "dmao.rewarmup_steps=10"), run("late", "dmao.num_events=2")]
    # dmao and rw part at their first event (after 150 updates); late has two events (a
    # schedule setting), so it parts from them at step 0.
    assert sharing_hint(runs, tmp_path) == (
        "--share-prefix would train 100 steps fewer (dmao/seed0, rw/seed0 share 100)"
    )
    assert sharing_hint(runs[1:], tmp_path) is None
    # The shared step lies on the checkpoint grid too: a run alone updates best.pt only when it
    # saves, so the prefix must end where it would have saved.
    coarse = [run(name, *extra, "train.checkpoint_every_steps=300") for name, extra in
              (("dmao", ()), ("rw", ("dmao.rewarmup_steps=10",)))]  # fmt: skip
    assert sharing_hint(coarse, tmp_path) is None  # 300 > 149
    later = [run(name, *extra, "dmao.last_event_fraction=0.8", "train.checkpoint_every_steps=300")
             for name, extra in (("dmao", ()), ("rw", ("dmao.rewarmup_steps=10",)))]  # fmt: skip
    assert plan_shared_prefixes(later, tmp_path)[0].step == 600  # before 800; not 700


def _tiny(tiny_corpus, tmp_path):
    return [
        *tiny_train_overrides(tiny_corpus.root, tmp_path / "manifests"),
        "train.max_steps=12",
        "train.valid_every_steps=3",
        "train.log_every_steps=3",
        "train.checkpoint_every_steps=3",
        "dmao.score_every_steps=2",
        "dmao.last_event_fraction=0.75",  # the event after 9 updates
        "dmao.total_fraction=0.25",
    ]


def _strip_times(records):
    return [{k: v for k, v in r.items() if k not in _TIMES} for r in records]


def test_shared_prefix_runs_end_bit_identical_to_runs_trained_alone(tiny_corpus, tmp_path):
    overrides = _tiny(tiny_corpus, tmp_path)
    gradmax = Variant("gm", ("dmao.growth_init=gradmax", "dmao.growth_gradmax_steps=2"))
    rewarm = Variant("rw", ("dmao.rewarmup_steps=2", "dmao.budget_unit=macs"))
    out = tmp_path / "cmp"
    # Two at a time: the members start (in their own processes) once the prefix has finished,
    # the baseline trains beside it. One thread per run, here and alone, for equal arithmetic.
    overrides.append("train.num_threads=1")
    options = {"seeds": [0], "overrides": overrides, "variants": [gradmax, rewarm],
               "search_retrain": True, "share_prefix": True, "jobs": 2}  # fmt: skip

    # Shared: the updates before GradMax's window (2 updates before the event after 9), on the
    # validation grid: 6 steps, trained once for dmao, gm, rw and the search phase.
    status_options = {k: v for k, v in options.items() if k != "jobs"}
    before = {s.run.label: s.state for s in comparison_status(None, None, out, **status_options)}
    assert before["prefix-dmao-6/seed0"] == "not started"
    for member in ("dmao/seed0", "gm/seed0", "rw/seed0", "search-phase/seed0"):
        assert before[member] == "starts from prefix-dmao-6/seed0 at step 6"
    assert before["baseline/seed0"] == "not started"  # DMAO off: shares nothing

    run_comparison(None, None, out, **options)
    prefix = json.loads((out / "prefix-dmao-6" / "seed0" / "train_summary.json").read_text())
    assert prefix["steps"] == 6
    for system in ("dmao", "gm", "rw", "search-phase"):
        record = json.loads((out / system / "seed0" / "shared_prefix.json").read_text())
        assert record["step"] == 6 and record["label"] == "prefix-dmao-6/seed0"

    # Each variant trained alone, from step 0: the same weights, losses, dev WERs and event.
    for variant in (gradmax, rewarm):
        config = load_config(None, [*overrides, "dmao.enabled=true", *variant.overrides,
                                    "train.seed=0"])  # fmt: skip
        alone = tmp_path / f"alone-{variant.name}"
        train_if_needed(config, alone)
        shared = out / variant.name / "seed0"
        a = load_checkpoint(alone / "checkpoints" / "step-00000012.pt")
        b = load_checkpoint(shared / "checkpoints" / "step-00000012.pt")
        assert a["architecture"] == b["architecture"]
        assert (
            a["architecture"]
            != load_checkpoint(
                out / "prefix-dmao-6" / "seed0" / "checkpoints" / "step-00000006.pt"
            )["architecture"]
        )  # the event moved widths after the shared steps
        for name, tensor in a["model"].items():
            assert torch.equal(tensor, b["model"][name]), (variant.name, name)
        for kind in ("train", "valid", "dmao_event"):
            assert _strip_times(read_metrics(alone, kind)) == _strip_times(
                read_metrics(shared, kind)
            ), (variant.name, kind)
        assert a["best_dev_wer"] == b["best_dev_wer"]

    # Re-running trains nothing and forks nothing again.
    after = {s.run.label: s.state for s in comparison_status(None, None, out, **status_options)}
    assert all(state.startswith("done") for state in after.values()), after


def test_resume_refuses_other_settings_after_the_shared_steps(tiny_corpus, tmp_path):
    overrides = _tiny(tiny_corpus, tmp_path)
    run = tmp_path / "run"
    config = load_config(None, [*overrides, "dmao.enabled=true", "train.stop_at_step=9"])
    train_if_needed(config, run)  # checkpoints at 3, 6, 9: the event is after update 9

    def resume_with(change: str, keep: int) -> None:
        copy = tmp_path / f"copy-{keep}-{change}"
        shutil.copytree(run, copy)
        for path in (copy / "checkpoints").glob("step-*.pt"):
            if int(path.stem.split("-")[1]) > keep:
                path.unlink()
        changed = load_config(None, [*overrides, "dmao.enabled=true", change])
        recipe = TrainingRecipe(changed, copy, resume=True)
        try:
            recipe.setup()
            assert recipe.progress.step == keep
        finally:
            recipe.cleanup()

    resume_with("dmao.rewarmup_steps=2", keep=6)  # before the event: accepted
    with pytest.raises(CheckpointError, match="dmao"):
        resume_with("dmao.rewarmup_steps=2", keep=9)  # written after the event
    with pytest.raises(CheckpointError, match="dmao"):
        resume_with("dmao.metric=magnitude", keep=6)  # shapes the scores from step 0
