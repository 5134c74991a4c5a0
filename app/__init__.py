"""agent-endpoint: an AI agent behind the HTTP contract of Arize AI's agent experiments."""
