"""kgllm.fusion."""
