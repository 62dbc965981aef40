"""One vocabulary for every modality: text BPE, IPA, actions, 3D, camera/time tokens, and a
self-verifying tokenizer bundle."""

__version__ = "0.1.0"

from vla_tokenizers.bundle import BundleError, TokenizerBundle  # noqa: E402
from vla_tokenizers.layout import MODALITIES, LayoutConfig, VocabLayout  # noqa: E402
from vla_tokenizers.processor import Encoding, VLAProcessor  # noqa: E402
from vla_tokenizers.text import QWEN2_PATTERN, TextTokenizer  # noqa: E402

__all__ = [
    "MODALITIES",
    "QWEN2_PATTERN",
    "BundleError",
    "Encoding",
    "LayoutConfig",
    "TextTokenizer",
    "TokenizerBundle",
    "VLAProcessor",
    "VocabLayout",
]
