from __future__ import annotations

import numpy as np
import pytest

from vla_tokenizers import TokenizerBundle
from vla_tokenizers.actions import ActionError, dct_matrix, fit_action_stats, roundtrip_error
from vla_tokenizers.testing import ACTION_DIMS, drives


def test_bounds_are_fitted_percentiles():
    streams = drives()
    stats = fit_action_stats(streams, bins=256)
    allv = np.concatenate([v for v, _ in streams])
    for j, d in enumerate(ACTION_DIMS):
        lo, hi = np.percentile(allv[:, j], [1, 99])
        assert stats.dims[d].lo == pytest.approx(lo) and stats.dims[d].hi == pytest.approx(hi)
    assert stats.spaces == [ACTION_DIMS]


def test_uniform_bins_round_trip_within_one_bin(bundle):
    values, dims = drives(n=1, steps=200, seed=7)[0]
    bins = bundle.actions.encode(values, dims)
    assert bins.shape == values.shape and bins.min() >= 0 and bins.max() < 256
    decoded = bundle.actions.decode(bins, dims)
    rt = roundtrip_error(bundle.action_stats, values, decoded, dims)
    width = np.array(rt.bin_width)
    assert (np.array(rt.max_abs_inside) <= width / 2 + 1e-12).all()  # half a bin inside bounds
    lo, hi = bundle.action_stats.bounds(dims)
    inside = (values >= lo) & (values <= hi)
    assert (np.abs(values - decoded)[inside] <= np.broadcast_to(width, values.shape)[inside]).all()
    report = rt.to_json()
    assert set(report) == set(dims) and "clipped_fraction" in report["speed"]


def test_fast_round_trip_within_its_bound_and_compresses(bundle):
    fast = bundle.fast
    assert fast is not None
    for values, dims in drives(n=3, steps=57, seed=3):  # 57: last chunk is padded
        ids = fast.encode(values, dims)
        assert all(0 <= i < bundle.layout.range("action_fast").size for i in ids)
        assert len(ids) < values.size  # BPE over DCT coefficients compresses
        decoded = fast.decode(ids, dims, len(values))
        assert decoded.shape == values.shape
        lo, hi = bundle.action_stats.bounds(dims)
        inside = ((values >= lo) & (values <= hi)).all(axis=1)
        err = np.abs(values - decoded)[inside]
        assert (err <= fast.error_bound(dims) + 1e-9).all()


def test_dct_is_orthonormal():
    d = dct_matrix(10)
    assert np.allclose(d @ d.T, np.eye(10))


def test_stats_survive_the_bundle(bundle, bundle_dir):
    loaded = TokenizerBundle.load(bundle_dir)
    assert loaded.stats.actions == bundle.stats.actions
    values, dims = drives(n=1, seed=5)[0]
    assert loaded.fast.encode(values, dims) == bundle.fast.encode(values, dims)


def test_unknown_dimensions_are_refused(bundle):
    with pytest.raises(ActionError, match=r"\['yaw'\] have no fitted statistics"):
        bundle.actions.encode(np.zeros((3, 2)), ["steering", "yaw"])
    with pytest.raises(ActionError, match="was not fitted"):
        bundle.actions.encode(np.zeros((3, 2)), ["speed", "steering"])
