from __future__ import annotations

import pytest
import torch

from dmao.models.accounting import count_parameters
from dmao.models.conformer import ConformerCTC
from dmao.models.registry import build_model, list_models, register_model

# The paper's Conformer-CTC sizes (METHOD.md §6), with a phoneme output layer: the reference
# recipes predict ~79 phoneme labels + blank, hence vocab_size=80. The output layer is
# d * 80 + 80 parameters (20 k-41 k), well inside the 2 % tolerance either way.
PAPER_PARAMS = {
    "conformer_ctc_d256": 19.0e6,
    "conformer_ctc_d384": 42.1e6,
    "conformer_ctc_d512": 74.2e6,
}


def test_list_models():
    assert {"conformer_ctc", *PAPER_PARAMS} <= set(list_models())
    assert list_models() == sorted(list_models())


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS))
def test_preset_parameter_counts_match_the_paper(name):
    # Built on the meta device: shapes only, no memory and no initialisation time.
    with torch.device("meta"):
        model = build_model(name, vocab_size=80)
    report = count_parameters(model)
    assert report.total == pytest.approx(PAPER_PARAMS[name], rel=0.02)
    assert model.architecture.num_layers == 12


def test_build_with_overrides_runs():
    model = build_model("conformer_ctc_d256", vocab_size=10, d_model=64, num_layers=2)
    assert isinstance(model, ConformerCTC) and model.d_model == 64
    log_probs, out_lens = model(torch.randn(2, 16, 80), torch.tensor([16, 9]))
    assert log_probs.shape == (2, 4, 10) and out_lens.tolist() == [4, 2]


def test_errors_name_the_model_and_the_choices():
    with pytest.raises(ValueError, match=r"unknown model 'conformer'; known models: conformer_ctc"):
        build_model("conformer", vocab_size=10)
    with pytest.raises(
        TypeError, match=r"model 'conformer_ctc'.*d_modle.*valid arguments: vocab_size"
    ):
        build_model("conformer_ctc", vocab_size=10, d_modle=64)
    with pytest.raises(TypeError, match=r"model 'conformer_ctc_d256'.*vocab_size"):
        build_model("conformer_ctc_d256")
    with pytest.raises(ValueError, match="already registered"):
        register_model("conformer_ctc", ConformerCTC)
    with pytest.raises(TypeError, match="model 'typo_preset'"):
        register_model("typo_preset", ConformerCTC, layers=3)
    assert "typo_preset" not in list_models()
