"""The type checker the test command runs is strict enough to catch a wrong record field."""

from __future__ import annotations

from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")
ROOT = Path(__file__).resolve().parents[2]

WRONG = '''
from imagedrop.ledger import JobKind, NewJob
from imagedrop.recipes import JobResult, Recipe

recipe = Recipe(promt="make it warmer")
job = NewJob(kind=JobKind.B64, filename="a.png", recipe={"prompt": "p"})
size: str = JobResult().size
'''


def test_a_wrong_record_field_is_an_error(tmp_path: Path) -> None:
    snippet = tmp_path / "snippet.py"
    snippet.write_text(WRONG)
    out, _, status = mypy_api.run([
        "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(ROOT / ".mypy_cache"),
        str(snippet)])
    assert status == 1, out
    assert 'Unexpected keyword argument "promt" for "Recipe"' in out
    assert 'incompatible type "dict[str, str]"; expected "Recipe"' in out
    assert 'expression has type "int | None", variable has type "str"' in out
