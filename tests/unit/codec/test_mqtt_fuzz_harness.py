"""The nightly fuzz harness (tests/fuzz/fuzz_mqtt.py) runs, finds nothing, and is replayable."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from types import ModuleType


@pytest.fixture(scope="module")
def harness() -> ModuleType:
    return importlib.import_module("tests.fuzz.fuzz_mqtt")


def test_a_short_run_finds_no_violation(harness: ModuleType) -> None:
    report = harness.run(iterations=1500, seed=7)
    assert report.cases == 1500
    assert report.violations == []
    assert report.packets > 0
    assert report.refusals.total() > 0


def test_the_same_seed_replays_the_same_cases(harness: ModuleType) -> None:
    first = harness.run(iterations=200, seed=3)
    second = harness.run(iterations=200, seed=3)
    assert (first.packets, first.refusals) == (second.packets, second.refusals)


def test_main_prints_a_report(harness: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert harness.main(["--iterations", "50", "--seed", "1"]) == 0
    output = capsys.readouterr().out
    assert "cases=50" in output
    assert "violations=0" in output


def test_the_time_budget_stops_a_run(harness: ModuleType) -> None:
    assert harness.run(iterations=10**9, seed=1, max_seconds=0.0).cases <= 1
