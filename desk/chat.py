"""The desk's chat with the agent: the conversation (kept, so it survives a reload), a message
box, and the proposals the agent drafts shown inline as cards a trader can approve there.

Without JavaScript the form posts and the page reloads with the reply; with it, desk.js sends
the message in the background and the reply appears as it streams (`agent_message` deltas)."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone

from agents.chat.serializers import MESSAGE_MAX_CHARS
from agents.chat.services import chat_reply
from agents.models import Proposal
from agents.selectors import chat_history
from desk.views import page_context, proposal_card
from tenants.models import Membership
from tenants.resolution import ClientScopedPageView

HISTORY_SHOWN = 50


class ChatPageView(ClientScopedPageView):
    @property
    def required_role(self) -> str:  # every member reads the conversation; traders take part
        return Membership.Role.VIEWER if self.request.method in ("GET", "HEAD") else Membership.Role.TRADER

    def get(self, request: HttpRequest, client_id: str) -> HttpResponse:
        return self._page(request)

    def post(self, request: HttpRequest, client_id: str) -> HttpResponse:
        message = request.POST.get("message", "").strip()
        if not message or len(message) > MESSAGE_MAX_CHARS:
            error = "Write a message." if not message else f"At most {MESSAGE_MAX_CHARS} characters."
            return self._page(request, error=error, draft=message, status=400)
        chat_reply(client=self.client_access.client, user=request.user.get_username(), message=message)
        if request.headers.get("X-Requested-With") == "fetch":
            return HttpResponse(status=204)  # the reply arrives on the stream
        return redirect(reverse("desk-chat", args=[client_id]) + "#chat-end")

    def _page(self, request: HttpRequest, *, error: str = "", draft: str = "", status: int = 200) -> HttpResponse:
        now = timezone.now()
        context = page_context(request, self.client_access, now, active="chat")
        messages = chat_history(limit=HISTORY_SHOWN)
        proposal_ids = [pk for message in messages for pk in (message.proposal_ids or [])]
        proposals = {str(p.pk): p for p in Proposal.objects.filter(pk__in=proposal_ids)}
        context.update(
            error=error, draft=draft, max_chars=MESSAGE_MAX_CHARS, errors={},
            conversation=[{"message": message,
                           "cards": [proposal_card(proposals[str(pk)], now) for pk in (message.proposal_ids or [])
                                     if str(pk) in proposals]}
                          for message in messages],
        )
        return render(request, "desk/chat.html", context, status=status)
