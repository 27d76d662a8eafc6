"""How a conversation becomes text when the student's tokenizer has no usable chat template.

`student.prompt_format` names a built-in format, gives a Jinja template string, or is null (the
tokenizer's own template). The chosen template is set on the tokenizer as soon as it loads, so
training, the teacher logit cache, on-policy sampling, held-out scoring and chat-prompt evaluation
all render through the same `apply_chat_template`; the tokenizer saved beside the adapters carries
it, and `distill eval eval.adapters=...` uses that one (`adapter_prompt_format`).

Every built-in format writes BOS itself (the data and chat prompts are tokenized without special
tokens, so BOS appears once) and ends each assistant turn with EOS (trained on), and renders the
prompt (`add_generation_prompt=True`) as a prefix of the whole conversation, which is how prompt
tokens are masked from the labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from distill.errors import ConfigError

if TYPE_CHECKING:  # hints only: the config checks use this module before any model loads
    from transformers import PreTrainedTokenizerBase

ALPACA_SYSTEM = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)

PROMPT_FORMATS = {
    # Instruction / response, as WizardCoder and Magicoder train base code models (the system
    # message, when the conversation has one, replaces the default preamble).
    "alpaca": (
        "{%- if messages and messages[0]['role'] == 'system' -%}"
        "{%- set system = messages[0]['content'] -%}"
        "{%- else -%}{%- set system = '" + ALPACA_SYSTEM + "' -%}{%- endif -%}"
        "{{- bos_token + system -}}"
        "{%- for message in messages if message['role'] != 'system' -%}"
        "{%- if message['role'] == 'user' -%}"
        "{{- '\\n\\n### Instruction:\\n' + message['content'] + '\\n\\n### Response:\\n' -}}"
        "{%- else -%}{{- message['content'] + eos_token -}}{%- endif -%}"
        "{%- endfor -%}"
    ),
    # CodeLlama-Instruct (Llama 2 chat): <s>[INST] <<SYS>>...<</SYS>> user [/INST] answer</s>, the
    # ids of Meta's reference encoding (answer tokenized alone, then EOS: no space piece before it)
    "codellama_instruct": (
        "{%- if messages and messages[0]['role'] == 'system' -%}"
        "{%- set system = '<<SYS>>\\n' + messages[0]['content'].strip() + '\\n<</SYS>>\\n\\n' -%}"
        "{%- else -%}{%- set system = '' -%}{%- endif -%}"
        "{%- for message in messages if message['role'] != 'system' -%}"
        "{%- if message['role'] == 'user' -%}"
        "{{- bos_token + '[INST] ' + (system if loop.first else '') + message['content'].strip()"
        " + ' [/INST]' -}}"
        "{%- else -%}{{- ' ' + message['content'].strip() + eos_token -}}{%- endif -%}"
        "{%- endfor -%}"
    ),
    # CodeLlama-70B-Instruct's own: "Source: <role>\n\n <content> <step> " per turn, the answer
    # after "Source: assistant\nDestination: user\n\n " (the generation prompt), then EOS.
    "codellama_70b_instruct": (
        "{{- bos_token -}}"
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'assistant' and loop.last -%}"
        "{{- 'Source: assistant\\nDestination: user\\n\\n ' + message['content'].strip()"
        " + eos_token -}}"
        "{%- else -%}"
        "{{- 'Source: ' + message['role'] + '\\n\\n ' + message['content'].strip() + ' <step> ' -}}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- 'Source: assistant\\nDestination: user\\n\\n ' -}}"
        "{%- endif -%}"
    ),
}

KEY = "student.prompt_format"


def is_template(value: str) -> bool:
    return "{{" in value or "{%" in value


def check_prompt_format(value: str | None, key: str = KEY) -> str | None:
    """The problem with a `student.prompt_format` (or `teacher.prompt_format`) value, or None."""
    if value is None or value in PROMPT_FORMATS or is_template(value):
        return None
    return (
        f"{key}={value!r} is neither a built-in format ({', '.join(PROMPT_FORMATS)}) nor a Jinja "
        "template; use one of those names, a template string, or null for the tokenizer's own"
    )


def template_of(value: str | None, key: str = KEY) -> str | None:
    """The Jinja template a `student.prompt_format` value names (None: the tokenizer's own)."""
    problem = check_prompt_format(value, key)
    if problem:
        raise ConfigError([problem])
    return PROMPT_FORMATS.get(value, value) if value is not None else None


def apply_prompt_format(
    tokenizer: PreTrainedTokenizerBase, value: str | None, key: str = KEY
) -> None:
    """Set the format on the tokenizer; null keeps the tokenizer's own template."""
    template = template_of(value, key)
    if template is not None:
        tokenizer.chat_template = template


def require_chat_format(tokenizer: PreTrainedTokenizerBase, path: str, key: str = KEY) -> None:
    """Refuse, before any weights load, a tokenizer that cannot render a conversation."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            [
                f"the tokenizer of {path} has no chat template, so conversations cannot become "
                f"tokens: set {key} to a built-in format ({', '.join(PROMPT_FORMATS)}: 'alpaca' "
                "suits base code models, 'codellama_instruct' is CodeLlama-Instruct's) or a Jinja "
                "template string"
            ]
        )


def saved_template(adapters: Path) -> str | None:
    """The chat template of the tokenizer saved beside trained adapters, if it has one."""
    jinja = adapters / "chat_template.jinja"  # where transformers 5 saves it
    return jinja.read_text() if jinja.exists() else None


def adapter_prompt_format(
    tokenizer: PreTrainedTokenizerBase, adapters: Path, value: str | None
) -> None:
    """Give the tokenizer the format the adapters were trained with.

    A `student.prompt_format` that renders otherwise is an error: evaluating in another format
    than the one trained on would measure the format, not the student.
    """
    saved = saved_template(adapters)
    if saved is None:
        return
    wanted = template_of(value)
    if wanted is not None and wanted.strip() != saved.strip():
        raise ConfigError(
            [
                f"{KEY}={value!r} is not the format the adapters in {adapters} were trained with "
                f"(their chat_template.jinja): drop {KEY} to use theirs"
            ]
        )
    tokenizer.chat_template = saved
