from django.urls import path

from . import views

app_name = "judging"

# The staff jobs page is ops:jobs (it shows every derivation, not only scoring).
urlpatterns = [
    path("staff/studies/<slug:slug>/judges/", views.judge_rubrics_page, name="rubrics"),
    path("staff/studies/<slug:slug>/judges/run/", views.judge_run_start, name="judge_run_start"),
    path("staff/judges/run/", views.judge_run_start, name="judge_run_start_any"),
]

api_urlpatterns = [
    path("jobs/", views.JobListApi.as_view(), name="api_jobs"),
    path("jobs/<int:pk>/", views.JobDetailApi.as_view(), name="api_job_detail"),
    path("studies/<slug:slug>/judge-runs/", views.JudgeRunListCreateApi.as_view(), name="api_judge_runs"),
    path("judge-runs/<int:pk>/", views.JudgeRunDetailApi.as_view(), name="api_judge_run"),
]
