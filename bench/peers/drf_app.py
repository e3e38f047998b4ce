"""Django REST Framework with ``URLPathVersioning``: ``/api/<version>/users``."""

from __future__ import annotations

import os
from typing import Any

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-only",  # a throwaway app on loopback
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "rest_framework"],
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("LOCKGATE_BENCH_DB", ":memory:"),
        }
    },
    USE_TZ=True,
    REST_FRAMEWORK={
        "DEFAULT_VERSIONING_CLASS": "rest_framework.versioning.URLPathVersioning",
        "ALLOWED_VERSIONS": ["v1", "v2"],
        "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
        "DEFAULT_AUTHENTICATION_CLASSES": [],
        "DEFAULT_PERMISSION_CLASSES": [],
        "UNAUTHENTICATED_USER": None,
    },
)
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.db import models  # noqa: E402
from django.urls import re_path  # noqa: E402
from rest_framework import serializers  # noqa: E402
from rest_framework.request import Request  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402

from .store import limit_of  # noqa: E402


class BenchUser(models.Model):
    """The fleet's users table, read as it is (no migrations)."""

    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100)
    email = models.CharField(max_length=320)

    class Meta:
        app_label = "auth"  # an installed app: the model needs one, it adds no table
        db_table = "users"
        managed = False


class UserSerializer(serializers.ModelSerializer[BenchUser]):
    class Meta:
        model = BenchUser
        fields = ["id", "first_name", "last_name", "email"]


class Users(APIView):
    def get(self, request: Request, version: str) -> Response:
        found = BenchUser.objects.order_by("id")[: limit_of(request.query_params.get("limit"))]
        body: dict[str, Any] = {"users": UserSerializer(found, many=True).data}
        return Response(body)


urlpatterns = [re_path(r"^api/(?P<version>v[12])/users$", Users.as_view())]
application = get_wsgi_application()
