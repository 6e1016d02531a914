"""Adapters for agent frameworks, each an optional extra: `openai_agents` (the OpenAI Agents SDK's
`needs_approval`), `langgraph` (a node helper around `interrupt()`). See docs/agents.md."""
