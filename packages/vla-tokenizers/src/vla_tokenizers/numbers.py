"""Quantised numbers as tokens (the `number` range), shared by X3D fields, mesh bounds and headers.

Local token layout (offsets inside the range)::

    0                     NEG            sign of the next number
    1 .. M                INT_0..INT_{M-1}   small non-negative integers, exact (M = int_max)
    M+1 .. M+3            WIDE_2..WIDE_4     a wider integer follows as 2..4 base-M digits
    then 2E+1             EXP_-E..EXP_+E     decimal exponent of a float
    then 10**D            MANT_0..MANT_{10**D-1}   D significant digits of a float

An integer is `[NEG] INT_v` or `[NEG] WIDE_n INT_d1 .. INT_dn` (exact up to M**4). A float is
`[NEG] EXP_e MANT_m` with value `m * 10**(e - D + 1)` and `10**(D-1) <= m < 10**D` (zero is
`EXP_0 MANT_0`), so its relative error is at most `0.5 * 10**(1-D)`; magnitudes below
`10**-E` become zero and above `10**(E+1)` are refused.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


class NumberError(ValueError):
    pass


@dataclass(frozen=True)
class NumberCodec:
    int_max: int = 1024
    digits: int = 3
    exp_range: int = 12

    @property
    def size(self) -> int:
        return 1 + self.int_max + 3 + (2 * self.exp_range + 1) + 10**self.digits

    # local offsets
    @property
    def _int0(self) -> int:
        return 1

    @property
    def _wide0(self) -> int:
        return 1 + self.int_max  # WIDE_2

    @property
    def _exp0(self) -> int:
        return self._wide0 + 3  # EXP_-E

    @property
    def _mant0(self) -> int:
        return self._exp0 + 2 * self.exp_range + 1

    def encode_int(self, value: int) -> list[int]:
        out = [0] if value < 0 else []
        a = abs(int(value))
        if a < self.int_max:
            return out + [self._int0 + a]
        digits = []
        while a:
            digits.append(a % self.int_max)
            a //= self.int_max
        if len(digits) > 4:
            raise NumberError(f"integer {value} is too large (max {self.int_max**4 - 1})")
        return out + [self._wide0 + len(digits) - 2] + [self._int0 + d for d in reversed(digits)]

    def quantize_float(self, value: float, mode: str = "nearest") -> tuple[int, int, int]:
        """(sign, exponent, mantissa) of `value`; mode rounds to nearest, `floor` or `ceil`."""
        if not math.isfinite(value):
            raise NumberError(f"cannot encode non-finite number {value}")
        sign = -1 if value < 0 or (value == 0 and math.copysign(1, value) < 0) else 1
        a = abs(value)
        d = self.digits
        if a == 0:
            return 1, 0, 0
        e = math.floor(math.log10(a))
        scaled = a / 10.0 ** (e - d + 1)
        # rounding direction on the magnitude
        if mode == "nearest":
            m = round(scaled)
        elif (mode == "floor") == (sign > 0):
            m = math.floor(scaled + 1e-9)
        else:
            m = math.ceil(scaled - 1e-9)
        if m >= 10**d:
            m //= 10
            e += 1
        elif m < 10 ** (d - 1):  # floor of a value just under a power of ten
            if m == 0:
                return 1, 0, 0
            m *= 10
            e -= 1
        if e > self.exp_range:
            raise NumberError(f"number {value} is too large (max exponent {self.exp_range})")
        if e < -self.exp_range:
            if mode == "ceil" and sign > 0:
                return 1, -self.exp_range, 10 ** (d - 1)
            if mode == "floor" and sign < 0:
                return -1, -self.exp_range, 10 ** (d - 1)
            return 1, 0, 0
        return sign, e, m

    def float_value(self, sign: int, e: int, m: int) -> float:
        return sign * m * 10.0 ** (e - self.digits + 1) if m else 0.0

    def encode_float(self, value: float, mode: str = "nearest") -> list[int]:
        sign, e, m = self.quantize_float(value, mode)
        out = [0] if sign < 0 else []
        return out + [self._exp0 + e + self.exp_range, self._mant0 + m]

    def round_float(self, value: float, mode: str = "nearest") -> float:
        """The value `encode_float(value, mode)` decodes to."""
        return self.float_value(*self.quantize_float(value, mode))

    def format_float(self, value: float) -> str:
        text = f"{value:.{self.digits}g}"
        return text

    def decode(self, local: Sequence[int]) -> list[int | float]:
        """Numbers from a run of local ids (ints come back as int, floats as float)."""
        return [v for v, _ in self.iter_decode(local)]

    def iter_decode(self, local: Sequence[int]) -> Iterator[tuple[int | float, int]]:
        """Yield (number, tokens used) for a run of local ids; raises on a malformed run."""
        i, n = 0, len(local)
        while i < n:
            start = i
            sign = 1
            if local[i] == 0:
                sign, i = -1, i + 1
                if i >= n:
                    raise NumberError("NEG at the end of a number run")
            t = local[i]
            if self._int0 <= t < self._wide0:
                yield sign * (t - self._int0), i + 1 - start
                i += 1
            elif self._wide0 <= t < self._exp0:
                width = t - self._wide0 + 2
                ds = local[i + 1 : i + 1 + width]
                if len(ds) != width or not all(self._int0 <= x < self._wide0 for x in ds):
                    raise NumberError("WIDE integer without its digits")
                v = 0
                for x in ds:
                    v = v * self.int_max + (x - self._int0)
                yield sign * v, i + 1 + width - start
                i += 1 + width
            elif self._exp0 <= t < self._mant0:
                if i + 1 >= n or not (self._mant0 <= local[i + 1] < self.size):
                    raise NumberError("EXP without its mantissa")
                e = t - self._exp0 - self.exp_range
                m = local[i + 1] - self._mant0
                yield self.float_value(sign, e, m), i + 2 - start
                i += 2
            else:
                raise NumberError(f"token {t} of the number range cannot start a number")

    def token_name(self, local: int) -> str:
        if local == 0:
            return "NEG"
        if local < self._wide0:
            return f"INT_{local - self._int0}"
        if local < self._exp0:
            return f"WIDE_{local - self._wide0 + 2}"
        if local < self._mant0:
            return f"EXP_{local - self._exp0 - self.exp_range}"
        return f"MANT_{local - self._mant0}"
