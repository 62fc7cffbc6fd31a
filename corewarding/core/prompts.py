"""The prompt every model sees: the reference runs' system prompt plus the question, as chat messages;
and back."""

from __future__ import annotations

#: The system prompt of the reference runs (docs/method.md, "Optimisation settings of the reference runs").
SYSTEM_PROMPT = "Let's think step by step and output the final answer within \\boxed{}."


def chat_messages(question: str, system_prompt: str | None = SYSTEM_PROMPT) -> list[dict[str, str]]:
    """``[system, user]`` messages for a question; ``system_prompt=None`` leaves the system turn out."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return messages + [{"role": "user", "content": question}]


def question_text(prompt: str | list[dict]) -> str | None:
    """The question of a prompt: a string as it is, or the last user turn of chat messages (None when
    there is none).

    >>> question_text(chat_messages("What is 2+2?"))
    'What is 2+2?'
    """
    if isinstance(prompt, str):
        return prompt
    turns = [m.get("content") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
    return turns[-1] if turns else None
