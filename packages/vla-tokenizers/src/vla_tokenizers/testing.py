"""Small deterministic inputs shared by the tests and the benchmarks (no files, no network)."""

from __future__ import annotations

import numpy as np

ACTION_DIMS = ["steering", "throttle", "brake", "speed"]

MIXED = [
    "The quick brown fox jumps over 13 lazy dogs.",
    "今天早上雾很大，去海边的火车晚了二十分钟。",
    "你食咗飯未呀？我哋一陣去飲茶啦。",
    "Emoji 🚗💨 and flags 🇩🇪🇨🇳 and ZWJ 👩‍👩‍👧 families.",
    "def add(a, b):\n    return a + b  # 2024-05-06\n\n\tprint(add(1, 2))\r\n",
    "Größe café naïve façade — “quotes” ‘single’ … ½ ∑ ∞",
    "混合 text with English 和 中文 mixed 123,456.78 数字",
    "   leading and trailing spaces   \n\n\n",
    "<|endoftext|> literal special tokens <|im_start|> stay text",
    "x" * 300,
]


def corpus_texts() -> list[str]:
    from vla_data.corpus import SENTENCES

    return [s for v in SENTENCES.values() for s in v] * 3 + MIXED


def drives(n: int = 12, steps: int = 60, seed: int = 0) -> list[tuple[np.ndarray, list[str]]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        t = np.arange(steps) / 10
        steer = 0.3 * np.sin(t * rng.uniform(0.5, 2)) + rng.normal(0, 0.01, steps)
        throttle = np.clip(0.5 + 0.3 * np.sin(t * 0.7 + rng.uniform(0, 3)), 0, 1)
        brake = np.clip(-np.sin(t * 0.7), 0, 1) * 0.4
        speed = 10 + np.cumsum(throttle - brake) * 0.1
        out.append((np.stack([steer, throttle, brake, speed], axis=1), ACTION_DIMS))
    return out
