"""An offline stand-in for an LLM judge: phoenix-evals' `generate_classification`, by a rule.

`--judge-model tests.fake_judge:model` makes `--eval judge` call it through arize-phoenix-evals'
classifier (prompt rendering, label checking, scoring) as it would call a real model. The rule:
an answer that plans a day is "correct", anything else "incorrect"; a prompt naming BROKEN
raises, as a provider's error would.
"""

from __future__ import annotations

from typing import Any


class FakeJudge:
    model = "fake-judge"

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def generate_classification(
        self, prompt: Any, labels: Any, include_explanation: bool = True, **_: Any
    ) -> dict[str, Any]:
        # phoenix-evals renders the template to chat messages: [{"role": ..., "content": ...}]
        text = prompt if isinstance(prompt, str) else "\n".join(str(m["content"]) for m in prompt)
        self.prompts.append(text)
        if "BROKEN" in text:
            raise RuntimeError("the judge's provider refused the request")
        label = "correct" if "Day 1:" in text else "incorrect"
        reason = "a day is planned" if label == "correct" else "no day planned"
        return {"label": label, "explanation": f"rule: {reason}"}

    async def async_generate_classification(
        self, prompt: Any, labels: Any, include_explanation: bool = True, **kwargs: Any
    ) -> dict[str, Any]:
        return self.generate_classification(prompt, labels, include_explanation, **kwargs)


model = FakeJudge()
