"""The one regular-expression validator: a ``matches`` / ``regexGroup`` pattern is accepted only if both engines
run it (RE2 in DuckDB, the Rust ``regex`` crate in Polars) and it uses no Java-only construct whose meaning those
engines would change. The checker calls it, so a definition is refused when written, not when its job runs; the
compilers call it too (the same answer)."""

from __future__ import annotations

from functools import lru_cache

_JAVA_ONLY = [
    ("(?=", "lookahead"),
    ("(?!", "negative lookahead"),
    ("(?<=", "lookbehind"),
    ("(?<!", "negative lookbehind"),
    ("(?>", "atomic groups"),
    ("*+", "possessive quantifiers"),
    ("++", "possessive quantifiers"),
    ("?+", "possessive quantifiers"),
    ("\\p{java", "Java character classes"),
]
MAX_PATTERN = 1000


@lru_cache(maxsize=1024)
def regex_problem(pattern: str) -> str | None:
    """Why ``pattern`` cannot be used (a sentence), or None when both engines accept it."""
    shown = repr(pattern[:80])
    if len(pattern) > MAX_PATTERN:
        return f"regular expression {shown}... is longer than {MAX_PATTERN} characters"
    try:
        pattern.encode("utf-8")
    except UnicodeEncodeError:
        return f"regular expression {shown} contains an unpaired surrogate (not valid Unicode text)"
    for token, what in _JAVA_ONLY:
        if token in pattern:
            return f"regular expression {shown} uses {what}, which is not supported"
    i = 0
    while i < len(pattern) - 1:
        if pattern[i] == "\\":
            nxt = pattern[i + 1]
            if nxt.isdigit() and nxt != "0":
                return f"regular expression {shown} uses a backreference, which is not supported"
            if nxt in "kZGQE":
                return f"regular expression {shown} uses \\{nxt}, which is not supported"
            i += 2
            continue
        i += 1
    return _engine_problem(pattern, shown)


def _engine_problem(pattern: str, shown: str) -> str | None:
    import duckdb
    import polars as pl

    try:
        with duckdb.connect() as con:
            con.execute("SELECT regexp_matches('', $1), regexp_extract('', $1)", [pattern]).fetchall()
    except duckdb.Error:
        return f"regular expression {shown} is not valid (unbalanced brackets or a bad escape?)"
    try:
        pl.Series([""], dtype=pl.String).str.contains(pattern).to_list()
    except Exception:  # polars raises ComputeError (and others) for a pattern its regex crate refuses
        return f"regular expression {shown} is not valid (unbalanced brackets or a bad escape?)"
    return None
