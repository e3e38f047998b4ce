"""The v1 → v2 migration guide, linked from v1's ``Link: rel="deprecation"``."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, render_template

from lockgate.versioning import get_state
from lockgate.versioning.versions import Label

from .versions import GUIDE_PATH

bp = Blueprint("guide", __name__, template_folder="templates")


@bp.get(GUIDE_PATH)
def migration_guide() -> str:
    """Every change between v1 and v2, field by field, with v1's dates in force
    (a lifecycle file that moves the sunset moves the date here too)."""
    v1 = get_state().bundle.get(Label.parse("1"))  # type: ignore[arg-type]
    assert v1 is not None
    return render_template(
        "migration-v1-to-v2.html",
        deprecated=_day(v1.deprecated) if v1.deprecated else "(not yet)",
        sunset=_moment(v1.sunset) if v1.sunset else "(no date set)",
    )


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def _moment(moment: datetime) -> str:
    """``2027-06-30 23:59:59 UTC``; a midnight is just its day."""
    if (moment.hour, moment.minute, moment.second) == (0, 0, 0):
        return _day(moment)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
