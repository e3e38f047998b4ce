"""Running a fleet of lockgate services from one manifest, ``fleet.toml``.

The manifest is the only list of services: ``lockgate run`` and ``lockgate
serve`` read it, and so does every generator of deployment files.

The rule of this folder: it is the top of the arrows. It may import every
other lockgate package (versioning, openapi, runtime, serving) and nothing
imports it; it reaches the services only by the import strings the manifest
names, never by importing ``services`` itself.
"""

from __future__ import annotations

from .front import FleetApp, create_fleet_app
from .manifest import Fleet, Service, Worker, load_manifest

__all__ = [
    "Fleet",
    "FleetApp",
    "Service",
    "Worker",
    "create_fleet_app",
    "load_manifest",
]
