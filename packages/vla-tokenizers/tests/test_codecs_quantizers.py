"""Quantizers: shapes, straight-through gradients, EMA updates, dead-code restarts, FSQ ids, RVQ."""

from __future__ import annotations

import pytest
import torch

from vla_tokenizers.codecs.quantizers import (
    FSQ,
    ResidualVQ,
    VectorQuantizerEMA,
    make_quantizer,
)

torch.set_num_threads(1)


@pytest.mark.parametrize(
    ("kind", "dim", "depth", "size"),
    [("vq", 6, 1, 32), ("rvq", 6, 3, 32), ("fsq", 4, 1, 8 * 5 * 5 * 5)],
)
def test_interface_shapes_and_straight_through(kind, dim, depth, size):
    torch.manual_seed(0)
    q = make_quantizer(kind, dim=dim, codebook_size=32, levels=3, fsq_levels=(8, 5, 5, 5))
    assert (q.depth, q.codebook_size, q.vocab_size) == (depth, size, depth * size)
    z = torch.randn(2, dim, 3, 4, 5, requires_grad=True)
    out = q(z)
    assert out.latents.shape == z.shape
    assert out.codes.shape == (2, 3, 4, 5, depth) and out.codes.dtype == torch.int64
    assert int(out.codes.min()) >= 0 and int(out.codes.max()) < size
    # decode(codes) is the forward value of the straight-through latents
    q.eval()
    out = q(z)
    torch.testing.assert_close(q.decode(out.codes), out.latents.detach(), atol=1e-5, rtol=0)
    (out.latents * 3).sum().backward()
    if kind == "fsq":  # gradient flows through the tanh bound (rounding is straight-through)
        assert bool((z.grad > 0).all())
    else:  # VQ: the straight-through estimator passes the gradient unchanged
        torch.testing.assert_close(z.grad, torch.full_like(z, 3.0))
    assert set(out.losses) == ({"commitment"} if kind != "fsq" else set())


def test_vq_commitment_loss_value_and_gradient():
    torch.manual_seed(0)
    vq = VectorQuantizerEMA(3, 4, beta=0.5, data_init=False).eval()
    z = torch.randn(5, 3, requires_grad=True)
    out = vq(z)
    q = vq.embed[out.codes[:, 0]]
    expected = 0.5 * ((z.detach() - q) ** 2).mean()
    torch.testing.assert_close(out.losses["commitment"], expected)


def test_vq_codes_are_nearest_codebook_vectors():
    vq = VectorQuantizerEMA(2, 3, data_init=False).eval()
    vq.embed.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]))
    z = torch.tensor([[1.0, 1.0], [9.0, 1.0], [1.0, 8.0], [6.0, 0.0]])
    assert vq(z).codes[:, 0].tolist() == [0, 1, 2, 1]


def test_vq_ema_moves_codebook_to_cluster_means():
    torch.manual_seed(0)
    vq = VectorQuantizerEMA(2, 2, decay=0.8, data_init=False, dead_threshold=0.0)
    vq.embed.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
    vq.ema_sum.copy_(vq.embed)
    centers = torch.tensor([[3.0, 2.0], [-2.0, -4.0]])
    for _ in range(60):
        z = torch.cat(
            [centers[0] + 0.01 * torch.randn(64, 2), centers[1] + 0.01 * torch.randn(64, 2)]
        )
        vq(z)
    torch.testing.assert_close(vq.embed, centers, atol=0.05, rtol=0)
    torch.testing.assert_close(vq.usage, torch.tensor([0.5, 0.5]), atol=0.01, rtol=0)
    # eval mode leaves the codebook alone
    vq.eval()
    before = vq.embed.clone()
    vq(torch.randn(10, 2) * 50)
    assert torch.equal(vq.embed, before)


def test_vq_dead_code_is_restarted_at_an_encoder_output():
    torch.manual_seed(0)
    vq = VectorQuantizerEMA(2, 4, decay=0.5, data_init=False, dead_threshold=1e-3)
    vq.embed.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [-1.0, 1.0], [500.0, 500.0]]))
    vq.ema_sum.copy_(vq.embed)
    data = torch.randn(256, 2)
    for _ in range(30):
        vq(data)
        if int(vq.restarts):
            break
    assert int(vq.restarts) >= 1
    # the far-away code now sits on (one of) the encoder outputs
    dist = torch.cdist(vq.embed[3:4], data).min()
    assert float(dist) < 1.0
    assert float(vq.embed[3].abs().max()) < 10


