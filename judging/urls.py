from django.urls import path

from . import api, views

app_name = "judging"

# The staff jobs page is ops:jobs (it shows every derivation, not only scoring).
urlpatterns = [
    path("staff/studies/<slug:slug>/judges/", views.judge_rubrics_page, name="rubrics"),
    path("staff/studies/<slug:slug>/judges/run/", views.judge_run_start, name="judge_run_start"),
    path("staff/judges/run/", views.judge_run_start, name="judge_run_start_any"),
]

api_urlpatterns = [
    path("jobs/", api.JobListApi.as_view(), name="api_jobs"),
    path("jobs/<int:pk>/", api.JobDetailApi.as_view(), name="api_job_detail"),
    path("studies/<slug:slug>/judge-runs/", api.JudgeRunListCreateApi.as_view(), name="api_judge_runs"),
    path("judge-runs/<int:pk>/", api.JudgeRunDetailApi.as_view(), name="api_judge_run"),
]
