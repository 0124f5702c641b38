"""The Azure cloud-feature vectors (tests/vectors/azure_cloud.json) against the pure rules.

The same vectors run live in tests/hostile/test_cloud_hostile.py and seed
tests/fuzz/fuzz_cloud.py (SECURITY-TESTS.md §3: one set of cases for the rules, the live
endpoint and the fuzz corpora). Here each vector meets the functions the endpoint calls:

- publishes: :func:`classify_device_publish` for the topic, then for reported patches
  :func:`parse_patch` and :func:`patch_reported` on a new twin (the section limit is checked on
  the merged result, so a ``twin-400`` may come from either);
- subscriptions: :func:`check_device_subscribe`.

Refusals never quote the topic, filter, request id or body they refuse (STYLE.md). The short
fuzz run at the end keeps the harness in ``make test``.
"""

from __future__ import annotations

import importlib
import json
from typing import TYPE_CHECKING

import pytest
from tests.vectors.load import (
    SUBSCRIPTION_KINDS,
    CloudPublishVector,
    CloudSubscribeVector,
    expand_text,
    load_cloud_vectors,
)

from ironhub import errors
from ironhub.codec.azure import (
    SubscriptionKind,
    check_device_subscribe,
    classify_device_publish,
)
from ironhub.registry.twin import Twin, parse_patch, patch_reported

if TYPE_CHECKING:
    from pathlib import Path
    from types import ModuleType

VECTORS = load_cloud_vectors()
KIND_OF_OUTCOME = {
    "twin-400": "twin-patch-reported",
    "ok-204": "twin-patch-reported",
    "ok-200": "twin-get",
    "method-refused": "method-response",
}
#: Shorter texts may legitimately occur in a rule's message ("1", "{}").
QUOTE_CHECK_MIN_CHARS = 8


def _error(name: str | None) -> type[Exception]:
    assert name is not None
    error = getattr(errors, name)
    assert issubclass(error, errors.IronhubError)
    return error  # type: ignore[no-any-return]


def _assert_not_quoted(exc: BaseException, *secrets: str | bytes) -> None:
    message = str(exc)
    for secret in secrets:
        text = secret.decode("utf-8", "replace") if isinstance(secret, bytes) else secret
        if len(text) >= QUOTE_CHECK_MIN_CHARS:
            assert text not in message, message


def _apply_patch(vector: CloudPublishVector) -> None:
    patch = parse_patch(vector.payload)
    twin = patch_reported(Twin.new(vector.identity, 0.0), patch, now=1.0)
    assert twin.reported_version == 2
    json.loads(twin.device_document())


@pytest.mark.parametrize("vector", VECTORS.publishes, ids=lambda v: v.name)
def test_publish_vector(vector: CloudPublishVector) -> None:
    device_id, module_id = vector.device_id, vector.module_id
    if vector.expect == "close":
        with pytest.raises(_error(vector.error)) as refused:
            classify_device_publish(vector.topic, device_id=device_id, module_id=module_id)
        # Exactly the class, not a subclass or a sibling the endpoint might treat differently.
        assert type(refused.value) is _error(vector.error)
        _assert_not_quoted(refused.value, vector.topic)
        return
    classified = classify_device_publish(vector.topic, device_id=device_id, module_id=module_id)
    assert classified.kind == KIND_OF_OUTCOME[vector.expect]
    assert classified.request_id == vector.rid
    assert classified.properties == ()
    if vector.expect == "method-refused":
        assert isinstance(classified.status, int)
        assert -(2**31) <= classified.status < 2**31
    else:
        assert classified.status is None
    if vector.expect == "twin-400":
        with pytest.raises(errors.ValidationError) as refused:
            _apply_patch(vector)
        _assert_not_quoted(refused.value, vector.payload, vector.rid or "")
    elif vector.expect == "ok-204":
        _apply_patch(vector)


@pytest.mark.parametrize("vector", VECTORS.subscriptions, ids=lambda v: v.name)
def test_subscribe_vector(vector: CloudSubscribeVector) -> None:
    device_id, module_id = vector.device_id, vector.module_id
    if vector.expect == "close":
        with pytest.raises(_error(vector.error)) as refused:
            check_device_subscribe(vector.topic_filter, device_id=device_id, module_id=module_id)
        _assert_not_quoted(refused.value, vector.topic_filter)
    else:
        assert vector.kind is not None
        kind = check_device_subscribe(vector.topic_filter, device_id=device_id, module_id=module_id)
        assert kind == SubscriptionKind(vector.kind)


