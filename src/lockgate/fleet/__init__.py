"""Running a fleet of lockgate services from one manifest, ``fleet.toml``.

The manifest is the only list of services: ``lockgate run`` and ``lockgate
serve`` read it, and so does every generator of deployment files.
"""

from __future__ import annotations

from .front import FleetApp, create_fleet_app
from .manifest import Fleet, Service, load_manifest

__all__ = [
    "Fleet",
    "FleetApp",
    "Service",
    "create_fleet_app",
    "load_manifest",
]
