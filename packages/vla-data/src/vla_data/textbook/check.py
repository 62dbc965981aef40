"""Check the worked arithmetic in a text: every ``<expression> = <number>`` must hold.

Expressions use digits, decimals, ``+ - − × · * ÷ / ( )`` and superscript powers (``3²``); they are
evaluated with a tiny AST walker (no ``eval``). The stated result may be rounded: it must equal the
exact value to within half a unit of its last decimal place (plus a relative 1e-9).
"""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass

_NUMBER = r"\d+(?:\.\d+)?"
_OPERAND = rf"\(*\s*{_NUMBER}[²³]?\s*\)*[²³]?"
EQUATION = re.compile(
    rf"(?<![\w.])(?P<lhs>{_OPERAND}(?:\s*[-−+×·*÷/]\s*{_OPERAND})+)\s*[=＝]\s*(?P<rhs>-?{_NUMBER})(?![\d])"
)
_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_TRANSLATE = str.maketrans({"−": "-", "×": "*", "·": "*", "÷": "/", "²": "**2", "³": "**3"})


@dataclass(frozen=True)
class Equation:
    """One worked step found in a text, with its exact value and whether the text got it right."""

    expression: str
    stated: float
    value: float | None  # None: not evaluable (division by zero, unbalanced brackets)
    ok: bool


def evaluate(expression: str) -> float:
    """The value of an arithmetic expression in textbook notation; ``ValueError`` if invalid."""
    try:
        tree = ast.parse(expression.translate(_TRANSLATE), mode="eval")
    except SyntaxError as e:
        raise ValueError(f"not an arithmetic expression: {expression!r}") from e

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            if isinstance(node.op, ast.Pow) and abs(walk(node.right)) > 8:
                raise ValueError(f"exponent too large in {expression!r}")
            try:
                return _OPS[type(node.op)](walk(node.left), walk(node.right))
            except ZeroDivisionError as e:
                raise ValueError(f"division by zero in {expression!r}") from e
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        raise ValueError(f"unsupported element in {expression!r}")

    return walk(tree)


def _tolerance(stated: str, value: float) -> float:
    decimals = len(stated.partition(".")[2])
    return 0.5 * 10.0**-decimals + 1e-9 * abs(value)


def check_equations(text: str) -> list[Equation]:
    """Every worked equation in ``text``, each evaluated and compared with its stated result."""
    found = []
    for m in EQUATION.finditer(text):
        lhs, rhs = m.group("lhs").strip(), m.group("rhs")
        if lhs.count("(") != lhs.count(")"):
            lhs = lhs.lstrip("( ") if lhs.count("(") > lhs.count(")") else lhs.rstrip(") ")
        try:
            value = evaluate(lhs)
        except ValueError:
            found.append(Equation(lhs, float(rhs), None, False))
            continue
        ok = abs(value - float(rhs)) <= _tolerance(rhs, value)
        found.append(Equation(lhs, float(rhs), value, ok))
    return found
