"""Turn (messages, context) into the chat messages a model sees.

One function does this for generation, the DPO dataset and evaluation, so that
the prompt the chosen response was generated under is token for token the
prompt it is trained under.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_PLACEHOLDER = re.compile(r"\{(context|query)\}")


def fill(template: str, **values: str) -> str:
    """Substitute ``{context}``/``{query}`` in one pass, so user text is never re-scanned."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


@dataclass(frozen=True)
class PromptFormat:
    """Where and how the user context enters the conversation.

    ``placement="system"`` puts ``context_template.format(context=...)`` in a
    system message before the conversation (MIPO's setup, arXiv 2603.19294, and what
    Llama-3 / Qwen2.5 templates expect). ``placement="user_prefix"`` is for
    templates without a system role (e.g. Gemma): the context is joined to the
    first user turn with ``user_prefix_template``.
    """

    placement: str = "system"
    context_template: str = "{context}"
    user_prefix_template: str = "{context}\n\n{query}"

    @classmethod
    def from_config(cls, mipo_cfg) -> "PromptFormat":
        return cls(
            placement=mipo_cfg.context_placement,
            context_template=mipo_cfg.context_template,
            user_prefix_template=mipo_cfg.user_prefix_template,
        )


def build_messages(
    messages: Sequence[tuple[str, str]] | Sequence[dict],
    context: str | None,
    fmt: PromptFormat | None = None,
) -> list[dict[str, str]]:
    """Chat messages for ``messages`` conditioned on ``context`` (``None``: no context).

    ``str.format`` is applied to the template only, never to user text, so braces
    in a context or query are kept literally.
    """
    fmt = fmt or PromptFormat()
    msgs = [dict(m) if isinstance(m, dict) else {"role": m[0], "content": m[1]} for m in messages]
    if context is None:
        return msgs
    rendered = fill(fmt.context_template, context=context)
    if fmt.placement == "system":
        return [{"role": "system", "content": rendered}] + msgs
    if fmt.placement == "user_prefix":
        for m in msgs:
            if m["role"] == "user":
                m["content"] = fill(fmt.user_prefix_template, context=rendered, query=m["content"])
                return msgs
        return [{"role": "user", "content": rendered}] + msgs
    raise ValueError(f"unknown context placement {fmt.placement!r}")
