"""PQL text -> :mod:`ast` (``parse``), with lark's LALR parser (linear time) and readable syntax errors.

The grammar is ``grammar.lark``. Three things lark cannot do alone are done here:

* ``let V = e in body``: the post-lexer renames the first ``in`` at the let's bracket depth to ``LETIN``, so the
  membership operator ``in`` inside ``e`` is not confused with the let separator (pql.md §3).
* ``and``/``or`` chains are built as balanced trees (they are associative), so a 10 KB ``a and b and ...`` stays
  shallow for the recursive passes (checker, printer, compilers). Anything else nested deeper than
  :data:`MAX_DEPTH` levels is refused with a syntax error instead of overflowing the stack later.
* lark's exceptions are turned into :class:`PQLSyntaxError` with plain-words expectations and hints for the known
  doc typos (curly quotes, unterminated strings, ``@{...}`` context references, ``&&``/``==``...).
"""

from __future__ import annotations

import difflib
import re
import threading
from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from segmentation_pipelines.pql import ast
from segmentation_pipelines.pql.errors import PQLError, PQLSyntaxError

# Deepest syntax tree and longest text accepted: the limits every PQL stage shares (pql/limits.py).
from segmentation_pipelines.pql.limits import DEPTH_MESSAGE, MAX_DEPTH, MAX_LENGTH, too_deep  # noqa: E402

_UNITS = {
    "centuries": "century",
    "millennia": "millennium",
    "millenia": "millennium",
    "millenium": "millennium",
}


def normalize_unit(word: str) -> str:
    """``Days`` -> ``day``, ``centuries`` -> ``century``: the singular lower-case unit name of :data:`ast.TimeUnit`."""
    word = word.lower()
    if word in _UNITS:
        return _UNITS[word]
    return word[:-1] if word.endswith("s") else word


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "/": "/", "\\": "\\", '"': '"', "'": "'"}
_ESCAPE_RE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.S)


def decode_string(raw: str) -> str:
    """The value of a quoted string token. Unknown escapes keep their backslash (``"\\w"`` stays a regex escape)."""

    def repl(m: re.Match[str]) -> str:
        s = m.group(1)
        if len(s) == 5:
            return chr(int(s[1:], 16))
        return _ESCAPES.get(s, "\\" + s)

    return _ESCAPE_RE.sub(repl, raw[1:-1])


# --- post-lexer: let ... in, bracket depth ---------------------------------------------------------------------------
_OPEN = {"LPAR", "LSQB", "LBRACE"}
_CLOSE = {"RPAR", "RSQB", "RBRACE"}


class _PostLexer:
    """Renames the ``in`` that closes a ``let`` value to ``LETIN``; refuses absurd bracket nesting early."""

    always_accept = ("IN",)

    def __init__(self) -> None:
        self.local = threading.local()

    def process(self, stream):
        depth = 0
        lets: list[int] = []  # bracket depth of every let still waiting for its "in"
        seen: list[Token] = []  # the strings, for the "string not closed" diagnosis
        self.local.seen = seen
        for tok in stream:
            kind = tok.type
            if kind in _OPEN:
                depth += 1
                if depth > MAX_DEPTH:
                    raise PQLSyntaxError(
                        f"the expression is nested too deeply (more than {MAX_DEPTH} brackets); simplify it",
                        tok.line,
                        tok.column,
                        str(tok),
                    )
            elif kind in _CLOSE:
                depth -= 1
                while lets and lets[-1] > depth:
                    lets.pop()
            elif kind == "LET":
                lets.append(depth)
            elif kind == "IN" and lets and lets[-1] == depth:
                lets.pop()
                tok = Token.new_borrow_pos("LETIN", tok.value, tok)
            if kind == "STRING":
                seen.append(tok)
            yield tok


# --- transformer: parse tree -> ast ------------------------------------------------------------------------------------
def _pos(children) -> ast.Pos:
    """Position of the first child that has one (rules start with a kept token or a node)."""
    for c in children:
        if isinstance(c, Token):
            return (c.line, c.column)
        if isinstance(c, ast.Node):
            return c.pos
    return ast.NO_POS


def _tpos(tok: Token) -> ast.Pos:
    return (tok.line, tok.column)


