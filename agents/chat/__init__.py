"""Chat with the client's agent: deterministic intents, optionally a language model with tools."""
