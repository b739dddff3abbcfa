"""The predicate's operators and scalar functions by sqlglot node class: what
:mod:`federation.query.where` accepts and :mod:`federation.query.render_where` writes back.
"""

from __future__ import annotations

from sqlglot import exp

from federation.query.expr import ArithmeticOp, ComparisonOp, ScalarFunction

__all__ = ["ARITHMETIC", "COMPARISON", "FUNCTIONS"]

ARITHMETIC: dict[type[exp.Expression], ArithmeticOp] = {
    exp.Add: ArithmeticOp.ADD,
    exp.Sub: ArithmeticOp.SUB,
    exp.Mul: ArithmeticOp.MUL,
    exp.Div: ArithmeticOp.DIV,
    exp.Mod: ArithmeticOp.MOD,
}
COMPARISON: dict[type[exp.Expression], ComparisonOp] = {
    exp.EQ: ComparisonOp.EQ,
    exp.NEQ: ComparisonOp.NEQ,
    exp.LT: ComparisonOp.LT,
    exp.LTE: ComparisonOp.LTE,
    exp.GT: ComparisonOp.GT,
    exp.GTE: ComparisonOp.GTE,
}
FUNCTIONS: dict[type[exp.Expression], ScalarFunction] = {
    exp.Abs: ScalarFunction.ABS,
    exp.Lower: ScalarFunction.LOWER,
    exp.Upper: ScalarFunction.UPPER,
    exp.Length: ScalarFunction.LENGTH,
}
