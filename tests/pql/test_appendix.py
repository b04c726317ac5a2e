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


def test_fixture_has_the_whole_appendix():
    assert len(EXAMPLES) == 119
    assert len(BROKEN) == 4  # unterminated string, two curly quotes, AJO @{...}


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


# The spec lies in shared/ beside the clone (CI puts a copy there), or at its usual place on a developer machine.
SPEC = next(
    (
        p
        for p in (
            Path(__file__).resolve().parents[3] / "shared/spec/pql.md",
            Path("/work/shared/spec/pql.md"),
        )
        if p.exists()
    ),
    Path("/work/shared/spec/pql.md"),
)


@pytest.mark.skipif(not SPEC.exists(), reason="the shared spec is not on this machine")
def test_fixture_matches_the_spec_appendix():
    """The copied examples are exactly the appendix's (one-line `- \\`...\\`` items and fenced multi-line ones)."""
    appendix = SPEC.read_text().split("## Appendix", 1)[1].splitlines()
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
