"""The public surface is ``__all__``, sorted, and every name resolves."""

from __future__ import annotations

import lockgate


def test_all_is_sorted_and_complete() -> None:
    assert lockgate.__all__ == sorted(lockgate.__all__)
    for name in lockgate.__all__:
        assert getattr(lockgate, name) is not None
    assert {"Versioning", "Version", "current_version"} <= set(lockgate.__all__)
