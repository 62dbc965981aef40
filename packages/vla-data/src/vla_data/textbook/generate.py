"""Textbook-style lessons in English and Chinese with worked problems whose answers are computed.

Each problem draws its numbers from a seeded generator, computes the answer in Python, and writes
the worked step as ``<expression> = <rounded answer> <unit>`` — the form `check_equations`
verifies, so a generated lesson checks clean and any corruption of a number is caught.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vla_data.textbook.check import check_equations, evaluate

LANGS = ("en", "zh")


@dataclass(frozen=True)
class Problem:
    """A worked problem: its text, the expression it works, the answer and its unit."""

    subject: str
    text: str
    expression: str
    answer: float
    unit: str


def _fmt(x: float, decimals: int) -> str:
    return f"{x:.{decimals}f}" if decimals else str(round(x))


def _problem(subject, lang, rng, decimals, expr, unit, en, zh) -> Problem:
    """Fill templates ``en``/``zh`` (``{expr}``, ``{ans}``, ``{unit}`` + the numbers)."""
    answer = evaluate(expr)
    ans = _fmt(answer, decimals)
    template = en if lang == "en" else zh
    unit_text = unit[0] if lang == "en" else unit[1]
    text = template.format(expr=expr, ans=ans, unit=unit_text)
    return Problem(subject, text, expr, float(ans), unit_text)


def _pencils(lang: str, rng: np.random.Generator) -> Problem:
    boxes, per, sold = int(rng.integers(3, 30)), int(rng.integers(6, 48)), 0
    sold = int(rng.integers(1, boxes * per))
    return _problem(
        "arithmetic",
        lang,
        rng,
        0,
        f"{boxes} × {per} − {sold}",
        ("pencils", "支"),
        f"A school shop has {boxes} boxes of {per} pencils and sells {sold} of them. How many are left? "
        "Solution: {expr} = {ans} {unit}.",
        f"学校小卖部有 {boxes} 盒铅笔，每盒 {per} 支，卖出了 {sold} 支。还剩多少支？"
        "解：{expr} = {ans} {unit}。",
    )


def _shopping(lang: str, rng: np.random.Generator) -> Problem:
    a, b, price = int(rng.integers(2, 20)), int(rng.integers(2, 20)), rng.integers(5, 200) / 10
    return _problem(
        "arithmetic",
        lang,
        rng,
        2,
        f"({a} + {b}) × {price:.1f}",
        ("yuan", "元"),
        f"Li buys {a} notebooks on Monday and {b} on Friday at {price:.1f} yuan each. What does he "
        f"pay in total? Solution: ({a} + {b}) notebooks times the price, "
        "{expr} = {ans} {unit}.",
        f"小李星期一买了 {a} 本笔记本，星期五又买了 {b} 本，每本 {price:.1f} 元。一共要付多少钱？"
        "解：{expr} = {ans} {unit}。",
    )


def _speed(lang: str, rng: np.random.Generator) -> Problem:
    kmh = int(rng.integers(18, 130))
    return _problem(
        "units",
        lang,
        rng,
        2,
        f"{kmh} × 1000 ÷ 3600",
        ("m/s", "米/秒"),
        f"Convert {kmh} km/h to metres per second. One kilometre is 1000 m and one hour is 3600 s, "
        "so {expr} = {ans} {unit}.",
        f"把 {kmh} 千米/时换算成米/秒。1 千米等于 1000 米，1 小时等于 3600 秒，"
        "所以 {expr} = {ans} {unit}。",
    )


def _temperature(lang: str, rng: np.random.Generator) -> Problem:
    c = int(rng.integers(-30, 45))
    expr = f"{c} × 9 ÷ 5 + 32" if c >= 0 else f"(0 − {-c}) × 9 ÷ 5 + 32"
    return _problem(
        "units",
        lang,
        rng,
        1,
        expr,
        ("°F", "华氏度"),
        f"Convert {c} °C to Fahrenheit with F = C × 9 ÷ 5 + 32: {{expr}} = {{ans}} {{unit}}.",
        f"把 {c} 摄氏度换算成华氏度，公式是 F = C × 9 ÷ 5 + 32：{{expr}} = {{ans}} {{unit}}。",
    )


def _energy(lang: str, rng: np.random.Generator) -> Problem:
    kwh = int(rng.integers(2, 400))
    return _problem(
        "units",
        lang,
        rng,
        1,
        f"{kwh} × 3.6",
        ("MJ", "兆焦"),
        f"A household uses {kwh} kWh in a month. One kilowatt-hour is 3.6 megajoules, so the energy "
        "is {expr} = {ans} {unit}.",
        f"一户人家一个月用电 {kwh} 千瓦时。1 千瓦时等于 3.6 兆焦，所以能量是 {{expr}} = {{ans}} {{unit}}。",
    )


def _free_fall(lang: str, rng: np.random.Generator) -> Problem:
    t = int(rng.integers(1, 9))
    return _problem(
        "physics",
        lang,
        rng,
        1,
        f"0.5 × 9.81 × {t}²",
        ("m", "米"),
        f"A stone is dropped from rest and falls for {t} s. Ignoring air resistance, d = ½ g t² "
        "with g = 9.81 m/s², so d = {expr} = {ans} {unit}.",
        f"一块石头从静止开始下落 {t} 秒。忽略空气阻力，d = ½ g t²，g = 9.81 米/秒²，"
        "所以 d = {expr} = {ans} {unit}。",
    )


def _acceleration(lang: str, rng: np.random.Generator) -> Problem:
    u, a, t = int(rng.integers(0, 20)), int(rng.integers(1, 6)), int(rng.integers(2, 12))
    return _problem(
        "physics",
        lang,
        rng,
        0,
        f"{u} + {a} × {t}",
        ("m/s", "米/秒"),
        f"A cart moving at {u} m/s accelerates at {a} m/s² for {t} s. Its final speed is "
        "v = u + a t = {expr} = {ans} {unit}.",
        f"一辆小车以 {u} 米/秒的速度运动，以 {a} 米/秒² 的加速度加速 {t} 秒。末速度 "
        "v = u + a t = {expr} = {ans} {unit}。",
    )


def _kinetic(lang: str, rng: np.random.Generator) -> Problem:
    m, v = int(rng.integers(1, 1500)), int(rng.integers(1, 30))
    return _problem(
        "physics",
        lang,
        rng,
        1,
        f"0.5 × {m} × {v}²",
        ("J", "焦"),
        f"A body of mass {m} kg moves at {v} m/s. Its kinetic energy is E = ½ m v² = "
        "{expr} = {ans} {unit}.",
        f"质量为 {m} 千克的物体以 {v} 米/秒运动，动能 E = ½ m v² = {{expr}} = {{ans}} {{unit}}。",
    )


def _ohm(lang: str, rng: np.random.Generator) -> Problem:
    i, r = rng.integers(1, 50) / 10, int(rng.integers(2, 500))
    return _problem(
        "physics",
        lang,
        rng,
        1,
        f"{i:.1f} × {r}",
        ("V", "伏"),
        f"A current of {i:.1f} A flows through a {r} Ω resistor. By Ohm's law U = I R = "
        "{expr} = {ans} {unit}.",
        f"{i:.1f} 安的电流通过 {r} 欧的电阻。根据欧姆定律 U = I R = {{expr}} = {{ans}} {{unit}}。",
    )


def _density(lang: str, rng: np.random.Generator) -> Problem:
    m, v = int(rng.integers(50, 5000)), int(rng.integers(10, 2000))
    return _problem(
        "physics",
        lang,
        rng,
        2,
        f"{m} ÷ {v}",
        ("g/cm³", "克/厘米³"),
        f"A block has a mass of {m} g and a volume of {v} cm³. Its density is ρ = m / V = "
        "{expr} = {ans} {unit}.",
        f"一块物体质量 {m} 克，体积 {v} 厘米³，密度 ρ = m / V = {{expr}} = {{ans}} {{unit}}。",
    )


SUBJECTS: dict[str, tuple[Callable[[str, np.random.Generator], Problem], ...]] = {
    "arithmetic": (_pencils, _shopping),
    "units": (_speed, _temperature, _energy),
    "physics": (_free_fall, _acceleration, _kinetic, _ohm, _density),
}
_TITLES = {
    "arithmetic": ("Everyday arithmetic", "日常算术"),
    "units": ("Converting units", "单位换算"),
    "physics": ("Motion, energy and electricity", "运动、能量与电"),
}
_INTROS = {
    "arithmetic": (
        "Write each step, then check the result by estimating it first.",
        "每一步都要写出来，并先估算结果再检查。",
    ),
    "units": (
        "To convert a quantity, multiply by the size of the old unit in the new one.",
        "换算单位时，乘以旧单位相当于新单位的倍数。",
    ),
    "physics": (
        "Name the law you use, put in the numbers with their units, and round at the end.",
        "先写出所用的定律，再代入带单位的数值，最后再取近似值。",
    ),
}


def lesson(subject: str, lang: str, rng: np.random.Generator, problems: int = 4) -> dict:
    """One lesson document: title, introduction and ``problems`` worked problems."""
    if subject not in SUBJECTS or lang not in LANGS:
        raise ValueError(f"unknown subject {subject!r} or language {lang!r}")
    k = LANGS.index(lang)
    makers = SUBJECTS[subject]
    start = int(rng.integers(len(makers)))  # rotate through the subject's problem kinds
    items = [makers[(start + j) % len(makers)](lang, rng) for j in range(problems)]
    numbered = [
        (f"Example {i}. " if lang == "en" else f"例{i}：") + p.text for i, p in enumerate(items, 1)
    ]
    text = "\n\n".join([_TITLES[subject][k], _INTROS[subject][k], *numbered])
    return {
        "subject": subject,
        "lang": lang,
        "text": text,
        "answers": [
            {"expression": p.expression, "answer": p.answer, "unit": p.unit} for p in items
        ],
    }


def lessons(n: int, seed: int = 0, problems: int = 4) -> list[dict]:
    """``n`` lessons cycling over subjects and languages, deterministic for ``seed``; each one
    is checked with `check_equations` before it is returned."""
    rng = np.random.default_rng([seed, 0x7E47])
    out = []
    for i in range(n):
        subject = list(SUBJECTS)[i % len(SUBJECTS)]
        doc = lesson(subject, LANGS[(i // len(SUBJECTS)) % len(LANGS)], rng, problems)
        bad = [e for e in check_equations(doc["text"]) if not e.ok]
        if bad:  # a template bug, never data: fail loudly
            raise AssertionError(f"generated lesson {i} has a wrong step: {bad[0]}")
        out.append({"id": f"lesson-{i:05d}"} | doc)
    return out
