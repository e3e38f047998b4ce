"""The v1 → v2 migration guide, linked from v1's ``Link: rel="deprecation"``."""

from __future__ import annotations

from flask import Blueprint, render_template

from .versions import GUIDE_PATH

bp = Blueprint("guide", __name__, template_folder="templates")


@bp.get(GUIDE_PATH)
def migration_guide() -> str:
    """Every change between v1 and v2, field by field."""
    return render_template("migration-v1-to-v2.html")