def test_vectors_cover_every_outcome_and_both_identities() -> None:
    assert {v.expect for v in VECTORS.publishes} == {
        "close",
        "twin-400",
        "method-refused",
        "ok-200",
        "ok-204",
    }
    for expect in ("close", "twin-400", "method-refused", "ok-200", "ok-204"):
        assert {v.identity for v in VECTORS.publishes if v.expect == expect} == {
            "dev1",
            "dev1/mod1",
        }, expect
    assert {v.kind for v in VECTORS.subscriptions if v.kind} == SUBSCRIPTION_KINDS
    every: list[CloudPublishVector | CloudSubscribeVector] = [
        *VECTORS.publishes,
        *VECTORS.subscriptions,
    ]
    assert {v.error for v in every if v.error} == {
        "AuthorizationError",
        "ValidationError",
    }


def test_loader_kinds_are_the_codec_kinds() -> None:
    # The loader is standard-library only, so it lists the kinds itself.
    assert {kind.value for kind in SubscriptionKind} == SUBSCRIPTION_KINDS


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"expect": "ok"}, "expect"),
        ({"expect": "close"}, "error is required"),
        ({"rid": None}, "rid is required"),
        ({"error": "ValidationError"}, "error is required"),
        ({"live_event": "protocol-error"}, "live_event"),
        ({"identity": "dev1/+"}, "identity"),
        ({"kind": "retain"}, "kind"),
        ({"payload_hex": "00"}, "exactly one"),
        ({"topic": [{"repeat": "x", "times": -1}]}, "part"),
        ({"topic": 5}, "list of parts"),
        ({"surprise": 1}, "keys must be"),
    ],
)
def test_loader_refuses_malformed_vectors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: dict[str, object], complaint: str
) -> None:
    import tests.vectors.load as load

    vector: dict[str, object] = {
        "name": "v",
        "kind": "publish",
        "identity": "dev1",
        "topic": "$iothub/twin/GET/?$rid=1",
        "payload_text": " ",
        "expect": "ok-200",
        "rid": "1",
        "ref": "test",
    }
    vector.update(change)
    vector = {k: v for k, v in vector.items() if v is not None}
    if "expect" in change and change["expect"] == "close":
        vector.pop("rid")
    (tmp_path / "broken.json").write_text(json.dumps([vector]))
    monkeypatch.setattr(load, "VECTORS_DIR", tmp_path)
    with pytest.raises(ValueError, match=complaint):
        load.load_cloud_vectors("broken")


def test_loader_refuses_duplicate_names_and_bad_subscriptions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tests.vectors.load as load

    monkeypatch.setattr(load, "VECTORS_DIR", tmp_path)
    good = {
        "name": "s",
        "kind": "subscribe",
        "identity": "dev1",
        "filter": "#",
        "expect": "close",
        "error": "AuthorizationError",
        "ref": "test",
    }
    for broken, complaint in (
        ([good, good], "unique"),
        ([{**good, "expect": "ok:everything"}], "ok:<kind>"),
        ([{**good, "rid": "1"}], "no rid"),
        ({"not": "a list"}, "list"),
        (["not an object"], "object"),
    ):
        (tmp_path / "broken.json").write_text(json.dumps(broken))
        with pytest.raises(ValueError, match=complaint):
            load.load_cloud_vectors("broken")


def test_expand_text() -> None:
    assert expand_text("abc") == "abc"
    assert expand_text(["a", {"repeat": "xy", "times": 3}, "b"]) == "axyxyxyb"


# --- the fuzz harness (tests/fuzz/fuzz_cloud.py), briefly ---------------------------------------


@pytest.fixture(scope="module")
def harness() -> ModuleType:
    return importlib.import_module("tests.fuzz.fuzz_cloud")


def test_a_short_fuzz_run_finds_no_violation(harness: ModuleType) -> None:
    report = harness.run(iterations=2000, seed=11)
    assert report.cases == 2000
    assert report.violations == []
    # Both sides of every rule were reached.
    assert report.accepted["telemetry"] > 0
    assert report.accepted["twin-patch-reported"] > 0
    assert report.accepted["subscribe"] > 0
    assert report.accepted["patch"] > 0
    assert report.refusals.total() > 0


def test_the_same_fuzz_seed_replays_the_same_cases(harness: ModuleType) -> None:
    first = harness.run(iterations=300, seed=5)
    second = harness.run(iterations=300, seed=5)
    assert (first.accepted, first.refusals) == (second.accepted, second.refusals)


def test_fuzz_main_prints_a_report(harness: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert harness.main(["--iterations", "50", "--seed", "1"]) == 0
    output = capsys.readouterr().out
    assert "cases=50" in output
    assert "violations=0" in output
