"""Route conditions: a small expression language, parsed by our own tokenizer, never eval'ed.

Grammar (keywords are case-sensitive except the literals true/false/null/none)::

    condition  := "default" | or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := operand [("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not in") operand]
    operand    := ref | literal | list | "(" or_expr ")"
    ref        := "state." name ("." name)*  |  "{state." name ("." name)* "}"
    literal    := number | 'string' | "string" | true | false | null  (True/False/None too)
    list       := "[" [literal ("," literal)*] "]"

Runtime semantics, chosen so that a route never crashes a run:

- a reference to a missing field or key evaluates to null;
- ``==``/``!=`` never consider a bool equal to a number;
- ``<``, ``<=``, ``>``, ``>=`` compare two numbers or two strings; any other pair (null, a bool,
  mixed types) makes the comparison **False** instead of raising;
- ``in`` tests membership in a list, a key of an object, or a substring of a string; anything
  else is False;
- a bare operand is tested for truthiness.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Condition", "ConditionError", "parse_condition"]

_NAME_START = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
_NAME_CHARS = _NAME_START + "0123456789"
_COMPARISONS = ("==", "!=", "<=", ">=", "<", ">")
_LITERAL_WORDS = {"true": True, "false": False, "null": None, "none": None}


MAX_LENGTH = 4000
MAX_DEPTH = 200


class ConditionError(ValueError):
    """A condition that cannot be parsed; the message says what and where (1-based column)."""

    def __init__(self, message: str, text: str, position: int):
        self.text = text
        self.position = position
        super().__init__(f"{message} at column {position + 1} of condition {text!r}")


@dataclass(frozen=True)
class _Token:
    kind: str  # name, number, string, op, ref, end
    value: Any
    pos: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "\"'":
            value, end = _read_string(text, i)
            tokens.append(_Token("string", value, i))
        elif ch.isdigit() or (ch in "-+." and i + 1 < len(text) and text[i + 1].isdigit()):
            token, end = _read_number(text, i)
            tokens.append(token)
        elif ch == "{":
            token, end = _read_braced_ref(text, i)
            tokens.append(token)
        elif ch in _NAME_START:
            token, end = _read_word(text, i)
            tokens.append(token)
        else:
            token, end = _read_operator(text, i)
            tokens.append(token)
        i = end
    tokens.append(_Token("end", None, len(text)))
    return tokens


def _read_number(text: str, start: int) -> tuple[_Token, int]:
    i = start + 1
    while i < len(text) and (
        text[i].isdigit() or text[i] in "._eE" or (text[i] in "+-" and text[i - 1] in "eE")
    ):
        i += 1
    raw = text[start:i].replace("_", "")
    try:
        number: int | float = float(raw) if any(c in raw for c in ".eE") else int(raw)
    except ValueError:
        raise ConditionError(f"invalid number {raw!r}", text, start) from None
    return _Token("number", number, start), i


def _read_braced_ref(text: str, start: int) -> tuple[_Token, int]:
    end = text.find("}", start)
    if end < 0:
        raise ConditionError("'{' without a closing '}'", text, start)
    inner = text[start + 1 : end].strip()
    if not inner.startswith("state."):
        raise ConditionError(
            f"placeholder {{{inner}}} must name a state field as {{state.<field>}}", text, start
        )
    return _Token("ref", _split_path(inner[len("state.") :], text, start), start), end + 1


def _read_word(text: str, start: int) -> tuple[_Token, int]:
    i = start
    while i < len(text) and (
        text[i] in _NAME_CHARS
        or (text[i] == "." and i + 1 < len(text) and text[i + 1] in _NAME_START)
    ):
        i += 1
    word = text[start:i]
    if word.startswith("state."):
        return _Token("ref", _split_path(word[len("state.") :], text, start), start), i
    if "." in word:
        raise ConditionError(
            f"unknown name {word!r}; refer to state fields as state.<field>", text, start
        )
    return _Token("name", word, start), i


def _read_operator(text: str, i: int) -> tuple[_Token, int]:
    two = text[i : i + 2]
    if two in _COMPARISONS:
        return _Token("op", two, i), i + 2
    if text[i] in "<>()[],":
        return _Token("op", text[i], i), i + 1
    if text[i] == "=":
        raise ConditionError("'=' is not an operator (use '==')", text, i)
    raise ConditionError(f"unexpected character {text[i]!r}", text, i)


def _read_string(text: str, start: int) -> tuple[str, int]:
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append({"n": "\n", "t": "\t"}.get(text[i + 1], text[i + 1]))
            i += 2
        elif ch == quote:
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    raise ConditionError("unterminated string", text, start)


def _split_path(dotted: str, text: str, pos: int) -> tuple[str, ...]:
    parts = tuple(dotted.split("."))
    for part in parts:
        if not part or part[0] not in _NAME_START or any(c not in _NAME_CHARS for c in part):
            raise ConditionError(f"invalid field reference 'state.{dotted}'", text, pos)
    return parts


# The expression tree is made of tuples tagged by their first item: ref (a state path),
# lit (a literal), list (literals), not, and, or, and cmp (operator, left, right).


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def is_word(self, word: str) -> bool:
        return self.tok.kind == "name" and self.tok.value == word

    def is_op(self, op: str) -> bool:
        return self.tok.kind == "op" and self.tok.value == op

    def error(self, message: str) -> ConditionError:
        return ConditionError(message, self.text, self.tok.pos)

    def describe(self) -> str:
        tok = self.tok
        if tok.kind == "end":
            return "end of condition"
        if tok.kind == "ref":
            return "state." + ".".join(tok.value)
        return repr(tok.value)

    def parse(self) -> tuple:
        if self.tok.kind == "end":
            raise self.error("empty condition")
        tree = self.or_expr()
        if self.tok.kind != "end":
            raise self.error(f"unexpected {self.describe()}")
        return tree

    def or_expr(self) -> tuple:
        left = self.and_expr()
        while self.is_word("or"):
            self.i += 1
            left = ("or", left, self.and_expr())
        return left

    def and_expr(self) -> tuple:
        left = self.not_expr()
        while self.is_word("and"):
            self.i += 1
            left = ("and", left, self.not_expr())
        return left

    def not_expr(self) -> tuple:
        if self.is_word("not"):
            self.i += 1
            return ("not", self.not_expr())
        return self.comparison()

    def comparison(self) -> tuple:
        left = self.operand()
        if self.tok.kind == "op" and self.tok.value in _COMPARISONS:
            op = self.tok.value
            self.i += 1
            return ("cmp", op, left, self.operand())
        if self.is_word("in"):
            self.i += 1
            return ("cmp", "in", left, self.operand())
        if (
            self.is_word("not")
            and self.tokens[self.i + 1].kind == "name"
            and (self.tokens[self.i + 1].value == "in")
        ):
            self.i += 2
            return ("not", ("cmp", "in", left, self.operand()))
        return left

    def operand(self) -> tuple:
        tok = self.tok
        if tok.kind == "ref":
            self.i += 1
            return ("ref", tok.value)
        if tok.kind in ("number", "string"):
            self.i += 1
            return ("lit", tok.value)
        if tok.kind == "name" and tok.value.lower() in _LITERAL_WORDS:
            self.i += 1
            return ("lit", _LITERAL_WORDS[tok.value.lower()])
        if self.is_op("("):
            self.i += 1
            inner = self.or_expr()
            if not self.is_op(")"):
                raise self.error(f"expected ')', found {self.describe()}")
            self.i += 1
            return inner
        if self.is_op("["):
            return self.list_literal()
        if tok.kind == "name":
            if tok.value in ("and", "or", "not", "in"):
                raise self.error(f"expected a value before {tok.value!r}")
            raise self.error(f"unknown name {tok.value!r}; refer to state fields as state.<field>")
        raise self.error(f"expected a value, found {self.describe()}")

    def list_literal(self) -> tuple:
        self.i += 1
        values: list[Any] = []
        while not self.is_op("]"):
            item = self.operand()
            if item[0] != "lit":
                raise self.error("list items must be literals")
            values.append(item[1])
            if self.is_op(","):
                self.i += 1
            elif not self.is_op("]"):
                raise self.error(f"expected ',' or ']', found {self.describe()}")
        self.i += 1
        return ("list", tuple(values))


@dataclass(frozen=True)
class Condition:
    """A parsed route condition."""

    text: str
    is_default: bool
    _tree: tuple | None = None

    @property
    def fields(self) -> set[str]:
        """Names of the top-level state fields the condition reads."""
        return {path[0] for path in self.paths}

    @property
    def paths(self) -> set[tuple[str, ...]]:
        """Every state path the condition reads, e.g. ``("review", "score")``."""
        found: set[tuple[str, ...]] = set()
        _collect(self._tree, found)
        return found

    def evaluate(self, state: Mapping[str, Any]) -> bool:
        """True when the condition holds for ``state``; ``default`` always holds. Never raises."""
        if self.is_default or self._tree is None:
            return True
        return _truthy(_eval(self._tree, state))


def parse_condition(text: str) -> Condition:
    """Parse a route condition; raises ConditionError saying what is wrong and where."""
    if not isinstance(text, str):
        raise ConditionError(f"a condition must be text, not {type(text).__name__}", str(text), 0)
    stripped = text.strip()
    if stripped == "default":
        return Condition(text=text, is_default=True)
    if len(text) > MAX_LENGTH:
        raise ConditionError(
            f"the condition is {len(text)} characters long; at most {MAX_LENGTH} are allowed",
            text,
            MAX_LENGTH,
        )
    try:
        tree = _Parser(text).parse()
    except RecursionError:
        tree = None
    if tree is None or _depth(tree) > MAX_DEPTH:
        # Bounded depth keeps evaluation, which recurses, far from Python's limit.
        raise ConditionError(f"the condition nests deeper than {MAX_DEPTH} levels", text, 0)
    return Condition(text=text, is_default=False, _tree=tree)


def _depth(node: Any) -> int:
    """Nesting depth of a parsed tree, without recursion."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        current, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(current, tuple):
            stack.extend((child, depth + 1) for child in current if isinstance(child, tuple))
    return deepest


