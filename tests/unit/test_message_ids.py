"""MessageGuids: SAP's length and alphabet, unique, and in the order they were made."""

from __future__ import annotations

import re
import time

from partnergate.runtime.exchange import new_message_id

GUID = re.compile(r"[0-9A-Za-z]{28}")


def test_ids_look_like_sap_guids_and_do_not_repeat() -> None:
    ids = [new_message_id() for _ in range(5000)]
    assert all(GUID.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(ids)
    # the random part differs within one millisecond too
    assert len({i[9:] for i in ids}) == len(ids)


def test_ids_of_later_milliseconds_sort_after_earlier_ones() -> None:
    """Time order keeps inserts into the log's primary-key index at its end."""
    earlier = [new_message_id() for _ in range(50)]
    time.sleep(0.002)
    later = [new_message_id() for _ in range(50)]
    assert max(earlier) < min(later)
    # the time digits sort the same as bytes and in a case-insensitive collation
    assert max(i[:9] for i in earlier) < min(i[:9] for i in later)
    assert max(i[:9].lower() for i in earlier) < min(i[:9].lower() for i in later)
