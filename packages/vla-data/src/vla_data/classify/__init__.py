"""fastText text classifiers and language identification.

```python
from vla_data.classify import FastTextClassifier, load_default_lid

clf = FastTextClassifier.train([("a text", "label"), ...], epoch=25)
clf.predict("another text", k=2)            # [("label", 0.93), ...]
load_default_lid().identify("今天天气很好")    # LangResult(label="cmn", macro="zh", ...)
```
"""

from vla_data.classify.data import normalize_text, read_examples, write_examples
from vla_data.classify.fasttext_model import FastTextClassifier, classification_report
from vla_data.classify.langid import (
    DEFAULT_IPA_FALLBACK,
    DEFAULT_MACRO,
    LangResult,
    LanguageID,
    default_model_card,
    load_default_lid,
    load_shipped_model,
    macro_language,
)

__all__ = [
    "DEFAULT_IPA_FALLBACK",
    "DEFAULT_MACRO",
    "FastTextClassifier",
    "LangResult",
    "LanguageID",
    "classification_report",
    "default_model_card",
    "load_default_lid",
    "load_shipped_model",
    "macro_language",
    "normalize_text",
    "read_examples",
    "write_examples",
]
