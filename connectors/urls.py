from django.urls import path

from . import views

app_name = "connectors"

urlpatterns = [
    path("", views.connection_list, name="list"),
    path("new/", views.connection_edit, name="new"),
    path("<int:pk>/", views.connection_edit, name="edit"),
    path("<int:pk>/check/", views.connection_check_view, name="check"),
]
