"""Errors of the PQL front end: one base class with the position and wording a marketer can act on.

``PQLError`` is a ``ValueError`` carrying ``line``/``column`` (1-based; 0 when unknown), ``text`` (the offending
piece of the expression), ``expected`` (words describing what would have been valid) and ``message`` (the
reason). ``str(err)`` reads ``"line 1, column 23: expected a value after '=' but found ')'"``.
"""

from __future__ import annotations


class PQLError(ValueError):
    """A PQL expression that cannot be used, with where and why."""

    def __init__(
        self,
        message: str,
        line: int = 0,
        column: int = 0,
        text: str = "",
        expected: list[str] | tuple[str, ...] = (),
    ) -> None:
        self.message = message
        self.line = line
        self.column = column
        self.text = text
        self.expected = list(expected)
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.line:
            return f"line {self.line}, column {self.column}: {self.message}"
        return self.message

    def to_dict(self) -> dict:
        """JSON-friendly form (for REST error bodies and the CLI)."""
        return {
            "message": self.message,
            "line": self.line,
            "column": self.column,
            "text": self.text,
            "expected": self.expected,
        }

    def caret(self, source: str) -> str:
        """The source line of the error with a caret under the column (for terminal output)."""
        lines = source.splitlines() or [""]
        if not self.line or self.line > len(lines):
            return ""
        line = lines[self.line - 1]
        return f"{line}\n{' ' * max(self.column - 1, 0)}^"


class PQLSyntaxError(PQLError):
    """The text is not PQL (cannot be parsed)."""


class PQLValidationError(PQLError):
    """The expression parses but cannot run against this schema (unknown field, type mismatch, ...)."""
