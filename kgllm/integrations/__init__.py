"""kgllm.integrations."""
