"""Exact, MinHash-LSH, SimHash and perceptual-hash dedup on generated corpora with planted dups."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from vla_data.dedup import (
    DedupResult,
    ExactConfig,
    HammingDeduper,
    MinHashConfig,
    MinHashDeduper,
    MinHasher,
    NormConfig,
    SimHashConfig,
    SpillIndex,
    UnionFind,
    dhash,
    estimate_jaccard,
    exact_dedup,
    exact_hash,
    hamming_distance,
    image_dedup,
    jaccard,
    minhash_dedup,
    ngram_set,
    normalize,
    phash,
    simhash,
    simhash_dedup,
    table_masks,
    tokenize,
)

SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]
HEADER = "home about contact subscribe to our newsletter for the latest updates and offers today"
FOOTER = "copyright all rights reserved privacy policy terms of use cookie settings sitemap"


def make_vocab(rng: np.random.Generator, size: int = 4000) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES, rng.integers(1, 4))))
    return sorted(words)


class Corpus:
    """Seeded generator of real-looking documents (sentences over a Zipf-like vocabulary)."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.vocab = make_vocab(self.rng)
        p = 1.0 / np.arange(1, len(self.vocab) + 1) ** 0.8
        self.cdf = np.cumsum(p / p.sum())

    def words(self, n: int) -> list[str]:
        idx = np.searchsorted(self.cdf, self.rng.random(n) * self.cdf[-1])
        return [self.vocab[i] for i in idx]

    def sentences(self, n_words: int) -> list[list[str]]:
        out, left = [], n_words
        while left > 0:
            k = min(left, int(self.rng.integers(6, 18)))
            out.append(self.words(k))
            left -= k
        return out

    @staticmethod
    def render(sents: list[list[str]]) -> str:
        return " ".join(" ".join(s).capitalize() + "." for s in sents)

    def edit(self, sents: list[list[str]]) -> tuple[str, list[list[str]]]:
        """A planted near-duplicate: word edits, sentence reorders and/or boilerplate."""
        sents = [list(s) for s in sents]
        kind = ("words", "reorder", "boilerplate", "mixed")[int(self.rng.integers(4))]
        if kind in ("words", "mixed"):
            n = sum(len(s) for s in sents)
            for _ in range(max(1, int(n * self.rng.uniform(0.005, 0.04)))):
                s = sents[int(self.rng.integers(len(sents)))]
                j = int(self.rng.integers(len(s)))
                op = self.rng.integers(3)
                if op == 0:
                    s[j] = self.words(1)[0]
                elif op == 1:
                    s.insert(j, self.words(1)[0])
                elif len(s) > 1:
                    del s[j]
        if kind in ("reorder", "mixed") and len(sents) > 2:
            for _ in range(int(self.rng.integers(1, 3))):
                i, j = self.rng.choice(len(sents), 2, replace=False)
                sents[i], sents[j] = sents[j], sents[i]
        if kind == "boilerplate":
            sents = [HEADER.split(), *sents, FOOTER.split()]
        return kind, sents

    def planted(self, n_base: int, n_dups: int, lo: int = 120, hi: int = 300):
        """Docs, family ids and (source, dup) pairs; dups are appended after all base docs."""
        base = [self.sentences(int(self.rng.integers(lo, hi))) for _ in range(n_base)]
        texts = [self.render(s) for s in base]
        family = list(range(n_base))
        pairs = []
        for _ in range(n_dups):
            src = int(self.rng.integers(n_base))
            _, sents = self.edit(base[src])
            pairs.append((src, len(texts)))
            texts.append(self.render(sents))
            family.append(src)
        return texts, np.array(family), pairs


@pytest.fixture(scope="module")
def corpus():
    texts, family, pairs = Corpus(7).planted(2500, 600)
    sets = {}

    def grams(i):
        if i not in sets:
            sets[i] = ngram_set(texts[i], 5)
        return sets[i]

    true_j = np.array([jaccard(grams(a), grams(b)) for a, b in pairs])
    return texts, family, pairs, true_j


def cross_family_rate(result: DedupResult, family: np.ndarray, n_base: int) -> float:
    """Fraction of distinct base documents clustered with a document of another family."""
    rep = result.representative
    fam_of_rep = family[rep]
    wrong = np.flatnonzero(fam_of_rep != family)
    bad_docs = set(wrong.tolist()) | set(rep[wrong].tolist())
    return len([d for d in bad_docs if d < n_base]) / n_base


