"""A local white-box teacher with a real Llama tokenizer: its prompt format, checked before any
weights load, and answers rendered in it."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from distill.errors import ConfigError
from distill.teachers.base import Request
from distill.teachers.hf import HFTeacher, HFTeacherConfig
from distill.testing import codellama_model_dir

LLAMA2 = Path(__file__).resolve().parents[3] / "shared/data/llama2_tokenizer/tokenizer.model"
pytest.importorskip("sentencepiece", reason="building the tokenizer needs sentencepiece")
if not LLAMA2.exists():
    pytest.skip(f"{LLAMA2} is missing (shared data)", allow_module_level=True)


class Journal:
    def __init__(self) -> None:
        self.answers = {}

    def answered(self, rid, answer) -> None:
        self.answers[rid] = answer


def teacher_cfg(prompt_format: str | None):
    path = str(codellama_model_dir(LLAMA2))
    return OmegaConf.structured(HFTeacherConfig(name="t", path=path, prompt_format=prompt_format))


def test_a_teacher_without_a_template_is_refused_naming_teacher_prompt_format():
    with pytest.raises(ConfigError, match="set teacher.prompt_format to a built-in format"):
        HFTeacher.from_config(teacher_cfg(None))


def test_a_teacher_answers_prompts_rendered_in_its_format():
    teacher = HFTeacher.from_config(teacher_cfg("codellama_70b_instruct"))
    assert teacher.model is None  # the format was checked without loading weights
    messages = [{"role": "user", "content": "Write add."}]
    journal = Journal()
    list(teacher.answer([Request("r1", messages, 3)], journal))
    rendered = "<s>Source: user\n\n Write add. <step> Source: assistant\nDestination: user\n\n "
    prompt_ids = teacher.tokenizer(rendered, add_special_tokens=False).input_ids
    assert prompt_ids[0] == teacher.tokenizer.bos_token_id
    assert journal.answers["r1"].usage["input_tokens"] == len(prompt_ids)
