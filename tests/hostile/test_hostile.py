"""Hostile input against a real `imagedrop serve`, on the local folder and on COS (moto over
HTTP): every case gets a clear 4xx JSON or work that ends with a reason; afterwards the service
is healthy, nothing answered 5xx, no log line holds a planted secret and nothing was written
outside the data folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures import images
from tests.hostile.cases import Case, all_cases
from tests.hostile.harness import Receiver, Target

CASES = all_cases()


@pytest.fixture(name="target", scope="module", params=["local", "cos"])
def _target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Target]:
    receiver = Receiver()
    endpoint = request.getfixturevalue("moto_server") if request.param == "cos" else None
    target = Target(request.param, tmp_path_factory.mktemp(f"hostile-{request.param}"),
                    receiver, s3_endpoint=endpoint)
    try:
        target.start()
        (target.outside / "secret.png").write_bytes(images.tiny_png())
        target.new_log_lines()  # start-up lines are not a case's
        yield target
    finally:
        target.stop()
        receiver.close()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile(target: Target, case: Case) -> None:
    if case.local_only and target.kind != "local":
        pytest.skip("local folder only")
    try:
        case.run(target)
    finally:
        target.check_after_case()


def test_enough_cases() -> None:
    assert len(CASES) >= 150


def test_data_folder_untouched_outside(tmp_path: Path) -> None:
    """The harness's own check notices a write outside the data folder."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x").write_bytes(b"")
    assert sorted(p.name for p in outside.rglob("*")) == ["x"]
