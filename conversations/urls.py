from django.urls import path

from . import views

app_name = "conversations"

urlpatterns = [
    path("", views.test_send, name="test_send"),
    path("send/fields/", views.variable_fields, name="variable_fields"),
    path("calls/<int:pk>/status/", views.call_status, name="call_status"),
    path("conversations/<int:pk>/", views.conversation_detail, name="detail"),
    path("conversations/<int:pk>/reply/", views.conversation_reply, name="reply"),
]
