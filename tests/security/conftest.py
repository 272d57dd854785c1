"""Fixtures of the security tests: Hypothesis profiles and stores of their own.

``PARTNERGATE_FUZZ`` picks the fuzz profile: ``ci`` (the default, what ``make test`` runs:
a fixed number of examples, derandomized so every run tries the same inputs) or ``long``
(``make fuzz``: many more examples, random, shrinking a failure to its smallest form).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, Phase, settings

from ..conftest import store_of_its_own

_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]

settings.register_profile(
    "ci",
    max_examples=150,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=False,
    suppress_health_check=_SLOW_IS_FINE,
    # a known failure must not cost minutes of shrinking in every run; `make fuzz` shrinks
    phases=[Phase.explicit, Phase.generate],
)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("PARTNERGATE_FUZZ_EXAMPLES", "5000")),
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=_SLOW_IS_FINE,
)
settings.load_profile(os.environ.get("PARTNERGATE_FUZZ", "ci"))


@pytest.fixture(scope="module")
def own_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A store of the module's own, empty at the start: what a fuzz run compares before
    and after each example stays small, and no other module's rows move under it."""
    with store_of_its_own(tmp_path_factory.mktemp("own_store"), "partnergate_sec") as url:
        yield url