def _collect(node: tuple | None, found: set[tuple[str, ...]]) -> None:
    if node is None:
        return
    kind = node[0]
    if kind == "ref":
        found.add(node[1])
    elif kind == "not":
        _collect(node[1], found)
    elif kind in ("and", "or"):
        _collect(node[1], found)
        _collect(node[2], found)
    elif kind == "cmp":
        _collect(node[2], found)
        _collect(node[3], found)


def _lookup(state: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    current: Any = state
    for key in path:
        if not isinstance(current, Mapping) or key not in current:
            return None
        current = current[key]
    return current


def _truthy(value: Any) -> bool:
    return bool(value)


def _eval(node: tuple, state: Mapping[str, Any]) -> Any:
    kind = node[0]
    if kind == "ref":
        return _lookup(state, node[1])
    if kind == "lit":
        return node[1]
    if kind == "list":
        return list(node[1])
    if kind == "not":
        return not _truthy(_eval(node[1], state))
    if kind == "and":
        return _truthy(_eval(node[1], state)) and _truthy(_eval(node[2], state))
    if kind == "or":
        return _truthy(_eval(node[1], state)) or _truthy(_eval(node[2], state))
    return _compare(node[1], _eval(node[2], state), _eval(node[3], state))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) != isinstance(right, bool):
        return False
    try:
        return bool(left == right)
    except Exception:  # exotic values: unequal rather than a crashed route
        return False


def _compare(op: str, left: Any, right: Any) -> bool:
    if op == "==":
        return _equal(left, right)
    if op == "!=":
        return not _equal(left, right)
    if op == "in":
        if isinstance(right, str):
            return isinstance(left, str) and left in right
        if isinstance(right, list | tuple):
            return any(_equal(left, item) for item in right)
        if isinstance(right, Mapping):
            return isinstance(left, str) and left in right
        return False
    comparable = (_is_number(left) and _is_number(right)) or (
        isinstance(left, str) and isinstance(right, str)
    )
    if not comparable:
        return False
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    return bool(left >= right)
