"""Where every lockgate extension's settings come from, in one order.

Constructor arguments win over ``app.config``, which wins over ``LOCKGATE_*``
environment variables (read with Flask's ``Config.from_prefixed_env``, so
``LOCKGATE_CACHE_TTL=30`` is the int 30 and ``{"1": "5/minute"}`` a dict),
which win over the extension's defaults, kept in one mapping per extension.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from flask import Config, Flask

__all__ = ["DATA_DIR_ENV", "PREFIX", "apply_settings", "data_dir", "environment_settings"]

PREFIX = "LOCKGATE"
#: Where embedded data lives (SQLite files, keys, job results): ``./.lockgate``.
DATA_DIR_ENV = "LOCKGATE_DATA_DIR"


def data_dir() -> Path:
    """The folder for embedded data, created on first use."""
    folder = Path(os.environ.get(DATA_DIR_ENV) or ".lockgate").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def environment_settings(extra: Iterable[str] = ()) -> dict[str, Any]:
    """``LOCKGATE_*`` variables as config keys (prefix kept), JSON-decoded where
    they parse, plus the unprefixed names in ``extra`` (``REDIS_URL``) as text."""
    loaded = Config(os.getcwd())
    loaded.from_prefixed_env(PREFIX)
    found = {f"{PREFIX}_{key}": value for key, value in loaded.items()}
    found.update({name: os.environ[name] for name in extra if os.environ.get(name)})
    return found


def apply_settings(
    app: Flask,
    defaults: Mapping[str, Any],
    given: Mapping[str, Any] = (),  # type: ignore[assignment]
    *,
    extra: Iterable[str] = (),
) -> None:
    """Settle ``app.config`` for one extension: ``given`` > config > environment
    > ``defaults``. Only the keys in ``defaults``, ``given`` and ``extra`` are
    touched."""
    for key, value in dict(given).items():
        app.config[key] = value
    environment = environment_settings(extra)
    for key in (*defaults, *extra):
        if key not in app.config and key in environment:
            app.config[key] = environment[key]
    for key, value in defaults.items():
        app.config.setdefault(key, value)
