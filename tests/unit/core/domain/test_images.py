"""The image decisions: which image new servers use, when to build, what to prune,
which builders are stale (and the reconciler's view of them)."""

from __future__ import annotations

from datetime import datetime, timedelta

from core.cloud.provider import ProviderServer
from core.domain.images import (
    ImageView,
    build_needed,
    builder_finding,
    builder_labels,
    for_new_servers,
    stale_builds,
    to_prune,
)
from core.domain.reconcile import Fix, Kind, diff
from core.platform.settings import Settings

NOW = datetime(2026, 3, 1, 12, 0)
A, B = "a" * 40, "b" * 40


def image(
    id: int, state: str = "available", commit: str = A, age_min: int = 0, **kw: object
) -> ImageView:
    created = NOW - timedelta(minutes=age_min)
    provider = kw.pop("provider_image_id", 1000 + id if state == "available" else None)
    return ImageView(id, state, commit, created, provider_image_id=provider, **kw)  # type: ignore[arg-type]


def test_new_servers_use_the_newest_available_image_of_their_release() -> None:
    images = [image(1, age_min=30), image(2, age_min=10), image(3, "building"), image(4, commit=B)]
    chosen = for_new_servers(images, A)
    assert chosen is not None and chosen.id == 2
    assert for_new_servers([image(1, "failed"), image(2, "deleted")], A) is None  # stock


def test_a_build_is_needed_only_without_an_image_and_not_right_after_a_failure() -> None:
    assert build_needed([], A, NOW, 3600) == f"release {A[:12]} has no image"
    assert build_needed([image(1)], A, NOW, 3600) is None
    assert build_needed([image(1, "building")], A, NOW, 3600) is None
    assert build_needed([image(1, commit=B)], A, NOW, 3600) is not None
    failed = image(1, "failed", finished_at=NOW - timedelta(minutes=10))
    assert build_needed([failed], A, NOW, 3600) is None  # within the retry wait
    later = NOW + timedelta(hours=1)
    assert "last build failed" in (build_needed([failed], A, later, 3600) or "")


def test_stale_builds_are_the_building_ones_past_their_deadline() -> None:
    late = image(1, "building", deadline_at=NOW - timedelta(seconds=1))
    running = image(2, "building", deadline_at=NOW + timedelta(minutes=5))
    assert stale_builds([late, running, image(3)], NOW) == [late]


def test_retention_keeps_the_newest_the_current_and_those_in_use() -> None:
    images = [image(i, age_min=60 - i, commit=B if i == 1 else A) for i in range(1, 6)]
    # keep 2: images 5 and 4; image 1 is the current release's (B) only one: kept.
    doomed = to_prune(images, 2, B, in_use=set())
    assert [i.id for i in doomed] == [2, 3]  # oldest first
    assert [i.id for i in to_prune(images, 2, B, in_use={1003})] == [2]
    assert to_prune([image(1, "building"), image(2, "failed")], 1, A, set()) == []


def test_a_builder_is_stale_once_its_build_is_over_or_late() -> None:
    running = image(1, "building", builder_provider_id=7, deadline_at=NOW + timedelta(minutes=1))
    assert builder_finding(running, 7, NOW) is None
    assert builder_finding(image(1, "building"), 7, NOW) is None  # create in flight
    assert "duplicate" in (builder_finding(running, 8, NOW) or "")
    assert "available" in (builder_finding(image(1), 7, NOW) or "")
    assert "past its time limit" in (builder_finding(running, 7, NOW + timedelta(minutes=2)) or "")
    assert "does not exist" in (builder_finding(None, 7, NOW) or "")


def test_the_reconciler_deletes_stale_builders_and_leaves_running_ones() -> None:
    settings = Settings.load(environ={})

    def builder(provider_id: int, image_id: int) -> ProviderServer:
        labels = builder_labels(image_id, "rachel")
        created = NOW.isoformat()  # young: builders need no safety age
        return ProviderServer(provider_id, f"b{image_id}", "running", None, None, labels, created)

    running = image(1, "building", builder_provider_id=11, deadline_at=NOW + timedelta(minutes=1))
    report = diff(
        [builder(11, 1), builder(12, 2)],
        [],
        {},
        NOW,
        settings,
        images={1: running, 2: image(2, "failed")},
    )
    assert [(f.kind, f.fix, f.provider_id) for f in report.findings] == [
        (Kind.ORPHAN, Fix.DELETE, 12)
    ]
    assert "stale builder of image 2" in report.findings[0].reason
