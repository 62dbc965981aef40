"""Text: byte-level BPE with Qwen2's pre-tokenizer, trained here or adopted from a tokenizer.json.

A trained tokenizer has Qwen2's split regex (letters runs, digits one by one, punctuation runs,
newlines) followed by byte-level mapping, no normaliser (so decoding is exact for any string),
and Qwen3's special tokens then this stack's span markers appended as added tokens. An adopted
`tokenizer.json` is kept as is (its normaliser too: Qwen's NFC means non-NFC input comes back
NFC-normalised; `lossless` says whether that can happen); missing special tokens are appended.

Raw text is encoded with a copy of the tokenizer that has no added tokens, so a literal
`<|endoftext|>` inside a web page stays text and can never inject a control token.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from tokenizers import processors as tk_processors

from vla_tokenizers.specials import ALL_SPECIALS, SpecialDef

# Qwen2 / Qwen2.5 / Qwen3 tokenizer.json, pre_tokenizer.pretokenizers[0].pattern.Regex
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


class TextTokenizerError(ValueError):
    pass


def qwen2_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )


def _empty_bpe() -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False, fuse_unk=False))
    tok.pre_tokenizer = qwen2_pre_tokenizer()
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.post_processor = tk_processors.ByteLevel(
        add_prefix_space=False, trim_offsets=False, use_regex=False
    )
    return tok


def _add_specials(tok: Tokenizer, specials: Sequence[SpecialDef]) -> None:
    """Append the specials the tokenizer lacks, one by one, so ids follow the given order."""
    have = set(tok.get_added_tokens_decoder()[i].content for i in tok.get_added_tokens_decoder())
    for s in specials:
        if s.content in have:
            continue
        token = AddedToken(s.content, special=s.special, normalized=False)
        if s.special:
            tok.add_special_tokens([token])
        else:
            tok.add_tokens([token])


class TextTokenizer:
    """The text part of the vocabulary: `size` BPE ids, then the added (special) tokens."""

    def __init__(self, tokenizer: Tokenizer):
        self.full = tokenizer
        self.size = tokenizer.get_vocab_size(with_added_tokens=False)
        decoder = tokenizer.get_added_tokens_decoder()
        ids = sorted(decoder)
        if ids and ids != list(range(self.size, self.size + len(ids))):
            raise TextTokenizerError(
                f"added tokens must have contiguous ids right after the {self.size} BPE ids; got {ids[:5]}..."
            )
        self.added: list[SpecialDef] = [
            SpecialDef(decoder[i].content, decoder[i].special) for i in ids
        ]
        data = json.loads(tokenizer.to_str())
        data["added_tokens"] = []
        self.plain = Tokenizer.from_str(json.dumps(data))
        self.lossless = data.get("normalizer") is None

    # ---- construction -----------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int = 32_000,
        min_frequency: int = 2,
        specials: Sequence[SpecialDef] = ALL_SPECIALS,
        max_token_length: int | None = 32,
    ) -> TextTokenizer:
        """Train byte-level BPE on `texts` (Qwen2 pre-tokenizer); `vocab_size` counts BPE ids only."""
        if vocab_size < 257:
            raise TextTokenizerError(
                f"vocab_size must exceed the 256 byte symbols, got {vocab_size}"
            )
        tok = _empty_bpe()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            show_progress=False,
            special_tokens=[],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            max_token_length=max_token_length,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        _add_specials(tok, specials)
        return cls(tok)

    @classmethod
    def adopt(
        cls, path: str | os.PathLike, specials: Sequence[SpecialDef] = ALL_SPECIALS
    ) -> TextTokenizer:
        """Use a user-supplied tokenizer.json as is; missing special tokens are appended."""
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as e:
            raise TextTokenizerError(f"{path}: not a loadable tokenizer.json ({e})") from None
        cls(tok)  # checks the existing added tokens are contiguous
        _add_specials(tok, specials)
        return cls(tok)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> TextTokenizer:
        return cls(Tokenizer.from_file(str(path)))

    def to_str(self) -> str:
        return self.full.to_str(pretty=True)

    # ---- encode / decode --------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """BPE ids of raw text (added-token strings in it are plain text)."""
        return self.plain.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Parallel batch encoding (the `tokenizers` Rust thread pool), ids only."""
        return [e.ids for e in self.plain.encode_batch_fast(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of BPE ids (ids must be < `size`)."""
        return self.plain.decode(list(ids), skip_special_tokens=False)

    def token_to_id(self, token: str) -> int | None:
        return self.full.token_to_id(token)
