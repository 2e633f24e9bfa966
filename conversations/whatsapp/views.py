"""WhatsApp: Meta's webhook for a channel, and a simulated customer to chat with it offline."""

from __future__ import annotations

import json
import secrets
import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt

from config import bodies

from ..contacts import contact_from_whatsapp
from ..models import Call, Message, Outbound, WhatsAppChannel, WhatsAppRefusal, WhatsAppSend
from . import webhook as whatsapp
from .formatting import whatsapp_parts

SIMULATED_WA_ID = "15550100100"  # as Meta sends it: digits; stored as +15550100100 (conversations/contacts.py)
SIMULATED_CONTACT = contact_from_whatsapp(SIMULATED_WA_ID)


@csrf_exempt  # Meta signs the body instead (X-Hub-Signature-256)
def webhook(request: HttpRequest, pk: int) -> HttpResponse:
    channel = get_object_or_404(WhatsAppChannel, pk=pk)
    if request.method == "GET":
        mode, token = request.GET.get("hub.mode"), request.GET.get("hub.verify_token", "")
        if not secrets.compare_digest(token.encode(), channel.verify_token.encode()):
            return HttpResponse(
                "Verification failed: hub.verify_token does not match this channel.",
                status=403,
                content_type="text/plain",
            )
        if mode != "subscribe":  # quoted back as text, never as a page: it is the caller's input
            return HttpResponse(
                f"Verification failed: hub.mode is {mode!r:.40}; Meta's handshake sends 'subscribe'.",
                status=403,
                content_type="text/plain",
            )
        return HttpResponse(request.GET.get("hub.challenge", ""), content_type="text/plain")
    if request.method != "POST":
        return JsonResponse({"error": "Meta's webhook is GET (the handshake) or POST (deliveries)."}, status=405)
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    too_large = JsonResponse({"error": f"The body is over {limit:,} bytes (MAX_REQUEST_BODY_BYTES)."}, status=413)
    if bodies.chunked(request):
        try:
            raw_body = bodies.read_chunked(request, limit)
        except bodies.TooLarge:
            return too_large
        except bodies.Unreadable as unreadable:
            return JsonResponse({"error": str(unreadable)}, status=400)
    else:
        size = request.headers.get("Content-Length", "0")
        if not size.isdigit() or int(size) > limit:  # before reading: Meta's deliveries are at most 3 MB
            return too_large
        raw_body = request.body
    try:
        received = whatsapp.webhook_accept(
            channel=channel, raw_body=raw_body, signature=request.headers.get("X-Hub-Signature-256", "")
        )
    except whatsapp.WebhookRefused as refused:
        return JsonResponse({"error": str(refused)}, status=refused.status)
    # 200 once every message is stored or its refusal recorded: Meta must not deliver this body again.
    return JsonResponse(
        {"queued": [call.pk for call in received.calls], "refused": [r.reason for r in received.refused]}
    )