def _balanced(op: str, operands: list, positions: list[ast.Pos]) -> ast.Expr:
    """A balanced tree of ``op`` over ``operands`` (same split rule everywhere, so printing flat and re-parsing
    gives the same tree)."""
    if len(operands) == 1:
        return operands[0]
    mid = len(operands) // 2
    left = _balanced(op, operands[:mid], positions[:mid])
    right = _balanced(op, operands[mid:], positions[mid:])
    return ast.Binary(op, left, right, pos=positions[0])


class _Chain(list):
    """Operands of an ``and``/``or`` chain being parsed (appending is O(1); a left-recursive rule rebuilding a
    tree or lark's ``(AND x)*`` flattening would copy the list at every step: quadratic). Turned into a balanced
    :class:`ast.Binary` tree by :func:`_finish` as soon as another rule receives it."""

    op: str

    @classmethod
    def grow(cls, op: str, left, right) -> _Chain:
        if isinstance(left, _Chain) and left.op == op:
            chain = left
        else:
            chain = cls([_finish(left)])
            chain.op = op
        if isinstance(right, _Chain) and right.op == op:
            chain.extend(right)
        else:
            chain.append(_finish(right))
        return chain


def _finish(node):
    if isinstance(node, _Chain):
        return _balanced(node.op, node, [x.pos for x in node])
    return node


def _finishing(method):
    def wrapper(self, children):
        return method(self, [_finish(c) if isinstance(c, _Chain) else c for c in children])

    return wrapper


def _syntax(message: str, node_or_tok, text: str = "") -> PQLSyntaxError:
    pos = _tpos(node_or_tok) if isinstance(node_or_tok, Token) else node_or_tok.pos
    return PQLSyntaxError(message, pos[0], pos[1], text or str(getattr(node_or_tok, "value", "")))


