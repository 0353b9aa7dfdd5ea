"""SECURITY.md's promises point at real tests: every row of its defence table names at least one
test, and every test it names exists (and, in the table, is not an expected failure)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
SECURITY_MD = ROOT / "SECURITY.md"
_TABLE_HEADING = "## Defences, and the tests that prove them"
_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def _test_functions(path: Path) -> dict[str, ast.FunctionDef]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name: node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    }


def _marked_xfail(function: ast.FunctionDef) -> bool:
    return any("xfail" in ast.unparse(decorator) for decorator in function.decorator_list)


def _table_rows() -> list[str]:
    text = SECURITY_MD.read_text(encoding="utf-8")
    section = text.split(_TABLE_HEADING, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return rows[2:]  # after the header and its separator


def test_every_row_of_the_defence_table_names_a_test_that_is_expected_to_pass() -> None:
    rows = _table_rows()
    assert len(rows) >= 20
    for row in rows:
        references = _REFERENCE.findall(row)
        assert references, f"a row names no test: {row[:80]}"
        for file, name in references:
            function = _test_functions(ROOT / file).get(name)
            assert function is not None, f"{file}::{name} does not exist"
            assert not _marked_xfail(function), f"{file}::{name} is an expected failure"


def test_every_test_named_anywhere_in_security_md_exists() -> None:
    references = _REFERENCE.findall(SECURITY_MD.read_text(encoding="utf-8"))
    missing = [
        f"{file}::{name}"
        for file, name in references
        if not (ROOT / file).is_file() or name not in _test_functions(ROOT / file)
    ]
    assert not missing
