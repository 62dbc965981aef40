from __future__ import annotations

import math

import numpy as np
import pytest

from vla_tokenizers.numbers import NumberCodec, NumberError


def test_integers_are_exact():
    c = NumberCodec()
    values = [0, 1, -1, 1023, 1024, -5000, 1024**2 + 7, 1024**4 - 1]
    ids = [t for v in values for t in c.encode_int(v)]
    assert all(0 <= t < c.size for t in ids)
    assert c.decode(ids) == values
    assert len(c.encode_int(5)) == 1
    with pytest.raises(NumberError, match="too large"):
        c.encode_int(1024**4)


def test_floats_within_relative_precision_and_directed_rounding():
    c = NumberCodec(digits=3)
    rng = np.random.default_rng(0)
    xs = np.concatenate(
        [rng.normal(size=200) * 10.0 ** rng.integers(-8, 9, 200), [0.0, 9.995, -9.996]]
    )
    for x in xs:
        (y,) = c.decode(c.encode_float(float(x)))
        assert abs(y - x) <= 0.005 * abs(x) + 1e-300
        assert c.round_float(x, "floor") <= x <= c.round_float(x, "ceil")
    assert c.decode(c.encode_float(1e-30)) == [0.0]
    with pytest.raises(NumberError):
        c.encode_float(1e30)
    with pytest.raises(NumberError):
        c.encode_float(math.nan)
