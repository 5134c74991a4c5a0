"""Example agents to copy from: point AGENT_ENTRYPOINT at one (`examples.langgraph_agent:run`)."""
