"""Failed logins counted over the worker processes of one server: two throttles over one
file behave as one (each process of ``serve --workers N`` holds one)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from partnergate.security.throttle import Limits, LoginThrottle, SharedFailures

LIMITS = Limits(per_user_address=3, per_address=100, per_user=100, window=300)


def _fail_once(path: str) -> None:
    LoginThrottle(LIMITS, SharedFailures(path)).finish("user", "alice", "203.0.113.5", False)


def test_failures_in_one_process_count_in_another(tmp_path: Path) -> None:
    path = str(tmp_path / "logins.sqlite")
    SharedFailures.prepare(path)
    mine = LoginThrottle(LIMITS, SharedFailures(path))
    context = multiprocessing.get_context("spawn")
    for _ in range(3):
        other = context.Process(target=_fail_once, args=(path,))
        other.start()
        other.join(30)
        assert other.exitcode == 0
    refused = mine.check("user", "alice", "203.0.113.5")
    assert refused is not None and "this user from here" in refused.reason
    assert 1 <= refused.retry_after <= 300
    assert mine.check("user", "alice", "203.0.113.6") is None  # another address
    assert mine.check("user", "bob", "203.0.113.5") is None  # another user


def test_a_correct_login_forgets_the_guesses_for_every_process(tmp_path: Path) -> None:
    path = tmp_path / "logins.sqlite"
    SharedFailures.prepare(path)
    one, two = (LoginThrottle(LIMITS, SharedFailures(path)) for _ in range(2))
    one.finish("user", "carol", "198.51.100.1", False)
    one.finish("user", "carol", "198.51.100.1", False)
    two.finish("user", "carol", "198.51.100.1", False)
    assert one.check("user", "carol", "198.51.100.1") is not None
    two.finish("user", "carol", "198.51.100.1", True)
    assert one.check("user", "carol", "198.51.100.1") is None


def test_a_file_that_fails_falls_back_to_counting_in_memory(tmp_path: Path) -> None:
    SharedFailures.prepare(tmp_path / "logins.sqlite")
    failures = SharedFailures(tmp_path / "logins.sqlite")
    throttle = LoginThrottle(LIMITS, failures)
    failures._db.close()  # the file is gone from under the process
    for _ in range(3):
        throttle.finish("user", "dave", "192.0.2.1", False)
    assert throttle.check("user", "dave", "192.0.2.1") is not None


def test_a_file_that_cannot_be_opened_counts_in_memory(tmp_path: Path) -> None:
    throttle = LoginThrottle(LIMITS, SharedFailures(tmp_path / "no-such-folder" / "x.sqlite"))
    for _ in range(3):
        throttle.finish("user", "erin", "192.0.2.2", False)
    assert throttle.check("user", "erin", "192.0.2.2") is not None
