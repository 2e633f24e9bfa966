from django.contrib import admin
from django.contrib.auth.views import LogoutView
from django.urls import include, path

from .accounts import LoginForm, SwitchboardLoginView

admin.site.site_header = "Switchboard administration"
admin.site.site_title = "Switchboard"
admin.site.login_form = LoginForm

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", SwitchboardLoginView.as_view(), name="login"),
    # Log in and out only: Switchboard sends no e-mail, so Django's password-reset pages would say a mail was
    # sent when none can be. An Admin sets a new password (manage.py changepassword NAME, or the admin).
    path("accounts/logout/", LogoutView.as_view(), name="logout"),
    path("connections/", include("connectors.urls")),
    path("api/", include("conversations.api.urls")),
    path("", include("conversations.urls")),
]

# Every failure names its problem; an outage of the database or the broker is a 503 (config/errors.py).
handler400 = "config.errors.bad_request"
handler404 = "config.errors.not_found"
handler500 = "config.errors.server_error"
