"""An Ollama `Modelfile` for an exported GGUF: the chat format in Ollama's Go-template syntax.

Ollama does not read Jinja, so the student's chat template is matched to the formats distill
trains with (ChatML, as Qwen2.5 and SmolLM2 use; `alpaca`; `codellama_instruct`) and written in
Ollama's syntax. A template it cannot match is named in the file and in a warning.

Ollama hands a template both `.System` (every system message, joined) and `.Messages` (system
messages included), and puts the Modelfile's `SYSTEM` first when a request has none; so the
ChatML template writes `.System` once and skips system turns in its loop, and a chat template
that adds a system message of its own when none is given (Qwen2.5's, SmolLM2's) gets that text
as `SYSTEM`: the prompt Ollama builds is then the one the student trained and was scored with
(`tests/test_export.py` renders both with Go's text/template, the engine Ollama uses).
"""

from __future__ import annotations

import re
from typing import Any

from distill.models.prompt_formats import ALPACA_SYSTEM, PROMPT_FORMATS

CHATML = (
    "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    '{{- range .Messages }}{{ if ne .Role "system" }}'
    "<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}{{ end }}"
    "<|im_start|>assistant\n"
)
ALPACA = (
    "{{ if .System }}{{ .System }}{{ else }}" + ALPACA_SYSTEM + "{{ end }}"
    "\n\n### Instruction:\n{{ .Prompt }}\n\n### Response:\n"
)
CODELLAMA_INSTRUCT = (
    "[INST] {{ if .System }}<<SYS>>\n{{ .System }}\n<</SYS>>\n\n{{ end }}{{ .Prompt }} [/INST]"
)


def ollama_template(chat_template: str | None, eos_token: str) -> tuple[str | None, list[str]]:
    """(Ollama TEMPLATE, stop strings) for a chat template; (None, []) when unknown."""
    template = (chat_template or "").strip()
    if "<|im_start|>" in template:
        return CHATML, ["<|im_end|>"]
    if template == PROMPT_FORMATS["alpaca"].strip():
        return ALPACA, [eos_token]
    if template == PROMPT_FORMATS["codellama_instruct"].strip():
        return CODELLAMA_INSTRUCT, [eos_token]
    return None, []


def default_system(tokenizer: Any) -> str | None:
    """The system message a ChatML chat template adds when a conversation has none (Qwen2.5's
    "You are Qwen, created by Alibaba Cloud. ..."), else None."""
    if "<|im_start|>" not in (tokenizer.chat_template or ""):
        return None
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}], add_generation_prompt=True, tokenize=False
    )
    found = re.match(r"<\|im_start\|>system\n(.*?)<\|im_end\|>\n", text, re.DOTALL)
    return found.group(1) if found else None


def modelfile(
    gguf_name: str, chat_template: str | None, eos_token: str, system: str | None = None
) -> str:
    """The Modelfile's text: `ollama create <name> -f Modelfile` in the export folder. `system`:
    the chat template's own default system message (:func:`default_system`)."""
    template, stops = ollama_template(chat_template, eos_token)
    lines = [f"FROM ./{gguf_name}", "PARAMETER temperature 0"]
    lines += [f'PARAMETER stop "{stop}"' for stop in stops]
    if template is None:
        lines.insert(0, "# The student's chat template has no Ollama translation here: add a")
        lines.insert(
            1, "# TEMPLATE that renders chat_template.jinja's format before `ollama create`."
        )
    else:
        lines.append(f'TEMPLATE """{template}"""')
    if template is not None and system:
        lines.append(f'SYSTEM """{system}"""')
    return "\n".join(lines) + "\n"
