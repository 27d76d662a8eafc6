"""An Ollama `Modelfile` for an exported GGUF: the chat format in Ollama's Go-template syntax.

Ollama does not read Jinja, so the student's chat template is matched to the formats distill
trains with (ChatML, as Qwen2.5 and SmolLM2 use; `alpaca`; `codellama_instruct`) and written in
Ollama's syntax. A template it cannot match is named in the file and in a warning.
"""

from __future__ import annotations

from distill.models.prompt_formats import ALPACA_SYSTEM, PROMPT_FORMATS

CHATML = (
    "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
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


def modelfile(gguf_name: str, chat_template: str | None, eos_token: str) -> str:
    """The Modelfile's text: `ollama create <name> -f Modelfile` in the export folder."""
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
    return "\n".join(lines) + "\n"