class _ToAst(Transformer):
    # literals
    def string(self, c):
        return ast.Literal(decode_string(c[0]), "string", pos=_tpos(c[0]))

    def integer(self, c):
        return ast.Literal(int(c[0]), "integer", pos=_tpos(c[0]))

    def double(self, c):
        return ast.Literal(float(c[0]), "number", pos=_tpos(c[0]))

    def true(self, c):
        return ast.Literal(True, "boolean", pos=_tpos(c[0]))

    def false(self, c):
        return ast.Literal(False, "boolean", pos=_tpos(c[0]))

    def list_(self, c):
        return ast.ListLiteral(tuple(x for x in c[1:] if x is not None), pos=_pos(c))

    def entry(self, c):
        return (decode_string(c[0]), c[1])

    def object_(self, c):
        entries = tuple(x for x in c[1:] if x is not None)
        keys = [k for k, _ in entries]
        for i, k in enumerate(keys):
            if k in keys[:i]:
                raise PQLSyntaxError(f"the key '{k}' appears twice in this object", *_pos(c), k)
        return ast.ObjectLiteral(entries, pos=_pos(c))

    # names and paths
    def name(self, c):
        # The lexer reads these words as names only where their construct cannot start (after "not"); everywhere
        # else they start it, so a name spelt so could not be printed back: refuse it wherever it appears.
        if str(c[0]).lower() in _PREFIX_WORDS:
            raise _syntax(
                f"'{c[0]}' starts a '{str(c[0]).lower()} ...' expression and cannot be used as a name; "
                "rename the variable or write the condition without it",
                c[0],
            )
        return ast.Name(str(c[0]), pos=_tpos(c[0]))

    def param(self, c):
        return ast.Param(int(c[0][1:]), pos=_tpos(c[0]))

    def this(self, c):
        return ast.This(pos=_tpos(c[0]))

    def up(self, c):
        return ast.Up(len(c[0]), str(c[-1]), pos=_tpos(c[0]))

    def anchor(self, c):
        return ast.TimeAnchor(c[0].lower(), pos=_tpos(c[0]))

    def member(self, c):
        return ast.Member(c[0], str(c[1]), pos=_pos(c))

    def args(self, c):
        return tuple(x for x in c if x is not None)

    def method_call(self, c):
        return ast.MethodCall(c[0], str(c[1]), c[2], pos=_pos(c))

    def call(self, c):
        return ast.Call(str(c[0]), c[1], pos=_pos(c))

    def filter(self, c):
        return ast.Filter(c[0], c[1], pos=_pos(c))

    def lambda_(self, c):
        _lpar, *params, _arrow, body = c
        names = []
        for p in params:
            if not isinstance(p, ast.Name):
                raise _syntax("the parameters of a lambda '(A, B) => ...' must be plain names", p)
            if p.name in names:
                raise _syntax(f"the lambda parameter '{p.name}' appears twice", p, p.name)
            names.append(p.name)
        return ast.Lambda(tuple(names), body, pos=_pos(c))

    # operators
    def negate(self, c):
        operand = c[1]
        if (
            isinstance(operand, ast.Literal)
            and operand.kind in ("integer", "number")
            and not _is_negative(operand)
        ):
            return ast.Literal(-operand.value, operand.kind, pos=_tpos(c[0]))
        return ast.Unary("-", operand, pos=_tpos(c[0]))

    def not_op(self, c):
        return ast.Unary("not", c[1], pos=_tpos(c[0]))

    def arith(self, c):
        return ast.Binary(str(c[1]), c[0], c[2], pos=_pos(c))

    def compare(self, c):
        return ast.Binary(str(c[1]), c[0], c[2], pos=_pos(c))

    def membership(self, c):
        op = "in" if c[1].lower() == "in" else "notIn"
        return ast.Binary(op, c[0], c[2], pos=_pos(c))

    def string_match(self, c):
        return ast.Binary(c[1].lower(), c[0], c[2], pos=_pos(c))

    def or_op(self, c):
        return _Chain.grow("or", c[0], c[2])

    def and_op(self, c):
        return _Chain.grow("and", c[0], c[2])

    # time
    def occurs(self, c):
        return ast.Occurs(c[0], pos=_pos(c), **c[2])

    def occurs_offset(self, c):
        op, amount, unit, direction, ref = c
        return {
            "form": "offset",
            "op": str(op),
            "amount": int(amount),
            "unit": normalize_unit(unit),
            "direction": direction.lower(),
            "ref": ref,
        }

    def occurs_direction(self, c):
        return {"form": "direction", "direction": c[0].lower(), "ref": c[1]}

    def occurs_on(self, c):
        return {"form": "on", "ref": c[-1]}

    def occurs_between(self, c):
        return {"form": "between", "ref": c[1], "ref2": c[3]}

    def rel_period(self, c):
        return ast.RelativePeriod(c[0].lower(), normalize_unit(c[1]), pos=_tpos(c[0]))

    # comprehension forms
    def cond_clause(self, c):
        return c[-1]

    def decl(self, c):
        return ast.VarDecl(str(c[0]), c[2], c[3], pos=_tpos(c[0]))

    def decls(self, c):
        return tuple(c)

    def select_expr(self, c):
        return ast.Select(c[1], pos=_tpos(c[0]))

    def quant_expr(self, c):
        return ast.Quantifier(c[0].lower(), c[1], pos=_tpos(c[0]))

    def agg_over(self, c):
        return ast.AggregateOver(c[0].lower(), c[1], c[3], pos=_tpos(c[0]))

    def agg_simple(self, c):
        decl = ast.VarDecl(str(c[1]), c[3], c[4], pos=_tpos(c[1]))
        return ast.AggregateOver(c[0].lower(), None, (decl,), pos=_tpos(c[0]))

    def let_expr(self, c):
        return ast.Let(str(c[1]), c[3], c[5], pos=_tpos(c[0]))

    # chain
    def when_spec(self, c):
        if len(c) == 5:
            op, amount, unit, direction, ref = c
            return ast.When(ref, str(op), int(amount), normalize_unit(unit), direction.lower(), pos=_pos(c))
        if len(c) == 2:
            return ast.When(c[1], direction=c[0].lower(), pos=_pos(c))
        return ast.When(c[0], pos=_pos(c))

    def step_where(self, c):
        return ("where", c[1], c[0])

    def step_when(self, c):
        return ("when", c[1], c[0])

    def step_count(self, c):
        n = int(c[1])
        if n < 1:
            raise _syntax("COUNT(n) needs a count of at least 1", c[1])
        return ("count", n, c[0])

    def step(self, c):
        label, _what, what, *clauses = c
        parts: dict = {}
        for key, value, tok in clauses:
            if key in parts:
                raise _syntax(f"{key.upper()}(...) appears twice in chain step '{label}'", tok)
            parts[key] = value
        return ast.ChainStep(str(label), what, pos=_tpos(label), **parts)

    def chain(self, c):
        return ast.Chain(c[1], str(c[2]), tuple(c[3:]), pos=_tpos(c[0]))

    # top level
    def query(self, c):
        body = c[0]
        if isinstance(body, ast.Lambda):
            return ast.Query(body.body, body.params, pos=body.pos)
        return ast.Query(body, pos=_pos(c))


