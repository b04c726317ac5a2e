"""Every example of the appendix of pql.md parses, except the doc typos, which fail at the typo's position.

The examples are copied in ``appendix_examples.txt`` (header ``=== ok`` or ``=== error <line>:<column>``).
Each parsed example also survives the round trips text -> json -> text -> parse.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segmentation_pipelines.pql import PQLSyntaxError, from_json, parse, to_json, to_text

FIXTURE = Path(__file__).with_name("appendix_examples.txt")


def _examples() -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    head, lines, tags = None, [], ""
    for line in FIXTURE.read_text().splitlines():
        if line.startswith("#") and head is None:
            continue
        if line.startswith("=== "):
            if head is not None:
                out.append((head, "\n".join(lines), tags))
            head, _, tags = line[4:].partition(" | ")
            lines = []
        elif head is not None:
            lines.append(line)
    out.append((head, "\n".join(lines), tags))
    return out


EXAMPLES = _examples()
PARSEABLE = [e for e in EXAMPLES if e[0] == "ok"]
BROKEN = [e for e in EXAMPLES if e[0] != "ok"]


def test_fixture_keeps_only_the_doc_typos_as_errors():
    # The appendix's four typos: an unterminated string, two curly quotes, Journey Optimizer's @{...}.
    assert len(BROKEN) == 4
    assert len(PARSEABLE) == len(EXAMPLES) - 4 > 100


@pytest.mark.parametrize(("head", "text", "tags"), PARSEABLE, ids=[e[1][:60] for e in PARSEABLE])
def test_example_parses_and_round_trips(head, text, tags):
    query = parse(text)
    assert parse(to_text(query)) == query
    tree = json.loads(json.dumps(to_json(query)))
    assert from_json(tree) == query
    assert parse(to_text(from_json(tree))) == query


@pytest.mark.parametrize(("head", "text", "tags"), BROKEN, ids=[e[1][:60] for e in BROKEN])
def test_doc_typo_fails_at_its_position(head, text, tags):
    line, column = (int(x) for x in head.split()[1].split(":"))
    with pytest.raises(PQLSyntaxError) as info:
        parse(text)
    err = info.value
    assert (err.line, err.column) == (line, column), str(err)
    char = text.splitlines()[line - 1][column - 1]
    assert char in '\u201c@"', char
    reason = {"\u201c": "curly quote", "@": "Journey Optimizer", '"': "not closed"}[char]
    assert reason in err.message


APPENDIX = Path(__file__).with_name("pql_appendix.md")  # the spec's appendix, copied verbatim


def test_fixture_matches_the_spec_appendix():
    """The copied examples are exactly the appendix's (one-line `- \\`...\\`` items and fenced multi-line ones)."""
    appendix = APPENDIX.read_text().split("## Appendix", 1)[1].splitlines()
    expected, i = [], 0
    while i < len(appendix):
        line = appendix[i]
        if line.startswith("- `"):
            expected.append(line[3:].split("` — ", 1)[0])
        elif line.startswith("- ("):
            start = next(j for j in range(i + 1, len(appendix)) if appendix[j].startswith("```"))
            end = next(j for j in range(start + 1, len(appendix)) if appendix[j].startswith("```"))
            expected.append("\n".join(appendix[start + 1 : end]))
            i = end
        i += 1
    assert [text for _, text, _ in EXAMPLES] == expected
