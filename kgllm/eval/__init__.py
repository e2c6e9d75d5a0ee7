"""kgllm.eval."""
