from __future__ import annotations

import numpy as np
import pytest
import torch

from dmao.data.statistics import feature_statistics
from dmao.models.normalization import GlobalFeatureNorm


def test_statistics_match_numpy_and_normalise(tiny_cuts):
    cuts = tiny_cuts["train"]
    mean, std = feature_statistics(cuts, max_cuts=10)
    feats = np.concatenate([c.load_features() for c in cuts.subset(first=10)]).astype(np.float64)
    np.testing.assert_allclose(mean.numpy(), feats.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(std.numpy(), feats.std(0), rtol=1e-4, atol=1e-4)

    norm = GlobalFeatureNorm(80)
    norm.set_statistics(mean, std)
    out = norm(torch.from_numpy(feats).float()[None])[0]
    assert out.mean(0).abs().max() < 1e-3
    assert (out.std(0, unbiased=False) - 1).abs().max() < 1e-3
    assert set(norm.state_dict()) == {"mean", "inv_std"}  # travels with checkpoints


def test_bad_statistics_shape_is_an_error():
    with pytest.raises(ValueError, match=r"shape \(80,\)"):
        GlobalFeatureNorm(80).set_statistics(torch.zeros(40), torch.ones(40))
