"""The README's samples of every built-in template, from ``render.preview``.

Run ``python -m tests.readme_samples`` to print them; a test keeps the README in step.
"""

from __future__ import annotations

import json
from typing import Any

from addon_watch.render import Renderer, preview, sample_announcements, sample_notices

START = "<!-- render-output:start -->"
END = "<!-- render-output:end -->"


def _reads_as(kind: str, payload: dict[str, Any]) -> str:
    if kind == "dingtalk":
        markdown = payload["markdown"]
        return f"{markdown['title']}\n---\n{markdown['text'].replace(chr(10) * 2, chr(10))}"
    attachment = payload["attachments"][0]
    body = "\n".join(block["text"]["text"] for block in attachment["blocks"])
    return f"{payload['text']}\n--- (colour {attachment['color']})\n{body}"


def markdown() -> str:
    renderer = Renderer(None, "Asia/Shanghai")
    cases = (
        ("one outcome", "", sample_announcements(1)),
        ("three outcomes in one tick", "-digest", sample_announcements(3)),
        *((f"a notice: {item.outcome.value}", "", [item]) for item in sample_notices()),
        ("three notices in one tick", "-digest", sample_notices()),
    )
    parts = []
    for label, suffix, sample in cases:
        for channel, payload in preview(renderer, sample):
            kind, language = channel.split(" ")
            parts.append(
                f"#### `{kind}{suffix}.{language.strip('()')}.j2`, {label}\n\n"
                f"```text\n{_reads_as(kind, payload)}\n```\n\n"
                "<details><summary>payload</summary>\n\n"
                f"```json\n{json.dumps(payload, ensure_ascii=False, indent=2)}\n```\n\n"
                "</details>\n"
            )
    return "\n".join(parts)


if __name__ == "__main__":
    print(markdown())