# ---------------------------------------------------------------- text normalisation


def test_normalize_and_cjk_tokenize():
    assert normalize("  Hello,\tWORLD!!  ｆｕｌｌ\u3000width ") == "hello world full width"
    keep = NormConfig(strip_punctuation=False, lowercase=False)
    assert normalize("Hi,  there!", keep) == "Hi, there!"
    assert tokenize("Ünïcode café, don't_stop") == ["ünïcode", "café", "don", "t", "stop"]
    assert tokenize("我爱北京 天安门 ok") == ["我", "爱", "北", "京", "天", "安", "门", "ok"]
    assert tokenize("カタカナとひらがな") == list("カタカナとひらがな")
    assert tokenize("한국어 문장") == ["한국어", "문장"]  # Hangul stays word-tokenised
    assert tokenize("a.b") == tokenize("a\u00b7b".replace("\u00b7", ".")) == ["a", "b"]
    # the ASCII fast path and the regex path agree
    assert tokenize("Tab\there,x_y\x01z é") == ["tab", "here", "x", "y", "z", "é"]
    assert tokenize("Tab\there,x_y\x01z e") == ["tab", "here", "x", "y", "z", "e"]


# ---------------------------------------------------------------- exact


def test_exact_dedup_normalises_and_keeps_first():
    texts = ["Hello,  World!", "other text", "hello world", "HELLO\u3000WORLD.", "Other text!", "x"]
    res = exact_dedup(texts)
    assert res.representative.tolist() == [0, 1, 0, 0, 1, 5]
    assert res.n_clusters == 3 and res.n_duplicates == 3
    assert [c.tolist() for c in res.clusters()] == [[0, 2, 3], [1, 4]]
    assert res.keep_mask().tolist() == [True, True, False, False, False, True]
    raw = exact_dedup(texts, ExactConfig(norm=None))
    assert raw.n_duplicates == 0
    wide = exact_dedup(texts, ExactConfig(bits=128), chunk_size=2)
    assert np.array_equal(wide.representative, res.representative)
    assert exact_hash("a b", ExactConfig(bits=128)) >= 0
    assert exact_hash("a b", ExactConfig(bits=128)).bit_length() <= 128
    assert exact_hash("A  b!") == exact_hash("a b") < 2**64


# ---------------------------------------------------------------- MinHash


def test_minhash_signature_is_exact_universal_hash():
    hasher = MinHasher(MinHashConfig(bands=2, rows=3))
    text = "one two three four five six seven eight nine ten"
    sig = hasher.signatures([text, "", "tiny doc"])
    shingles = hasher.shingler.shingles(text)
    assert len(shingles) == 6
    p = (1 << 61) - 1
    want = [
        min((int(a) * (int(x) >> 3) + int(b)) % p for x in shingles)
        for a, b in zip(hasher.a, hasher.b, strict=True)
    ]
    assert sig[0].tolist() == want
    assert (sig[1] == np.iinfo(np.uint64).max).all()  # no tokens: no signature
    assert len(hasher.shingler.shingles("tiny doc")) == 1 and sig[2].max() < p
    bands = hasher.band_hashes(sig)
    assert bands.shape == (3, 2)
    assert estimate_jaccard(sig[0], sig[0]) == 1.0


def test_minhash_recall_and_false_positives(corpus):
    texts, family, pairs, true_j = corpus
    res = minhash_dedup(texts)
    rep = res.representative
    found = np.array([rep[a] == rep[b] for a, b in pairs])
    high = true_j >= 0.8
    assert high.sum() > 200
    recall = found[high].mean()
    assert recall >= 0.95, recall
    assert cross_family_rate(res, family, 2500) <= 0.01
    # the representative is the lowest index of its cluster
    for members in res.clusters():
        assert (rep[members] == members[0]).all()


