"""The OSV fuzz harness (tests/fuzz/fuzz_osv.py) runs, finds nothing, and is replayable."""

from __future__ import annotations

import importlib
import json
from typing import TYPE_CHECKING

import pytest

from ironhub.monitor.advisories import AdvisoryError, parse_feed

if TYPE_CHECKING:
    from types import ModuleType


@pytest.fixture(scope="module")
def harness() -> ModuleType:
    return importlib.import_module("tests.fuzz.fuzz_osv")


def test_a_short_run_finds_no_violation(harness: ModuleType) -> None:
    # A few seconds' budget: about 2000 cases on a developer machine, fewer on a slow runner.
    report = harness.run(iterations=2000, seed=11, max_seconds=4.0)
    assert report.cases >= 300
    assert report.violations == []
    for kind in ("json", "zip", "advisory", "withdrawn", "match"):
        assert report.accepted[kind] > 0, kind
    assert report.refusals.total() > 0


def test_the_same_seed_replays_the_same_cases(harness: ModuleType) -> None:
    first = harness.run(iterations=150, seed=5)
    second = harness.run(iterations=150, seed=5)
    assert (first.accepted, first.refusals) == (second.accepted, second.refusals)
    other = harness.run(iterations=150, seed=6)
    assert (first.accepted, first.refusals) != (other.accepted, other.refusals)


def test_main_prints_a_report(harness: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert harness.main(["--iterations", "50", "--seed", "1"]) == 0
    output = capsys.readouterr().out
    assert "cases=50" in output
    assert "violations=0" in output


def test_the_time_budget_stops_a_run(harness: ModuleType) -> None:
    assert harness.run(iterations=10**9, seed=1, max_seconds=0.0).cases <= 1


def test_every_vector_and_valid_seed_is_a_seed(harness: ModuleType) -> None:
    vectors = harness.load_osv_vectors()
    seeds = harness.seeds()
    assert len(vectors) >= 40
    assert all(vector.data in seeds for vector in vectors)
    assert sum(seed.startswith(b"PK\x03\x04") for seed in seeds) >= 3
    # The valid seeds are valid: each gives its advisory, the ZIP archives too.
    for document in harness.VALID_ADVISORIES:
        batch = parse_feed(json.dumps(document).encode(), name="seed.json")
        assert [a.id for a in batch.advisories] == [document["id"]]
        assert batch.refused == ()
    for seed in seeds:
        try:
            parse_feed(seed, name="seed")
        except AdvisoryError:
            pass


def test_the_oracle_catches_a_matcher_that_skips_entries(
    harness: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reference evaluation is independent of the index: an index that files nothing
    # disagrees with it as soon as a case matches.
    from ironhub.monitor import advisories

    monkeypatch.setattr(advisories.AdvisoryIndex, "add", lambda self, advisory: None)
    report = harness.run(iterations=300, seed=3)
    assert any("OSV's rules give" in v for v in report.violations)
