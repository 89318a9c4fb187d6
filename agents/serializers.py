from rest_framework import serializers


class AgentStatusSerializer(serializers.Serializer):
    client_id = serializers.CharField()
    mode = serializers.ChoiceField(choices=["confirmation", "autonomous"])
    autonomous_enabled = serializers.BooleanField(help_text="The platform-wide kill switch.")
    parameters = serializers.DictField()
    updated_at = serializers.DateTimeField(allow_null=True)