def test_minhash_deterministic_and_chunking_independent(corpus, tmp_path):
    texts = corpus[0][:1000] + corpus[0][2500:2800]
    first = minhash_dedup(texts)
    again = minhash_dedup(texts)
    with MinHashDeduper(spill_dir=tmp_path, chunk_size=97, merge_buffer=1, batch_size=33) as d:
        for start in range(0, len(texts), 250):
            d.add(texts[start : start + 250])
        small = d.finish()
    assert np.array_equal(first.representative, again.representative)
    assert np.array_equal(first.representative, small.representative)
    assert first.n_duplicates > 0


def test_minhash_spills_runs_and_cleans_up(corpus, tmp_path):
    texts = corpus[0][:400]
    d = MinHashDeduper(spill_dir=tmp_path, chunk_size=50)
    d.add(texts)
    runs = d.run_files
    assert len(runs) == 8 * 14  # 8 runs of 50 docs, one file per band
    assert all(p.exists() and p.suffix == ".npy" for p in runs)
    rec = np.load(runs[0], allow_pickle=False)
    assert rec.dtype.names == ("key", "doc") and (np.diff(rec["key"].astype(float)) >= 0).all()
    d.finish()
    assert not any(p.exists() for p in runs)
    assert list(tmp_path.iterdir()) == []


def test_minhash_verification_threshold(corpus):
    texts = corpus[0][:800] + [corpus[0][0], corpus[0][1] + " Extra words here."]
    loose = minhash_dedup(texts)
    strict = minhash_dedup(texts, MinHashConfig(threshold=0.999), chunk_size=300)
    assert strict.representative[800] == 0  # identical copy passes any threshold
    assert strict.n_duplicates <= loose.n_duplicates
    assert strict.n_duplicates >= 1
    hasher = MinHasher()
    sigs = hasher.signatures(texts)
    for dup, rep in zip(*strict.pairs(), strict=True):
        assert estimate_jaccard(sigs[dup], sigs[rep]) >= 0.999 or rep != dup


def test_minhash_cjk_near_duplicates():
    rng = np.random.default_rng(3)
    chars = [chr(c) for c in rng.choice(np.arange(0x4E00, 0x4E00 + 3000), 3000, replace=False)]
    base = []
    for _ in range(300):
        body = "".join(rng.choice(chars, int(rng.integers(200, 400))))
        base.append("，".join(body[i : i + 20] for i in range(0, len(body), 20)) + "。")
    dups = []
    for i in range(0, 300, 5):
        s = list(base[i])
        for j in rng.choice(len(s), len(s) // 60, replace=False):
            s[j] = chars[int(rng.integers(len(chars)))]
        dups.append("".join(s))
    res = minhash_dedup(base + dups)
    rep = res.representative
    hits = [rep[300 + k] == i for k, i in enumerate(range(0, 300, 5))]
    assert np.mean(hits) >= 0.95
    assert len(set(rep[:300].tolist())) == 300  # distinct CJK docs stay apart
    assert jaccard(ngram_set(base[0]), ngram_set(dups[0])) >= 0.8


def test_minhash_precomputed_signatures_match_and_finish_runs_once(corpus):
    texts = corpus[0][:300] + corpus[0][2500:2600]
    hasher = MinHasher()
    d = MinHashDeduper()
    for start in range(0, len(texts), 128):  # e.g. signatures computed by worker processes
        d.add_signatures(hasher.signatures(texts[start : start + 128]))
    res = d.finish()
    assert np.array_equal(res.representative, minhash_dedup(texts).representative)
    with pytest.raises(RuntimeError, match="closed"):
        d.finish()


def test_minhash_empty_and_short_docs():
    texts = ["", "   ", "short one", "Short, one!", "a b c d e f g", "a b c d e f g"]
    res = minhash_dedup(texts)
    assert res.representative.tolist() == [0, 1, 2, 2, 4, 4]
    assert minhash_dedup([]).n_docs == 0


# ---------------------------------------------------------------- spill + union-find


def test_spill_merge_yields_complete_sorted_groups(tmp_path):
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 50, (5000, 2)).astype(np.uint64)
    aux = rng.integers(0, 3, 5000).astype(np.uint64)
    with SpillIndex(2, with_aux=True, spill_dir=tmp_path, chunk_size=333, merge_buffer=1) as idx:
        for s in range(0, 5000, 700):
            idx.add(keys[s : s + 700], aux=aux[s : s + 700])
        assert idx.n_runs == 15  # 15 full chunks on disk, the last 5 docs still buffered
        for t in range(2):
            seen = []
            batches = list(idx.batches(t))
            assert len(batches) > 1
            for b in batches:
                order = np.lexsort((b.doc, b.aux, b.key))
                assert (order == np.arange(len(order))).all()
                seen.append(b.key)
            allkeys = np.concatenate(seen)
            assert len(allkeys) == 5000 and len(np.unique(allkeys)) == 50
            assert (np.diff(allkeys.astype(np.int64)) >= 0).all()  # groups never split
        assert idx.n_runs == 16 and len(idx.run_files) == 32
    assert list(tmp_path.iterdir()) == []


