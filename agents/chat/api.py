"""The chat endpoint: a trader's message in, the agent's reply (and any proposal it drafted) out."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from agents.chat.serializers import (
    ChatHistoryQuerySerializer,
    ChatMessageSerializer,
    ChatReplySerializer,
    ChatSerializer,
)
from agents.chat.services import chat_reply
from agents.selectors import chat_history
from tenants.models import Membership
from tenants.resolution import ClientScopedAPIView


class ChatView(ClientScopedAPIView):
    """The agent's reply to a trader's message, and any proposals it drafted (pending approval).

    The same reply streams as `agent_message` events (`message_id`, `delta`, `done`). The agent
    only reads and drafts: it never approves, executes, or changes mode, parameters or limits.
    """

    @property
    def required_role(self) -> str:  # every member reads the conversation; traders take part
        return Membership.Role.VIEWER if self.request.method in ("GET", "HEAD") else Membership.Role.TRADER

    @extend_schema(parameters=[ChatHistoryQuerySerializer], responses={200: ChatMessageSerializer(many=True)},
                   tags=["agent"])
    def get(self, request: Request, client_id: str) -> Response:
        """The conversation, oldest first: the last `limit` messages (default 50, at most 200)."""
        query = ChatHistoryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(ChatMessageSerializer(chat_history(limit=query.validated_data["limit"]), many=True).data)

    @extend_schema(request=ChatSerializer, responses={200: ChatReplySerializer}, tags=["agent"])
    def post(self, request: Request, client_id: str) -> Response:
        serializer = ChatSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        reply = chat_reply(client=self.client_access.client, user=request.user.get_username(),
                           message=serializer.validated_data["message"])
        message = reply.message
        return Response(ChatReplySerializer({
            "message_id": message.message_id, "reply": message.text, "engine": message.engine,
            "intent": message.intent, "proposals": reply.proposals, "created_at": message.created_at,
        }).data)
