"""Prompt formats on a real Llama tokenizer: CodeLlama-shaped (Llama 2's SentencePiece file plus
16 pieces), no chat template, as the base CodeLlama-7B ships it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from distill.data.batching.datamodule import IGNORE_INDEX, collate, encode
from distill.errors import ConfigError
from distill.evaluation.benchmarks import load_problems
from distill.evaluation.benchmarks.humaneval import CHAT_INSTRUCTION
from distill.evaluation.prompts import build_prompt
from distill.models.loading import load_student_tokenizer
from distill.models.prompt_formats import (
    adapter_prompt_format,
    apply_prompt_format,
    check_prompt_format,
)
from distill.testing import CODELLAMA_VOCAB, codellama_model_dir

LLAMA2 = Path(__file__).resolve().parents[3] / "shared/data/llama2_tokenizer/tokenizer.model"
pytest.importorskip("sentencepiece", reason="building the tokenizer needs sentencepiece")
if not LLAMA2.exists():
    pytest.skip(f"{LLAMA2} is missing (shared data)", allow_module_level=True)

RESPONSE = "def add(a, b):\n    return a + b"
RECORD = {"id": "r1", "messages": [{"role": "user", "content": "Write add."}], "response": RESPONSE}


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return codellama_model_dir(LLAMA2)


def student(model_dir: Path, prompt_format: str | None):
    return OmegaConf.create({"path": str(model_dir), "prompt_format": prompt_format})


@pytest.fixture(scope="module")
def base(model_dir):
    """The student's tokenizer as `distill eval` loads it for completion prompts (no format)."""
    return load_student_tokenizer(student(model_dir, None), need_chat=False)


def formatted(base, prompt_format: str | None):
    tokenizer = copy.deepcopy(base)  # loading a 32k tokenizer takes seconds; a copy does not
    apply_prompt_format(tokenizer, prompt_format)
    return tokenizer


def layout(example: dict, tokenizer) -> tuple[list[str], list[str]]:
    """(prompt tokens, answer tokens) of an encoded example, split where the labels start."""
    start = next(i for i, label in enumerate(example["labels"]) if label != IGNORE_INDEX)
    assert example["labels"][start:] == example["input_ids"][start:]  # every answer token trains
    tokens = tokenizer.convert_ids_to_tokens(example["input_ids"])
    return tokens[:start], tokens[start:]


def test_the_tokenizer_splits_code_as_sentencepiece_does(base):
    """CodeLlama was trained on SentencePiece's split of indented code (`▁▁▁` then
    `▁return`). transformers 5's own conversion of the file ranks merges by id and splits
    every HumanEval+ solution differently (`▁▁▁▁` then `return`)."""
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(LLAMA2))
    problems = load_problems("humaneval", limit=40)
    for problem in problems:
        text = problem.prompt + problem.canonical_solution
        assert base(text, add_special_tokens=False).input_ids == sp.encode(text), problem.task_id
    assert base("def f():\n    return x").input_ids == [1, *sp.encode("def f():\n    return x")]


def test_alpaca_writes_bos_once_masks_the_prompt_and_trains_the_eos(model_dir):
    tokenizer = load_student_tokenizer(student(model_dir, "alpaca"))  # the training path
    example = encode(RECORD, tokenizer, max_length=256)
    prompt, answer = layout(example, tokenizer)
    assert prompt[:3] == ["<s>", "Bel", "ow"] and prompt.count("<s>") == 1
    assert prompt[-4:] == ["#", "▁Response", ":", "<0x0A>"]
    # the answer continues the prompt as the model generates it: "def", not "▁def"
    assert answer == [
        "def", "▁add", "(", "a", ",", "▁b", "):", "<0x0A>", "▁▁▁", "▁return", "▁a", "▁+", "▁b",
        "</s>",
    ]  # fmt: skip
    assert max(example["input_ids"]) < 32000  # no infilling piece in a chat rendering
    assert len(tokenizer) == CODELLAMA_VOCAB


def test_codellama_instruct_is_the_inst_format(base):
    tokenizer = formatted(base, "codellama_instruct")
    record = {
        **RECORD,
        "messages": [{"role": "system", "content": "Be brief."}, *RECORD["messages"]],
    }
    prompt_text = tokenizer.apply_chat_template(
        record["messages"], add_generation_prompt=True, tokenize=False
    )
    assert prompt_text == "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nWrite add. [/INST]"
    example = encode(record, tokenizer, max_length=256)
    prompt, answer = layout(example, tokenizer)
    assert prompt[:4] == ["<s>", "[", "INST", "]"] and prompt.count("<s>") == 1
    assert prompt[-4:] == ["▁[", "/", "INST", "]"]
    assert answer[:2] == ["▁def", "▁add"] and answer[-2:] == ["▁b", "</s>"]


