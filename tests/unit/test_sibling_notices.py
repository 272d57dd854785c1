"""On PostgreSQL, a worker whose message arrives before a sibling's change notification
forgets what it holds instead of serving the message from before that write."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from partnergate.runtime.changes import Change, Changes
from partnergate.store import siblings as siblings_module
from partnergate.store.changes import CHANNEL, ChangeListener, SiblingNotices
from partnergate.store.siblings import Siblings

SIBLING = "0a1b2c3d4e5f"


@pytest.fixture
def page() -> Iterator[Siblings]:
    shared = Siblings(2)
    yield shared
    siblings_module._current = None


def notify(listener: ChangeListener, notice: int, items: list[dict[str, object]]) -> None:
    payload = json.dumps({"n": SIBLING, "q": notice, "c": items})
    listener._receive(None, 0, CHANNEL, payload)


def test_a_notice_not_heard_yet_means_everything_may_have_changed(page: Siblings) -> None:
    page.attach(1)  # the sibling announces notice 1 before its commit
    page.notified(int(SIBLING, 16), 1)
    page.attach(0)
    heard: list[list[Change]] = []
    gaps: list[int] = []
    listener = ChangeListener("postgresql://db/x", heard.append, lambda: gaps.append(1))
    changes = Changes()
    forgotten: list[int] = []
    changes.subscribe(lambda batch: None, lambda: forgotten.append(1))
    changes.add_source(SiblingNotices(page, listener))

    changes.catch_up()
    assert forgotten == [1]  # not heard yet: forget everything once
    changes.catch_up()
    assert forgotten == [1]  # counted as heard from then on

    notify(listener, 1, [{"s": "StringParameters", "k": {"Pid": "P", "Id": "ADDRESS"}, "p": "P"}])
    assert heard == [[Change("StringParameters", {"Pid": "P", "Id": "ADDRESS"}, "P")]]
    changes.catch_up()
    assert forgotten == [1]

    page.attach(1)
    page.notified(int(SIBLING, 16), 2)
    page.attach(0)
    notify(listener, 2, [])  # heard before the next message: nothing to forget
    changes.catch_up()
    assert forgotten == [1] and gaps == []


def test_a_worker_does_not_wait_for_its_own_notices(page: Siblings) -> None:
    page.attach(0)
    page.notified(int(SIBLING, 16), 5)
    listener = ChangeListener("postgresql://db/x", lambda batch: None, lambda: None)
    assert SiblingNotices(page, listener).poll() == []
