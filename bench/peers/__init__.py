"""The peers `make bench` serves beside the fleet: the same read, built the usual way.

Each app answers ``GET /api/v2/users?limit=10`` with the first users of the
fleet's own SQLite database (``$LOCKGATE_BENCH_DB``), as JSON:

- ``flask_app``: plain Flask, one blueprint per version, ``sqlite3``;
- ``drf_app``: Django REST Framework, ``URLPathVersioning``;
- ``cadwyn_app``: Cadwyn on FastAPI, the version in the path.

They need the ``bench`` dependency group (``uv sync --group bench``) and are
never imported by the library.
"""