def simulated_payload(channel: WhatsAppChannel, wa_id: str, text: str) -> dict:
    """A webhook body shaped exactly like Meta's for one incoming text message."""
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "0",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": channel.phone_number_id,
                            },
                            "contacts": [{"profile": {"name": "Simulated customer"}, "wa_id": wa_id}],
                            "messages": [
                                {
                                    "from": wa_id,
                                    "id": f"wamid.SIM{secrets.token_hex(12).upper()}",
                                    "timestamp": str(int(time.time())),
                                    "type": "text",
                                    "text": {"body": text},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }


@login_required
@permission_required("conversations.send_test", raise_exception=True)
def simulator(request: HttpRequest, pk: int) -> HttpResponse:
    """Chat as a WhatsApp customer: messages go through the signed webhook path, replies through the Graph API."""
    channel = get_object_or_404(WhatsAppChannel, pk=pk)
    refusal = None
    if request.method == "POST" and request.POST.get("text", "").strip():
        # Through the same path as Meta's webhook: a signed raw body, verified, then queued.
        body = json.dumps(simulated_payload(channel, SIMULATED_WA_ID, request.POST["text"])).encode()
        try:
            whatsapp.webhook_accept(channel=channel, raw_body=body, signature=whatsapp.sign(channel, body))
        except whatsapp.WebhookRefused as refused:
            refusal = str(refused)
        if request.headers.get("HX-Request"):
            # The compose box sends through htmx, so the page never reloads under someone still typing.
            context = {"channel": channel, "refusal": refusal, **_chat(channel)}
            return render(request, "conversations/_whatsapp_chat.html", context)
        if refusal:
            messages.error(request, refusal)
        return redirect("conversations:whatsapp_simulator", pk=channel.pk)
    return render(request, "conversations/whatsapp_simulator.html", {"channel": channel, **_chat(channel)})


@login_required
@permission_required("conversations.send_test", raise_exception=True)
def simulator_messages(request: HttpRequest, pk: int) -> HttpResponse:
    channel = get_object_or_404(WhatsAppChannel, pk=pk)
    return render(request, "conversations/_whatsapp_chat.html", {"channel": channel, **_chat(channel)})


def _chat(channel: WhatsAppChannel) -> dict:
    """The simulated customer's screen: what they wrote (✓✓ in blue once Switchboard marked it read), what
    reached their phone (bot replies, staff replies, automatic texts), and "typing…" while an answer is
    being written, as Meta's typing indicator shows it."""
    mine = {"conversation__channel": channel, "conversation__contact": SIMULATED_CONTACT}
    said = list(Message.objects.filter(role=Message.Role.USER, **mine))
    read = set(
        Outbound.objects.filter(kind=Outbound.Kind.READ, status=Outbound.Status.SENT, **mine).values_list(
            "message_id", flat=True
        )
    )
    delivered = list(
        WhatsAppSend.objects.filter(
            Q(outbound__conversation__channel=channel, outbound__conversation__contact=SIMULATED_CONTACT)
            | Q(
                outbound__isnull=True,
                call__conversation__channel=channel,
                call__conversation__contact=SIMULATED_CONTACT,
            )
        ).select_related("call", "outbound")
    )
    bubbles = [
        {"at": m.created_at, "mine": True, "text": m.customer_message or m.content, "read": m.pk in read} for m in said
    ]
    bubbles += [
        {"at": s.created_at, "mine": False, "text": _sent_text(s) if s.message_id else None, "error": s.error}
        for s in delivered
    ]
    # A message refused on its own (too long, a NUL) is acknowledged to Meta and kept as a refusal: the
    # simulated customer sees it as not delivered, with why, rather than nothing at all.
    refused = WhatsAppRefusal.objects.filter(channel=channel, sender=SIMULATED_WA_ID).only("created_at", "reason")
    bubbles += [{"at": r.created_at, "mine": True, "refused": r.reason} for r in refused]
    typing = Call.objects.filter(status__in=[Call.Status.QUEUED, Call.Status.RUNNING], **mine).exists()
    return {"bubbles": sorted(bubbles, key=lambda b: b["at"]), "waiting": typing}


def _sent_text(send: WhatsAppSend) -> str:
    """The part of the reply this send delivered, as the customer's phone shows it."""
    if not send.outbound_id:
        return send.call.reply_text
    parts = whatsapp_parts(send.outbound.text)
    return parts[min(send.part, len(parts)) - 1]


@login_required
@permission_required("conversations.send_test", raise_exception=True)
def channel_list(request: HttpRequest) -> HttpResponse:
    """The WhatsApp numbers, with what Meta's webhook setup asks for."""
    channels = [
        {"channel": c, "webhook_url": request.build_absolute_uri(f"/whatsapp/{c.pk}/webhook/")}
        for c in WhatsAppChannel.objects.select_related("template", "connection")
    ]
    return render(request, "conversations/whatsapp_channels.html", {"channels": channels})


@login_required
@permission_required("conversations.send_test", raise_exception=True)
def channel_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One number: Meta's setup values, and the messages its webhook could not take, with why."""
    channel = get_object_or_404(WhatsAppChannel.objects.select_related("template", "connection"), pk=pk)
    context = {
        "channel": channel,
        "webhook_url": request.build_absolute_uri(f"/whatsapp/{channel.pk}/webhook/"),
        "refusals": channel.refusals.all()[:50],
    }
    return render(request, "conversations/whatsapp_channel.html", context)
