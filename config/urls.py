from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "Switchboard administration"
admin.site.site_title = "Switchboard"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("connections/", include("connectors.urls")),
    path("api/", include("conversations.api.urls")),
    path("", include("conversations.urls")),
]
