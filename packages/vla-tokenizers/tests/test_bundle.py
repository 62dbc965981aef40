from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from vla_tokenizers import BundleError, TokenizerBundle
from vla_tokenizers.testing import MIXED


def _copy(bundle_dir, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(bundle_dir, dst)
    return dst


def _rehash(path, name):
    """Re-sign one file in the manifest (a consistent-looking but mismatched bundle)."""
    m = json.loads((path / "manifest.json").read_text())
    raw = (path / name).read_bytes()
    m["files"][name] = {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}
    (path / "manifest.json").write_text(json.dumps(m))


def test_save_load_round_trip(bundle, bundle_dir):
    loaded = TokenizerBundle.load(bundle_dir)
    assert loaded.layout == bundle.layout
    assert loaded.stats == bundle.stats
    assert loaded.digest == hashlib.sha256((bundle_dir / "manifest.json").read_bytes()).hexdigest()
    assert TokenizerBundle.load(bundle_dir, expect_digest=loaded.digest).digest == loaded.digest
    for text in MIXED:
        assert loaded.text.encode(text) == bundle.text.encode(text)
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["bundle_version"] == 1
    assert set(manifest["files"]) == {
        "tokenizer.json",
        "tokenizer_config.json",
        "added_tokens.json",
        "special_tokens_map.json",
        "vocab_layout.json",
        "fitted_stats.json",
        "action_fast_tokenizer.json",
    }
    with pytest.raises(BundleError, match="exists"):
        bundle.save(bundle_dir)


def test_text_part_loads_with_transformers(bundle, bundle_dir):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_file=str(bundle_dir / "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(str(bundle_dir))
    assert auto.eos_token == "<|endoftext|>" and auto.pad_token == "<|endoftext|>"
    for tk in (fast, auto):
        assert tk.convert_tokens_to_ids("<|im_start|>") == bundle.layout.id_of("<|im_start|>")
        for text in MIXED[:-2]:
            ids = tk.encode(text, add_special_tokens=False)
            assert ids == bundle.text.encode(text)
            assert tk.decode(ids) == text
    assert len(auto) == bundle.layout.range("special").end


def test_tampered_file_is_refused(bundle_dir, tmp_path):
    path = _copy(bundle_dir, tmp_path)
    raw = bytearray((path / "tokenizer.json").read_bytes())
    raw[100] ^= 1
    (path / "tokenizer.json").write_bytes(bytes(raw))
    with pytest.raises(BundleError, match=r"tokenizer\.json: SHA-256 does not match"):
        TokenizerBundle.load(path)


def test_missing_and_unlisted_files(bundle_dir, tmp_path):
    path = _copy(bundle_dir, tmp_path)
    (path / "config.json").write_text("{}")  # a release folder holds other files: ignored
    TokenizerBundle.load(path)
    (path / "vocab_layout.json").unlink()
    with pytest.raises(
        BundleError, match=r"vocab_layout\.json: listed in manifest.json but missing"
    ):
        TokenizerBundle.load(path)
    with pytest.raises(BundleError, match="not a tokenizer bundle"):
        TokenizerBundle.load(tmp_path)


def test_mismatched_layout_is_refused(bundle_dir, tmp_path):
    path = _copy(bundle_dir, tmp_path)
    lay = json.loads((path / "vocab_layout.json").read_text())
    # move one special token: ids still contiguous, but no longer what tokenizer.json says
    a, b = lay["specials"][0]["content"], lay["specials"][1]["content"]
    lay["specials"][0]["content"], lay["specials"][1]["content"] = b, a
    names = lay["ranges"][1]["names"]
    names[0], names[1] = b, a
    (path / "vocab_layout.json").write_text(json.dumps(lay))
    _rehash(path, "vocab_layout.json")
    with pytest.raises(BundleError, match=r"added tokens differ from vocab_layout\.json"):
        TokenizerBundle.load(path)


def test_mismatched_added_tokens_and_stats(bundle_dir, tmp_path):
    path = _copy(bundle_dir, tmp_path)
    added = json.loads((path / "added_tokens.json").read_text())
    added["<|endoftext|>"] += 1
    (path / "added_tokens.json").write_text(json.dumps(added))
    _rehash(path, "added_tokens.json")
    with pytest.raises(BundleError, match=r"added_tokens\.json: disagrees"):
        TokenizerBundle.load(path)

    path = _copy(bundle_dir, tmp_path / "2")
    stats = json.loads((path / "fitted_stats.json").read_text())
    stats["actions"]["bins"] = 128
    (path / "fitted_stats.json").write_text(json.dumps(stats))
    _rehash(path, "fitted_stats.json")
    with pytest.raises(BundleError, match=r"fitted_stats\.json: 128 action bins"):
        TokenizerBundle.load(path)


def test_version_and_digest_pinning(bundle_dir, tmp_path):
    with pytest.raises(BundleError, match="not the expected"):
        TokenizerBundle.load(bundle_dir, expect_digest="0" * 64)
    path = _copy(bundle_dir, tmp_path)
    m = json.loads((path / "manifest.json").read_text())
    m["bundle_version"] = 99
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="bundle_version 99 is not supported"):
        TokenizerBundle.load(path)


def test_source_date_epoch_makes_the_digest_reproducible(bundle_dir, tmp_path, monkeypatch):
    bundle = TokenizerBundle.load(bundle_dir)  # its own copy: save() re-points path and digest
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    a = bundle.save(tmp_path / "a")
    b = bundle.save(tmp_path / "b")
    assert a == b
    m = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert m["created"] == "2026-01-01T00:00:00+00:00"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(BundleError, match="SOURCE_DATE_EPOCH='yesterday'"):
        bundle.save(tmp_path / "c")


def test_model_vocab_check(bundle):
    bundle.check_model_vocab(bundle.layout.vocab_size)
    with pytest.raises(BundleError, match="smaller"):
        bundle.check_model_vocab(bundle.layout.vocab_size - 1)


def test_build_with_an_adopted_tokenizer(bundle, bundle_dir, tmp_path):
    adopted = TokenizerBundle.build(adopt=bundle_dir / "tokenizer.json", ipa_seed_sentences=False)
    assert adopted.stats.text.origin == "adopted" and adopted.stats.text.source_sha256
    assert adopted.layout.text_size == bundle.layout.text_size
    assert adopted.layout.specials == bundle.layout.specials
    adopted.save(tmp_path / "a")
    again = TokenizerBundle.load(tmp_path / "a")
    assert again.text.encode(MIXED[1]) == bundle.text.encode(MIXED[1])
    assert again.stats.actions is None
    with pytest.raises(BundleError, match="no fitted action statistics"):
        again.processor().writer().actions([[0.0]], ["x"])
