from rest_framework import serializers

from agents.chat.intents import IntentName
from agents.models import ChatMessage
from agents.serializers import ProposalSerializer

MESSAGE_MAX_CHARS = 2000


class ChatSerializer(serializers.Serializer):
    message = serializers.CharField(min_length=1, max_length=MESSAGE_MAX_CHARS)


class ChatReplySerializer(serializers.Serializer):
    message_id = serializers.UUIDField(help_text="The agent message's id, as in its agent_message events.")
    reply = serializers.CharField()
    engine = serializers.ChoiceField(choices=["intents", "llm"], help_text="What wrote the reply.")
    intent = serializers.ChoiceField(choices=[name.value for name in IntentName])
    proposals = ProposalSerializer(many=True, help_text="Proposals drafted in this turn, pending approval.")
    created_at = serializers.DateTimeField()


class ChatHistoryQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=200, default=50, required=False)


class ChatMessageSerializer(serializers.ModelSerializer):
    """One message of the conversation, as it was stored (an agent reply says how it was made)."""

    class Meta:
        model = ChatMessage
        fields = ["message_id", "role", "author", "text", "intent", "engine", "proposal_ids", "created_at"]