for _name, _method in list(vars(_ToAst).items()):
    if callable(_method) and not _name.startswith("_") and _name not in ("or_op", "and_op"):
        setattr(_ToAst, _name, _finishing(_method))


def _is_negative(lit: ast.Literal) -> bool:
    return lit.value < 0 or (isinstance(lit.value, float) and str(lit.value).startswith("-"))


_POST_LEXER = _PostLexer()


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(
        (Path(__file__).with_name("grammar.lark")).read_text(),
        parser="lalr",
        lexer="contextual",
        postlex=_POST_LEXER,
        transformer=_ToAst(),
        maybe_placeholders=True,
    )


def parse(text: str) -> ast.Query:
    """Parse PQL text into an :class:`ast.Query`; raises :class:`PQLSyntaxError` (and nothing else) on bad input."""
    if not isinstance(text, str):
        raise PQLSyntaxError(f"a PQL expression must be text, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise PQLSyntaxError(f"the expression is longer than {MAX_LENGTH} characters")
    if not text.strip():
        raise PQLSyntaxError("the expression is empty", 1, 1, "", ["a condition"])
    try:
        query = _parser().parse(text)
    except PQLError:
        raise
    except UnexpectedInput as err:
        raise _explain(err, text) from None
    except Exception as err:  # noqa: BLE001 - the contract: any text parses or raises PQLSyntaxError
        inner = getattr(err, "orig_exc", None)
        if isinstance(inner, PQLError):
            raise inner from None
        raise PQLSyntaxError(f"internal parser error ({type(err).__name__}): {err}") from None
    _check_depth(query)
    return query


# --- depth guard ----------------------------------------------------------------------------------------------------
def _check_depth(query: ast.Query) -> None:
    node = too_deep(query)
    if node is not None:
        raise PQLSyntaxError(DEPTH_MESSAGE, node.pos[0], node.pos[1])


# --- error wording ----------------------------------------------------------------------------------------------------
_VALUE_STARTS = {
    "NAME", "STRING", "INT", "DOUBLE", "TRUE", "FALSE", "PARAM", "THIS", "CARETS", "ANCHOR", "LPAR", "LSQB",
    "LBRACE", "CHAIN", "MINUS", "NOT", "BANG", "SELECT", "EXISTS", "FORALL", "LET", "AGG",
}  # fmt: skip
_OPERATORS = {
    "COMP_OP", "EQ", "PLUS", "MINUS", "MUL_OP", "AND", "OR", "IN", "NOTIN", "LIKE", "MATCHES", "OCCURS", "DOT",
}  # fmt: skip
_WORDS = {
    "RPAR": "')'",
    "RSQB": "']'",
    "RBRACE": "'}'",
    "COMMA": "','",
    "COLON": "':'",
    "LPAR": "'('",
    "ARROW": "'=>'",
    "FROM": "'from'",
    "OVER": "'over'",
    "WHERE": "'where'",
    "WHAT": "'WHAT'",
    "WHEN": "'WHEN'",
    "COUNT": "'COUNT'",
    "LETIN": "'in'",
    "EQ": "'='",
    "INT": "a whole number",
    "UNIT": "a time unit (days, hours, months...)",
    "DIRECTION": "'before', 'after' or 'from'",
    "NAME": "a name",
    "STRING": "a string in double quotes",
    "BETWEEN": "'between'",
    "$END": "the end of the expression",
}
_HINTS = [
    (re.compile(r"[\u201c\u201d\u2018\u2019]"), 'curly quotes are not allowed: type straight quotes (")'),
    (re.compile(r"@"), "'@{...}' context references are a Journey Optimizer extension, not segment PQL"),
    (re.compile(r"&&"), "write 'and' instead of '&&'"),
    (re.compile(r"\|\|"), "write 'or' instead of '||'"),
    (re.compile(r"=="), "write '=' instead of '=='"),
    (re.compile(r"<>"), "write '!=' instead of '<>'"),
    (
        re.compile(r"_?\{[A-Za-z_ ]+\}|<[A-Za-z]+>"),
        "replace the documentation placeholder with your own name",
    ),
]
_KEYWORDS = [
    "and",
    "or",
    "not",
    "in",
    "notIn",
    "like",
    "matches",
    "occurs",
    "from",
    "where",
    "over",
    "select",
    "exists",
    "forall",
    "between",
    "before",
    "after",
    "WHAT",
    "WHEN",
    "WHERE",
    "COUNT",
    "chain",
]
_PREFIX_WORDS = {"select", "exists", "forall", "let", "sum", "average", "min", "max"}
_SWALLOWED = re.compile(r"[(,\[]\s*[\"']$")  # a string token that ends where a new string obviously starts
_CODE = re.compile(r"\)\s*(?:and|or)\s", re.I)  # ... and that swallowed code


def describe_expected(expected: set[str]) -> list[str]:
    """Plain words for a set of lark terminal names."""
    words: list[str] = []
    if expected & {"NAME", "STRING", "INT", "DOUBLE"}:
        words.append("a value")
    ops = expected & _OPERATORS
    if len(ops) >= 3:
        words.append("an operator")
    for name in sorted(expected):
        word = _WORDS.get(name)
        if word is None or (words[:1] == ["a value"] and name in _VALUE_STARTS | {"NAME", "STRING", "INT"}):
            continue
        if name == "EQ" and "an operator" in words:
            continue
        if word not in words:
            words.append(word)
    return words or ["something else"]


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _prev_text(text: str, offset: int) -> str:
    before = text[:offset].rstrip()
    m = re.search(r"(\"[^\"]*\"|'[^']*'|[A-Za-z_0-9$.]+|[<>!=]=|=>|\S)$", before)
    return m.group(1) if m else ""


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _explain(err: UnexpectedInput, text: str) -> PQLSyntaxError:
    seen = getattr(_POST_LEXER.local, "seen", [])
    # A string that swallowed the code after it: its closing quote is really the next string's opening quote.
    for tok in seen:
        if _SWALLOWED.search(tok.value) and _CODE.search(tok.value):
            return PQLSyntaxError(
                "this string is not closed: add the missing closing quote",
                tok.line,
                tok.column,
                tok.value[:40],
                ["a closing quote"],
            )
    if isinstance(err, UnexpectedCharacters):
        offset = err.pos_in_stream
        char = text[offset]
        line, col = err.line, err.column
        expected = describe_expected(set(err.allowed or ()))
        if char in "\"'":
            return PQLSyntaxError(
                f"this string is not closed: add the closing {char}", line, col, text[offset : offset + 20],
                [f"a closing {char}"],
            )  # fmt: skip
        for pattern, hint in _HINTS:
            if pattern.match(text, offset) or (
                hint.startswith("replace") and pattern.search(text, max(0, offset - 1))
            ):
                return PQLSyntaxError(f"unexpected '{char}': {hint}", line, col, char, expected)
        return PQLSyntaxError(
            f"unexpected character '{char}'; expected {_join(expected)}", line, col, char, expected
        )
    if isinstance(err, UnexpectedEOF) or (isinstance(err, UnexpectedToken) and err.token.type == "$END"):
        expected = describe_expected(set(err.expected or ()))
        offset = len(text.rstrip())
        line, col = _line_col(text, offset)
        prev = _prev_text(text, offset)
        return PQLSyntaxError(
            f"the expression ends too early: expected {_join(expected)} after '{prev}'",
            line,
            col,
            "",
            expected,
        )
    assert isinstance(err, UnexpectedToken)
    tok = err.token
    expected = describe_expected(set(getattr(err, "accepts", None) or err.expected or ()))
    offset = tok.start_pos if tok.start_pos is not None else 0
    prev = _prev_text(text, offset)
    found = str(tok.value)
    message = f"expected {_join(expected)} after '{prev}' but found '{found}'"
    if not prev:
        message = f"expected {_join(expected)} but found '{found}'"
    for pattern, hint in _HINTS:
        if pattern.search(text, max(0, offset - 1), offset + 2) or (
            hint.startswith("replace") and pattern.search(text, max(0, offset - 1))
        ):
            message += f" ({hint})"
            break
    if prev.lower() in _PREFIX_WORDS:
        message += f"; to combine '{prev} ...' with other conditions, put it in parentheses: ({prev} ...)"
    elif tok.type == "NAME":
        near = difflib.get_close_matches(found.lower(), _KEYWORDS, n=1, cutoff=0.7)
        if near:
            message += f"; did you mean '{near[0]}'?"
    if tok.type == "IN" and "'in'" not in expected and prev:
        message += " ('in' needs a value on its left, e.g. person.birthMonth in [3, 6])"
    return PQLSyntaxError(message, tok.line, tok.column, found, expected)
