"""Textbook-style synthetic text (English, Chinese) with computed answers, and the checker of
worked arithmetic that validates it (also a pipeline stage, `worked_math`).

```python
from vla_data.textbook import check_equations, lessons

docs = lessons(6, seed=0)                      # [{"id", "subject", "lang", "text", "answers"}]
[e for e in check_equations(docs[0]["text"]) if not e.ok]   # [] -- every step holds
check_equations("3 × 4 = 13")                  # [Equation("3 × 4", 13.0, 12.0, ok=False)]
```
"""

from vla_data.textbook.check import Equation, check_equations, evaluate
from vla_data.textbook.generate import SUBJECTS, Problem, lesson, lessons

__all__ = ["SUBJECTS", "Equation", "Problem", "check_equations", "evaluate", "lesson", "lessons"]