def test_vq_without_restarts_keeps_the_dead_code():
    vq = VectorQuantizerEMA(2, 4, decay=0.5, data_init=False, dead_threshold=0.0)
    vq.embed.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [-1.0, 1.0], [500.0, 500.0]]))
    vq.ema_sum.copy_(vq.embed)
    for _ in range(30):
        vq(torch.randn(64, 2))
    assert int(vq.restarts) == 0


def test_vq_data_init_uses_first_batch():
    torch.manual_seed(0)
    vq = VectorQuantizerEMA(3, 8)
    assert not bool(vq.initialized)
    z = torch.randn(100, 3) + 20
    vq(z)
    assert bool(vq.initialized)
    assert float(torch.cdist(vq.embed, z).min(1).values.max()) < 0.1


def test_fsq_id_round_trip_over_the_whole_codebook():
    fsq = FSQ([8, 5, 3, 2])
    ids = torch.arange(fsq.codebook_size).reshape(1, -1, 1)
    latents = fsq.decode(ids)  # (1, 4, N)
    assert latents.shape == (1, 4, fsq.codebook_size)
    assert torch.equal(fsq.codes_from_latents(latents), ids)
    # quantizing random latents: decode(codes) reproduces the quantized latents
    out = fsq(torch.randn(3, 4, 50) * 3)
    torch.testing.assert_close(fsq.decode(out.codes), out.latents)
    assert torch.equal(fsq.codes_from_latents(out.latents), out.codes)
    digits = fsq.codes_to_digits(ids[0, :, 0])
    assert torch.equal(fsq.digits_to_codes(digits), ids[0, :, 0])
    # mixed radix: channel 0 is the least significant digit
    assert fsq.codes_to_digits(torch.tensor([1, 8, 40]))[:, :3].tolist() == [
        [1, 0, 0],
        [0, 1, 0],
        [0, 0, 1],
    ]
    assert torch.unique(latents[0], dim=1).shape[1] == fsq.codebook_size


def test_fsq_levels_are_validated():
    with pytest.raises(ValueError, match="levels"):
        FSQ([8, 1])
    with pytest.raises(ValueError, match="dim"):
        make_quantizer("fsq", dim=3, fsq_levels=(8, 8))
    with pytest.raises(ValueError, match="unknown quantizer"):
        make_quantizer("pq", dim=3)


def test_decode_rejects_out_of_range_codes():
    vq = VectorQuantizerEMA(2, 4)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        vq.decode(torch.tensor([[4]]))
    with pytest.raises(ValueError, match="integer"):
        vq.decode(torch.tensor([[0.5]]))


def test_rvq_error_decreases_with_levels():
    torch.manual_seed(0)
    rvq = ResidualVQ(4, 16, levels=4, decay=0.8)
    data = torch.randn(512, 4)
    for _ in range(25):
        rvq(data)
    rvq.eval()
    errors = []
    for k in range(1, 5):
        out = rvq(data, levels=k)
        assert out.codes.shape == (512, k)
        torch.testing.assert_close(rvq.decode(out.codes), out.latents, atol=1e-5, rtol=0)
        errors.append(float(((out.latents - data) ** 2).mean()))
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 0.5 * errors[0]
    # decoding a prefix of the full codes equals quantizing with that many levels
    full = rvq(data).codes
    torch.testing.assert_close(rvq.decode(full[:, :2]), rvq(data, levels=2).latents)


def test_codes_and_ssim_ignore_bf16_autocast():
    from vla_tokenizers.codecs.ssim import ssim

    torch.manual_seed(0)
    vq = VectorQuantizerEMA(8, 256, data_init=False).eval()
    z = torch.randn(4, 8, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        codes_amp = vq(z).codes
        s_amp = ssim(torch.rand(1, 3, 16, 16) * 0 + 0.5, torch.full((1, 3, 16, 16), 0.5))
    assert torch.equal(codes_amp, vq(z).codes)
    assert s_amp.dtype == torch.float32 and float(s_amp) == pytest.approx(1.0, abs=1e-6)
