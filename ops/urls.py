from django.urls import path

from . import api, views

app_name = "ops"

urlpatterns = [
    path("staff/jobs/", views.jobs_page, name="jobs"),
    path("staff/jobs/rerun/", views.derivation_rerun_view, name="rerun"),
]

api_urlpatterns = [
    path("health/", api.HealthApi.as_view(), name="api_health"),
]
