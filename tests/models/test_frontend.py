from __future__ import annotations

import pytest
import torch

from dmao.models.frontend import VGGFrontend, lengths_to_mask, subsampled_length


def test_subsampled_length_arithmetic():
    assert [subsampled_length(t) for t in range(1, 13)] == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3]
    lengths = torch.arange(0, 100)
    assert torch.equal(subsampled_length(lengths), (lengths // 2) // 2)


def test_lengths_to_mask():
    mask = lengths_to_mask(torch.tensor([0, 2, 3]), 3)
    assert mask.tolist() == [[False, False, False], [True, True, False], [True, True, True]]


@torch.no_grad()
def test_output_length_matches_subsampled_length_for_every_short_input():
    frontend = VGGFrontend(num_features=16, d_model=24, channels=(4, 8, 8, 4)).eval()
    for num_frames in [*range(1, 21), 37, 64, 101]:
        features = torch.randn(2, num_frames, 16)
        lengths = torch.tensor([num_frames, max(1, num_frames // 3)])
        out, out_lens = frontend(features, lengths)
        assert out.shape == (2, subsampled_length(num_frames), 24), num_frames
        assert out_lens.tolist() == [subsampled_length(int(n)) for n in lengths], num_frames
        assert torch.isfinite(out).all()


def test_shape_walk_paper_size():
    frontend = VGGFrontend(num_features=80, d_model=256)
    out, out_lens = frontend(torch.randn(3, 203, 80), torch.tensor([203, 150, 9]))
    assert out.shape == (3, 50, 256)
    assert out_lens.tolist() == [50, 37, 2]
    # 4 convolutions + the final linear over 32 channels x 80 bins (frequency is not pooled).
    assert frontend.linear.in_features == 32 * 80


@torch.no_grad()
def test_padding_does_not_leak_into_valid_frames():
    torch.manual_seed(0)
    frontend = VGGFrontend(num_features=16, d_model=32, channels=(4, 8, 8, 4)).eval()
    lengths = [13, 29, 6, 40]
    utterances = [torch.randn(n, 16) for n in lengths]
    # Padding filled with garbage: the mask, not the collator's zeros, must keep it out.
    batch = torch.full((len(lengths), max(lengths) + 7, 16), 50.0)
    for i, u in enumerate(utterances):
        batch[i, : len(u)] = u
    out, out_lens = frontend(batch, torch.tensor(lengths))
    for i, u in enumerate(utterances):
        alone, alone_len = frontend(u[None], torch.tensor([len(u)]))
        n = int(out_lens[i])
        assert n == int(alone_len[0]) == alone.shape[1]
        torch.testing.assert_close(out[i, :n], alone[0], atol=1e-5, rtol=1e-5)


def test_rejects_wrong_feature_dim():
    with pytest.raises(ValueError, match=r"expects features \(B, T, 80\), got \(2, 10, 40\)"):
        VGGFrontend()(torch.randn(2, 10, 40), torch.tensor([10, 10]))
