"""Models, generation backends (transformers, vLLM, OpenAI-compatible) and evaluation."""
