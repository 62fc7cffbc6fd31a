"""The prompt every model sees: the reference runs' system prompt plus the question, as chat messages."""

from __future__ import annotations

#: The system prompt of the reference runs (METHOD.md).
SYSTEM_PROMPT = "Let's think step by step and output the final answer within \\boxed{}."


def chat_messages(question: str, system_prompt: str | None = SYSTEM_PROMPT) -> list[dict[str, str]]:
    """``[system, user]`` messages for a question; ``system_prompt=None`` leaves the system turn out."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return messages + [{"role": "user", "content": question}]
