"""`TokenizerBundle`: every file a model needs to turn data into ids, verified on load.

```
tokenizer.json              text BPE + special tokens (loads with transformers' PreTrainedTokenizerFast)
tokenizer_config.json       transformers settings (eos/pad, no prefix space, no clean-up)
added_tokens.json           {special token: id}
special_tokens_map.json     eos / pad / additional special tokens
vocab_layout.json           VocabLayout: id ranges per modality
fitted_stats.json           text origin, action bounds/spaces/FAST params, IPA inventory
action_fast_tokenizer.json  FAST's BPE over DCT coefficients (when FAST was fitted)
manifest.json               bundle version, package version, sizes, SHA-256 and size of every file
```

`TokenizerBundle.load` checks the manifest's version, every listed file's size and SHA-256, and
that the files agree with each other (text vocabulary size and special tokens vs the layout,
added_tokens.json, stats vs range sizes); any failure raises `BundleError` naming the file.
`digest` (SHA-256 of manifest.json) pins a bundle: `load(path, expect_digest=...)` refuses
any other. The manifest's `created` time is `SOURCE_DATE_EPOCH` when that is set (the
reproducible-builds convention), so the same files saved twice give the same digest.
Files not in the manifest are ignored (a release folder holds model files too).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError
from tokenizers import Tokenizer

from vla_tokenizers import __version__
from vla_tokenizers.actions import (
    ActionStats,
    FastActionTokenizer,
    UniformActionTokenizer,
    fit_action_stats,
)
from vla_tokenizers.ipa import IpaInventory, fit_inventory
from vla_tokenizers.layout import LAYOUT_FILE, LayoutConfig, VocabLayout
from vla_tokenizers.specials import ALL_SPECIALS, EOS
from vla_tokenizers.text import TextTokenizer

BUNDLE_VERSION = 1
MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
ADDED_TOKENS = "added_tokens.json"
SPECIAL_MAP = "special_tokens_map.json"
STATS = "fitted_stats.json"
FAST_BPE = "action_fast_tokenizer.json"
REQUIRED = (TOKENIZER, TOKENIZER_CONFIG, ADDED_TOKENS, SPECIAL_MAP, LAYOUT_FILE, STATS)


# learned codec weights a bundle may carry (see vla_tokenizers.codecs.checkpoint.BUNDLE_FILES)
CODEC_FILES = {"vision_codec.safetensors": "video", "audio_codec.safetensors": "audio"}


class BundleError(ValueError):
    """A bundle is missing, tampered with or inconsistent; the message names the file."""


class TextInfo(BaseModel):
    origin: Literal["trained", "adopted"]
    lossless: bool
    source_sha256: str | None = None
    documents: int = 0
    chars: int = 0
    requested_vocab: int | None = None


class FittedStats(BaseModel):
    stats_version: int = 1
    text: TextInfo
    actions: ActionStats | None = None
    ipa: IpaInventory = Field(default_factory=IpaInventory)


class FileEntry(BaseModel):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class BundleManifest(BaseModel):
    bundle_version: int
    package: str = "vla-tokenizers"
    package_version: str
    created: str
    vocab_size: int
    text_size: int
    files: dict[str, FileEntry]


def _created_time() -> str:
    """Now, or `SOURCE_DATE_EPOCH` (seconds since 1970, UTC) when set: reproducible digests."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is None:
        return datetime.now(UTC).isoformat(timespec="seconds")
    try:
        when = datetime.fromtimestamp(int(epoch), UTC)
    except (ValueError, OverflowError, OSError) as e:
        raise BundleError(f"SOURCE_DATE_EPOCH={epoch!r} is not a Unix time in seconds") from e
    return when.isoformat(timespec="seconds")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _dump(obj) -> bytes:
    return (json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode()


class TokenizerBundle:
    """Layout + text tokenizer + fitted codecs; build, save, load (verified), make processors."""

    def __init__(
        self,
        layout: VocabLayout,
        text: TextTokenizer,
        stats: FittedStats,
        fast_bpe: Tokenizer | None = None,
        path: Path | None = None,
        digest: str | None = None,
        codecs: dict | None = None,
    ):
        self.layout, self.text, self.stats, self.fast_bpe = layout, text, stats, fast_bpe
        self.path, self.digest = path, digest
        _check_consistency(layout, text, stats, fast_bpe)
        self.codecs: dict = {}  # kind ("video" | "audio") -> learned codec, saved in the bundle
        for codec in (codecs or {}).values():
            self._attach(codec)

    def _attach(self, codec) -> None:
        kind = codec.config.kind
        target = "vision" if kind == "video" else "audio"
        need, size = codec.quantizer.vocab_size, self.layout.range(target).size
        if need > size:
            raise BundleError(
                f"the {kind} codec needs {need} ids but the layout's {target} range has {size}"
            )
        if kind in self.codecs:
            raise BundleError(f"two {kind} codecs for one bundle")
        self.codecs[kind] = codec

    def with_codecs(self, *codecs) -> TokenizerBundle:
        """A copy of this bundle carrying learned codecs (their weights go into the bundle as
        ``vision_codec.safetensors`` / ``audio_codec.safetensors``, covered by the manifest)."""
        return TokenizerBundle(
            self.layout,
            self.text,
            self.stats,
            self.fast_bpe,
            codecs={**self.codecs, **{c.config.kind: c for c in codecs}},
        )

    # ---- codecs ---------------------------------------------------------------------------

    @property
    def action_stats(self) -> ActionStats:
        if self.stats.actions is None:
            raise BundleError("this bundle has no fitted action statistics")
        return self.stats.actions

    @cached_property
    def actions(self) -> UniformActionTokenizer:
        return UniformActionTokenizer(self.action_stats)

    @cached_property
    def fast(self) -> FastActionTokenizer | None:
        if self.stats.actions is None or self.stats.actions.fast is None or self.fast_bpe is None:
            return None
        return FastActionTokenizer(self.stats.actions, self.fast_bpe)

    @cached_property
    def ipa(self):
        from vla_tokenizers.ipa import IpaTokenizer

        return IpaTokenizer(self.layout, self.text, self.stats.ipa)

    @cached_property
    def x3d(self):
        from vla_tokenizers.x3d import X3DCodec

        return X3DCodec(self.layout, self.text)

    @cached_property
    def obj(self):
        from vla_tokenizers.mesh import ObjCodec

        return ObjCodec(self.layout)

    def number_ids_int(self, value: int) -> list[int]:
        start = self.layout.range("number").start
        return [start + t for t in self.layout.config.number_codec.encode_int(value)]

    def processor(self, **options):
        from vla_tokenizers.processor import VLAProcessor

        return VLAProcessor(self, **options)

    # ---- build ----------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        texts: Iterable[str] | None = None,
        *,
        adopt: str | os.PathLike | None = None,
        vocab_size: int = 32_000,
        min_frequency: int = 2,
        layout_config: LayoutConfig | None = None,
        action_streams: Sequence[tuple[np.ndarray, Sequence[str]]] = (),
        action_percentiles: tuple[float, float] = (1.0, 99.0),
        fast: bool = True,
        fast_chunk: int = 10,
        fast_scale: float = 10.0,
        ipa_texts: dict[str, Sequence[str]] | None = None,
        ipa_seed_sentences: bool = True,
    ) -> TokenizerBundle:
        """Train (or adopt) the text BPE, lay out the vocabulary, fit actions and IPA.

        `ipa_texts` maps a language label to texts whose phonemizer output fits the IPA
        inventory; with `ipa_seed_sentences` vla-data's built-in multilingual sentences are used too.
        """
        config = layout_config or LayoutConfig()
        docs = chars = 0
        if adopt is not None:
            text = TextTokenizer.adopt(adopt)
            info = TextInfo(
                origin="adopted",
                lossless=text.lossless,
                source_sha256=_sha(Path(adopt).read_bytes()),
            )
        else:
            if texts is None:
                raise BundleError("build needs training texts or a tokenizer.json to adopt")

            def counted():
                nonlocal docs, chars
                for t in texts:
                    docs += 1
                    chars += len(t)
                    yield t

            text = TextTokenizer.train(counted(), vocab_size, min_frequency, ALL_SPECIALS)
            info = TextInfo(
                origin="trained",
                lossless=text.lossless,
                documents=docs,
                chars=chars,
                requested_vocab=vocab_size,
            )
        layout = VocabLayout.build(text.size, text.added, config)

        actions, fast_bpe = None, None
        if action_streams:
            actions = fit_action_stats(
                action_streams, config.action_bins, action_percentiles, config.action_spaces
            )
            if fast:
                actions, fast_bpe = FastActionTokenizer.fit(
                    actions, action_streams, config.action_fast_vocab, fast_chunk, fast_scale
                )

        ipa = _fit_ipa(ipa_texts or {}, ipa_seed_sentences, config.ipa_symbols)
        stats = FittedStats(text=info, actions=actions, ipa=ipa)
        return cls(layout, text, stats, fast_bpe)

    # ---- save / load ----------------------------------------------------------------------

    def files(self) -> dict[str, bytes]:
        lay = self.layout
        specials = lay.specials
        added = {s.content: s.id for s in specials}
        special_flags = [s for s in specials if s.special]
        files = {
            TOKENIZER: self.text.to_str().encode(),
            ADDED_TOKENS: _dump(added),
            SPECIAL_MAP: _dump(
                {
                    "eos_token": EOS,
                    "pad_token": EOS,
                    "additional_special_tokens": [
                        s.content for s in special_flags if s.content != EOS
                    ],
                }
            ),
            TOKENIZER_CONFIG: _dump(
                {
                    "tokenizer_class": "PreTrainedTokenizerFast",
                    "eos_token": EOS,
                    "pad_token": EOS,
                    "bos_token": None,
                    "unk_token": None,
                    "add_prefix_space": False,
                    "clean_up_tokenization_spaces": False,
                    "split_special_tokens": False,
                    "model_max_length": 131072,
                    "errors": "replace",
                    "vla_vocab_size": lay.vocab_size,
                }
            ),
            LAYOUT_FILE: lay.to_json().encode(),
            STATS: _dump(self.stats.model_dump(mode="json")),
        }
        if self.fast_bpe is not None:
            files[FAST_BPE] = self.fast_bpe.to_str(pretty=True).encode()
        if self.codecs:
            from vla_tokenizers.codecs.checkpoint import bundle_codec_files

            files |= bundle_codec_files(*self.codecs.values())
        return files

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> str:
        """Write the bundle folder atomically; returns its digest."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise BundleError(f"{path} exists (pass overwrite=True to replace it)")
        files = self.files()
        manifest = BundleManifest(
            bundle_version=BUNDLE_VERSION,
            package_version=__version__,
            created=_created_time(),
            vocab_size=self.layout.vocab_size,
            text_size=self.layout.text_size,
            files={n: FileEntry(sha256=_sha(b), bytes=len(b)) for n, b in sorted(files.items())},
        )
        files[MANIFEST] = _dump(manifest.model_dump(mode="json"))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        try:
            for name, data in files.items():
                with open(tmp / name, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            old = None
            if path.exists():
                old = path.with_name(f".{path.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(path, old)
            os.replace(tmp, path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.path, self.digest = path, _sha(files[MANIFEST])
        return self.digest

    @classmethod
    def load(cls, path: str | os.PathLike, expect_digest: str | None = None) -> TokenizerBundle:
        path = Path(path)
        mpath = path / MANIFEST
        if not mpath.is_file():
            raise BundleError(f"{mpath}: missing ({path} is not a tokenizer bundle)")
        raw_manifest = mpath.read_bytes()
        digest = _sha(raw_manifest)
        if expect_digest is not None and digest != expect_digest:
            raise BundleError(
                f"{mpath}: bundle digest {digest[:16]}… is not the expected {expect_digest[:16]}… "
                "(a different or modified bundle)"
            )
        try:
            manifest = BundleManifest.model_validate_json(raw_manifest)
        except ValidationError as e:
            err = e.errors()[0]
            raise BundleError(
                f"{mpath}: invalid manifest at {'.'.join(map(str, err['loc']))}: {err['msg']}"
            ) from None
        if manifest.bundle_version != BUNDLE_VERSION:
            raise BundleError(
                f"{mpath}: bundle_version {manifest.bundle_version} is not supported (this reads {BUNDLE_VERSION})"
            )
        for name in REQUIRED:
            if name not in manifest.files:
                raise BundleError(f"{mpath}: does not list required file {name}")
        data: dict[str, bytes] = {}
        for name, entry in manifest.files.items():
            if "/" in name or "\\" in name or name.startswith("."):
                raise BundleError(f"{mpath}: file name {name!r} is not a plain file name")
            fpath = path / name
            if not fpath.is_file():
                raise BundleError(f"{fpath}: listed in manifest.json but missing")
            raw = fpath.read_bytes()
            if len(raw) != entry.bytes or _sha(raw) != entry.sha256:
                raise BundleError(
                    f"{fpath}: SHA-256 does not match manifest.json (file tampered with or corrupted)"
                )
            data[name] = raw

        def parse(name: str, fn):
            try:
                return fn(data[name])
            except (ValidationError, ValueError, Exception) as e:
                raise BundleError(f"{path / name}: unreadable ({str(e).splitlines()[0]})") from None

        layout = parse(LAYOUT_FILE, VocabLayout.model_validate_json)
        text = parse(TOKENIZER, lambda b: TextTokenizer(Tokenizer.from_str(b.decode())))
        stats = parse(STATS, FittedStats.model_validate_json)
        fast_bpe = (
            parse(FAST_BPE, lambda b: Tokenizer.from_str(b.decode())) if FAST_BPE in data else None
        )
        if manifest.vocab_size != layout.vocab_size or manifest.text_size != layout.text_size:
            raise BundleError(
                f"{mpath}: sizes ({manifest.vocab_size}, text {manifest.text_size}) disagree with "
                f"{LAYOUT_FILE} ({layout.vocab_size}, text {layout.text_size})"
            )
        try:
            bundle = cls(layout, text, stats, fast_bpe, path=path, digest=digest)
        except BundleError as e:
            raise BundleError(f"{path}/{e}") from None
        for name in CODEC_FILES:  # verified above with every other file of the manifest
            if name in data:
                from vla_tokenizers.codecs.checkpoint import codec_from_bytes

                codec = parse(name, lambda b, n=name: codec_from_bytes(b, str(path / n)))
                if CODEC_FILES[name] != codec.config.kind:
                    raise BundleError(f"{path / name}: holds a {codec.config.kind} codec")
                try:
                    bundle._attach(codec)
                except BundleError as e:
                    raise BundleError(f"{path / name}: {e}") from None
        added = parse(ADDED_TOKENS, json.loads)
        if added != {s.content: s.id for s in layout.specials}:
            raise BundleError(
                f"{path / ADDED_TOKENS}: disagrees with the special range of {LAYOUT_FILE}"
            )
        smap = parse(SPECIAL_MAP, json.loads)
        names = {s.content for s in layout.specials}
        used = [
            smap.get("eos_token"),
            smap.get("pad_token"),
            *smap.get("additional_special_tokens", []),
        ]
        unknown = [t for t in used if t is not None and t not in names]
        if unknown:
            raise BundleError(
                f"{path / SPECIAL_MAP}: names tokens not in the vocabulary: {unknown}"
            )
        return bundle

    def check_model_vocab(self, model_vocab_size: int) -> None:
        """Refuse a model whose embedding table cannot hold every id of this layout."""
        if model_vocab_size < self.layout.vocab_size:
            raise BundleError(
                f"model vocab_size {model_vocab_size} is smaller than the bundle's {self.layout.vocab_size}"
            )

    def summary(self) -> dict:
        s = self.stats
        return {
            "path": str(self.path) if self.path else None,
            "digest": self.digest,
            "vocab_size": self.layout.vocab_size,
            "text": s.text.model_dump() | {"bpe_ids": self.layout.text_size},
            "ranges": self.layout.summary(),
            "specials": len(self.layout.specials),
            "action_dims": sorted(s.actions.dims) if s.actions else [],
            "action_spaces": s.actions.spaces if s.actions else [],
            "fast": s.actions.fast.model_dump() if s.actions and s.actions.fast else None,
            "ipa_symbols": len(s.ipa.symbols),
            "codecs": {
                kind: {
                    "ids": c.quantizer.vocab_size,
                    "levels": c.quantizer.depth,
                    "codebook_size": c.quantizer.codebook_size,
                    "config": c.config.to_dict(),
                }
                for kind, c in sorted(self.codecs.items())
            },
        }


def _check_consistency(
    layout: VocabLayout, text: TextTokenizer, stats: FittedStats, fast_bpe
) -> None:
    if text.size != layout.text_size:
        raise BundleError(
            f"{TOKENIZER} has {text.size} BPE ids but {LAYOUT_FILE}'s text range has {layout.text_size}"
        )
    got = [(s.content, s.special) for s in text.added]
    want = [(s.content, s.special) for s in layout.specials]
    if got != want:
        first = next(
            (i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
            min(len(got), len(want)),
        )
        raise BundleError(
            f"{TOKENIZER}'s added tokens differ from {LAYOUT_FILE}'s special range at id {layout.text_size + first}"
        )
    if stats.actions is not None:
        if stats.actions.bins != layout.range("action").size:
            raise BundleError(
                f"{STATS}: {stats.actions.bins} action bins but {LAYOUT_FILE} reserves {layout.range('action').size}"
            )
        if len(stats.actions.spaces) > layout.range("action_space").size:
            raise BundleError(f"{STATS}: more action spaces than {LAYOUT_FILE} reserves")
        if (stats.actions.fast is None) != (fast_bpe is None):
            raise BundleError(f"{STATS}: FAST parameters and {FAST_BPE} must come together")
        if fast_bpe is not None and fast_bpe.get_vocab_size() > layout.range("action_fast").size:
            raise BundleError(f"{FAST_BPE}: vocabulary larger than the action_fast range")
    elif fast_bpe is not None:
        raise BundleError(f"{FAST_BPE} present without action statistics in {STATS}")
    if len(stats.ipa.symbols) > layout.range("ipa").size:
        raise BundleError(f"{STATS}: {len(stats.ipa.symbols)} IPA symbols exceed the ipa range")


def _fit_ipa(ipa_texts: dict[str, Sequence[str]], seed: bool, size: int) -> IpaInventory:
    from vla_tokenizers.ipa import espeak_voice, phonemize

    texts: dict[str, list[str]] = {k: list(v) for k, v in ipa_texts.items()}
    if seed:
        from vla_data.corpus import SENTENCES

        for lang, sents in SENTENCES.items():
            texts.setdefault(lang, []).extend(sents)
    strings: list[str] = []
    langs: list[str] = []
    for lang, items in texts.items():
        if not items or espeak_voice(lang) is None:
            continue
        langs.append(lang)
        strings += phonemize(items, lang)
    return fit_inventory(strings, size, sorted(langs))
