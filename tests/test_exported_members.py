"""The public surface is ``__all__``: sorted, complete, and every name resolves
(the shape of httpx's ``tests/test_exported_members.py``)."""

from __future__ import annotations

import importlib
import types

import pytest

import lockgate


def isort_order(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps ``__all__`` in: CONSTANTS, Classes, functions."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


PACKAGES = [
    "lockgate",
    "lockgate.versioning",
    "lockgate.openapi",
    "lockgate.runtime",
    "lockgate.serving",
    "lockgate.client",
    "lockgate.fleet",
]


def test_top_level_all_is_exactly_the_public_names() -> None:
    public = [
        name
        for name, value in vars(lockgate).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"  # from __future__
    ]
    assert lockgate.__all__ == sorted(public, key=isort_order)


@pytest.mark.parametrize("name", PACKAGES)
def test_every_package_exports_a_sorted_all_of_real_names(name: str) -> None:
    package = importlib.import_module(name)
    exported = package.__all__
    assert exported == sorted(exported, key=isort_order)
    assert len(set(exported)) == len(exported)
    missing = [member for member in exported if not hasattr(package, member)]
    assert missing == []
    # Nothing private or a bare module is exported.
    assert not [m for m in exported if m.startswith("_")]
    assert not [m for m in exported if isinstance(getattr(package, m), types.ModuleType)]
