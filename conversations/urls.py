from django.urls import path

from .api import pages as integrations
from .prompts import testset_views
from .prompts import views as prompt_views
from .support import views as support
from .views import console, logs, overview
from .whatsapp import views as whatsapp

app_name = "conversations"

urlpatterns = [
    path("", console.test_send, name="test_send"),
    path("send/fields/", console.variable_fields, name="variable_fields"),
    path("send/preview/", console.preview, name="preview"),
    path("calls/", logs.call_list, name="calls"),
    path("calls/export.csv", logs.export_csv, name="export_csv"),
    path("calls/export.jsonl", logs.export_jsonl, name="export_jsonl"),
    path("calls/<int:pk>/status/", console.call_status, name="call_status"),
    path("conversations/", logs.conversation_list, name="list"),
    path("conversations/<int:pk>/", logs.conversation_detail, name="detail"),
    path("conversations/<int:pk>/reply/", console.conversation_reply, name="reply"),
    path("conversations/<int:pk>/take-over/", support.take_over, name="take_over"),
    path("conversations/<int:pk>/hand-back/", support.hand_back, name="hand_back"),
    path("conversations/<int:pk>/staff-reply/", support.reply, name="staff_reply"),
    path("messages/<int:pk>/feedback/", support.feedback, name="feedback"),
    path("inbox/", support.inbox, name="inbox"),
    path("inbox/count/", support.inbox_count, name="inbox_count"),
    path("overview/", overview.overview, name="overview"),
    path("whatsapp/", whatsapp.channel_list, name="whatsapp_channels"),
    path("whatsapp/<int:pk>/", whatsapp.channel_detail, name="whatsapp_channel"),
    path("whatsapp/<int:pk>/webhook/", whatsapp.webhook, name="whatsapp_webhook"),
    path("whatsapp/<int:pk>/simulator/", whatsapp.simulator, name="whatsapp_simulator"),
    path("whatsapp/<int:pk>/simulator/messages/", whatsapp.simulator_messages, name="whatsapp_messages"),
    path("integrations/", integrations.integration_list, name="integrations"),
    path("integrations/new/", integrations.integration_new, name="integration_new"),
    path("integrations/<int:pk>/", integrations.integration_edit, name="integration_edit"),
    path("integrations/<int:pk>/token/", integrations.integration_rotate_token, name="integration_rotate_token"),
    path("integrations/<int:pk>/secret/", integrations.integration_signing_secret, name="integration_signing_secret"),
    path("integrations/<int:pk>/enabled/", integrations.integration_enabled, name="integration_enabled"),
    path("templates/", prompt_views.template_list, name="templates"),
    path("templates/new/", prompt_views.template_edit, name="template_new"),
    path("templates/preview/", prompt_views.template_preview, name="template_preview"),
    path("templates/<int:pk>/", prompt_views.template_edit, name="template_edit"),
    path("templates/<int:pk>/compare/", prompt_views.version_compare, name="template_compare"),
    path("templates/<int:pk>/requirement/", testset_views.template_requirement, name="template_requirement"),
    path("testsets/", testset_views.testset_list, name="testsets"),
    path("testsets/<int:pk>/", testset_views.testset_detail, name="testset"),
    path("testsets/<int:pk>/run/", testset_views.testrun_new, name="testrun_new"),
    path("testsets/<int:pk>/compare/", testset_views.testrun_compare, name="testrun_compare"),
    path("testsets/runs/<int:pk>/", testset_views.testrun_detail, name="testrun"),
    path("testsets/from-reply/<int:message_pk>/", testset_views.case_from_reply, name="case_from_reply"),
    path(
        "templates/<int:pk>/versions/<int:number>/publish/",
        prompt_views.version_publish_view,
        name="template_publish",
    ),
]
