from django.contrib import admin
from django.contrib.auth.decorators import login_required
from drf_spectacular.views import SpectacularSwaggerView
from django.urls import include, path, re_path

from arena import urls as arena_urls
from arena.accounts import ThrottledLoginView
from arena.views import healthz, media_file
from ops import urls as ops_urls
from ratings import urls as ratings_urls
from judging import urls as judging_urls

api_patterns = [
    path("docs/", login_required(SpectacularSwaggerView.as_view(url_name="schema")), name="api_docs"),
    *arena_urls.api_urlpatterns,
    *ratings_urls.api_urlpatterns,
    *judging_urls.api_urlpatterns,
    *ops_urls.api_urlpatterns,
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include(api_patterns)),
    re_path(r"^media/(?P<path>.+)$", media_file, name="media"),
    path("", include("ratings.urls")),
    path("", include("ops.urls")),
    path("", include("judging.urls")),
    path("", include("arena.urls")),
]

handler400 = "arena.accounts.json_or_html_400"
handler403 = "arena.accounts.json_or_html_403"
handler404 = "arena.accounts.json_or_html_404"
handler500 = "arena.accounts.json_or_html_500"
