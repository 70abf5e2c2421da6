"""REST API of the ops app: health for staff.

`/healthz` (arena) stays a bare liveness check for load balancers: one database query."""

from drf_spectacular.utils import extend_schema
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from .selectors import health_get


class HealthApi(APIView):
    """Database, broker, workers seen in the last minute, owed derivations and the oldest one's age.
    503 when the database does not answer; "status" is "degraded" when the broker is down, no
    worker was seen or something is stuck."""

    permission_classes = [IsAdminUser]

    @extend_schema(responses=dict)
    def get(self, request):
        health = health_get()
        return Response(health, status=503 if health["database"] != "ok" else 200)