def test_union_find_roots_are_lowest_index():
    uf = UnionFind(10)
    uf.union(np.array([9, 3, 5, 7]), np.array([3, 5, 8, 7]))
    uf.union(np.array([8]), np.array([1]))
    assert uf.roots().tolist() == [0, 1, 2, 1, 4, 1, 6, 7, 1, 1]


# ---------------------------------------------------------------- SimHash


def test_hamming_tables_find_exactly_the_pairs_within_threshold(tmp_path):
    rng = np.random.default_rng(1)
    bases = rng.integers(0, 2**63, 200, dtype=np.int64).astype(np.uint64) * np.uint64(2) + 1
    fps, expect = [], []
    for i, b in enumerate(bases):
        d = i % 7  # variant at Hamming distance 0..6
        flip = sum(1 << int(k) for k in rng.choice(64, d, replace=False))
        fps += [int(b), int(b) ^ flip]
        expect.append(d <= 3)
    d = HammingDeduper(3, spill_dir=tmp_path, chunk_size=64)
    d.add(fps)
    res = d.finish()
    got = [res.representative[2 * i + 1] == 2 * i for i in range(len(bases))]
    assert got == expect
    masks = table_masks(3)
    assert len(masks) == 10 and all(bin(int(m)).count("1") in (25, 26) for m in masks)


def test_simhash_text_threshold():
    c = Corpus(11)
    docs = [c.render(c.sentences(200)) for _ in range(300)]
    words = docs[0].split()
    words[50] = "zzzzq"
    near = " ".join(words)
    assert hamming_distance(simhash(docs[0]), simhash(near)) <= 3
    far = [hamming_distance(simhash(docs[0]), simhash(x)) for x in docs[1:50]]
    assert min(far) > 10
    res = simhash_dedup([*docs, near, docs[5]])
    assert res.representative[300] == 0 and res.representative[301] == 5
    assert res.n_duplicates == 2
    none = simhash_dedup([*docs, near], SimHashConfig(threshold=0))
    assert none.n_duplicates <= 1


# ---------------------------------------------------------------- perceptual image hashes


def synth_image(seed: int, size: tuple[int, int] = (256, 192)) -> Image.Image:
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", size, tuple(int(c) for c in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(im)
    w, h = size
    for _ in range(12):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        box = [x0, y0, x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(20, h // 2))]
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    return im.filter(ImageFilter.GaussianBlur(2))


def jpeg(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue()))


@pytest.mark.parametrize("fn", [phash, dhash])
def test_perceptual_hashes(fn):
    images = [synth_image(i) for i in range(12)]
    for im in images:
        h = fn(im)
        assert 0 <= h < 2**64
        variants = [
            im.resize((128, 96)),
            im.resize((400, 300)),
            jpeg(im, 75),
            jpeg(im.resize((200, 150)), 60),
            np.asarray(im),
            np.asarray(im.convert("L")),
        ]
        assert max(hamming_distance(h, fn(v)) for v in variants) <= 6
    far = [hamming_distance(fn(a), fn(b)) for i, a in enumerate(images) for b in images[i + 1 :]]
    assert min(far) > 12


def test_image_dedup_clusters_variants(tmp_path: Path):
    images = [synth_image(i) for i in range(10)]
    stream = images + [jpeg(images[3].resize((180, 135)), 70), images[7].resize((300, 225))]
    res = image_dedup(stream, spill_dir=tmp_path)
    assert res.representative.tolist() == [*range(10), 3, 7]
    assert image_dedup(stream, method="dhash").representative.tolist() == [*range(10), 3, 7]
