from django.urls import path

from . import api, views, views_studies, views_vote

app_name = "arena"

urlpatterns = [
    path("", views.home, name="home"),
    path("staff/uploads/", views.upload_list, name="upload_list"),
    path("staff/uploads/<int:pk>/", views.upload_detail, name="upload_detail"),
    path("staff/studies/new/", views_studies.study_new, name="study_new"),
    path("staff/studies/preview/", views_studies.study_preview, name="study_preview"),
    path("staff/studies/<slug:slug>/edit/", views_studies.study_edit, name="study_edit"),
    path("staff/studies/<slug:slug>/gold/", views_studies.study_gold_add, name="study_gold_add"),
    path("staff/studies/<slug:slug>/try/", views_studies.study_try, name="study_try"),
    path("staff/studies/<slug:slug>/flags/", views_studies.flags_review, name="flags_review"),
    path("staff/studies/<slug:slug>/flags/<int:pk>/withdraw/", views_studies.output_withdraw, name="output_withdraw"),
    path("studies/<slug:slug>/", views_studies.study_overview, name="study_overview"),
    path("vote/<slug:slug>/", views_vote.vote_page, name="vote"),
    path("vote/<slug:slug>/start/", views_vote.vote_start, name="vote_start"),
    path("vote/<slug:slug>/answer/", views_vote.vote_answer, name="vote_answer"),
    path("vote/<slug:slug>/flag/", views_vote.vote_flag, name="vote_flag"),
    path("vote/<slug:slug>/image/<uuid:assignment>/<str:side>/", views_vote.vote_image, name="vote_image"),
]

api_urlpatterns = [
    path("schema/", api.SchemaApi.as_view(), name="schema"),
    path("token/", api.TokenApi.as_view(), name="api_token"),
    path("uploads/", api.UploadListCreateApi.as_view(), name="api_upload_list"),
    path("uploads/<int:pk>/", api.UploadDetailApi.as_view(), name="api_upload_detail"),
    path("studies/<slug:slug>/next-task/", api.NextTaskApi.as_view(), name="api_next_task"),
    path("studies/<slug:slug>/votes/", api.VoteApi.as_view(), name="api_vote"),
]
