from django.urls import path

from . import views

app_name = "judging"

urlpatterns = []  # the staff jobs page is ops:jobs (it shows every derivation, not only scoring)

api_urlpatterns = [
    path("jobs/", views.JobListApi.as_view(), name="api_jobs"),
    path("jobs/<int:pk>/", views.JobDetailApi.as_view(), name="api_job_detail"),
]