def test_codellama_70b_instruct_is_its_source_destination_format(base):
    tokenizer = formatted(base, "codellama_70b_instruct")
    messages = [{"role": "system", "content": "Be brief."}, *RECORD["messages"]]
    prompt_text = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False
    )
    # Meta's template for CodeLlama-70B-Instruct renders this same string
    assert prompt_text == (
        "<s>Source: system\n\n Be brief. <step> Source: user\n\n Write add. <step> "
        "Source: assistant\nDestination: user\n\n "
    )
    example = encode({**RECORD, "messages": messages}, tokenizer, max_length=256)
    prompt, answer = layout(example, tokenizer)
    assert prompt.count("<s>") == 1 and answer[-1] == "</s>"
    assert tokenizer.decode(example["input_ids"], skip_special_tokens=True).endswith(RESPONSE)


def test_padding_never_collides_with_the_trained_eos(model_dir):
    """The Llama tokenizer has no pad token: eos pads, and only the labels say what trains."""
    tokenizer = load_student_tokenizer(student(model_dir, "alpaca"))
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == 2
    short = encode(RECORD, tokenizer, max_length=256)
    long = encode({**RECORD, "id": "r2", "response": RESPONSE * 3}, tokenizer, max_length=256)
    batch = collate([short, long], tokenizer.pad_token_id)
    padded = batch["attention_mask"] == 0
    assert padded[0].sum() > 0 and padded[1].sum() == 0
    assert (batch["input_ids"][padded] == 2).all() and (batch["labels"][padded] == -100).all()
    # each row trains exactly one eos: its own end of answer, never the padding after it
    assert ((batch["labels"] == 2).sum(1) == 1).all()
    assert ((batch["input_ids"] == 2) & (batch["attention_mask"] == 1)).sum(1).tolist() == [1, 1]


def test_a_template_string_is_a_format_too(base):
    template = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    tokenizer = formatted(base, template)
    assert tokenizer.chat_template == template


def test_a_base_tokenizer_without_a_format_is_a_config_error_naming_the_setting(model_dir):
    with pytest.raises(ConfigError, match="set student.prompt_format") as err:
        load_student_tokenizer(student(model_dir, None))
    assert "alpaca" in str(err.value)


def test_completion_prompts_need_no_format(base):
    assert base.chat_template is None and base.pad_token == "</s>"


def test_an_unknown_format_name_is_reported_with_the_known_ones():
    problem = check_prompt_format("alpacca")
    assert (
        problem and "student.prompt_format='alpacca'" in problem and "codellama_instruct" in problem
    )
    assert check_prompt_format("alpaca") is None and check_prompt_format(None) is None


def test_evaluation_prompts_use_the_adapters_format_token_for_token(base, tmp_path):
    """Trained in `alpaca`, evaluated from the adapters folder without naming the format: the
    chat prompt of a benchmark problem has exactly the ids training gave the same message."""
    trained = formatted(base, "alpaca")
    trained.save_pretrained(tmp_path)  # what the training callback writes beside the adapters
    problem = load_problems("humaneval", limit=1)[0]
    fresh = copy.deepcopy(base)
    adapter_prompt_format(fresh, tmp_path, None)
    eval_ids = fresh(build_prompt(problem, fresh, "chat"), add_special_tokens=False).input_ids
    message = f"{CHAT_INSTRUCTION}\n\n```python\n{problem.prompt.strip()}\n```"
    record = {"id": "p", "messages": [{"role": "user", "content": message}], "response": "x"}
    example = encode(record, trained, max_length=512)
    prompt, _ = layout(example, trained)
    assert eval_ids == example["input_ids"][: len(prompt)]
    # naming another format than the adapters' is refused
    with pytest.raises(ConfigError, match="not the format the adapters"):
        adapter_prompt_format(fresh, tmp_path, "codellama_instruct")


def test_left_padded_generation_matches_one_prompt_at_a_time(model_dir, base):
    """Chat prompts of different lengths, padded on the left with eos (no pad token): the batch
    decodes exactly as each prompt alone, so padding never leaks into an answer."""
    from transformers import AutoModelForCausalLM

    from distill.evaluation.generation import generate

    tokenizer = formatted(base, "alpaca")
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
        )
        for text in ("Write add.", "Write a function that returns the sum of a list of floats.")
    ]
    kwargs = {"max_new_tokens": 6, "add_special_tokens": False}
    tokenizer.padding_side = "right"  # as training collates
    batched = generate(model, tokenizer, prompts, batch_size=2, **kwargs)
    alone = [generate(model, tokenizer, [p], batch_size=1, **kwargs)[0] for p in prompts]
    assert batched == alone and all(s[0] for s in batched)
    assert tokenizer.padding_side == "right"  # restored
