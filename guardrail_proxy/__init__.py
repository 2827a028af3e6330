"""guardrail-proxy: an OpenAI-compatible proxy that checks chat traffic against policies."""
