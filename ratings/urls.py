from django.urls import path

from . import api, views

app_name = "ratings"

urlpatterns = [
    path("leaderboard/", views.leaderboard_index, name="leaderboard_index"),
    path("leaderboard/<slug:slug>/", views.leaderboard_page, name="leaderboard"),
    path("leaderboard/<slug:slug>/recompute/", views.leaderboard_recompute, name="leaderboard_recompute"),
    path("staff/studies/<slug:slug>/annotators/", views.annotators_page, name="annotators"),
    path("staff/studies/<slug:slug>/annotators/<int:pk>/exclude/", views.annotator_exclude, name="annotator_exclude"),
]

api_urlpatterns = [
    path("studies/<slug:slug>/leaderboard/", api.LeaderboardApi.as_view(), name="api_leaderboard"),
    path("studies/<slug:slug>/export/votes/", api.VotesExportApi.as_view(), name="api_export_votes"),
    path("studies/<slug:slug>/export/preferences/", api.PreferencesExportApi.as_view(), name="api_export_preferences"),
]
