"""`distill chat`: ask a model a question and watch the answer stream in; optionally run its code.

The model is loaded as `distill eval` loads it (`chat.model=student` with `chat.adapters`, an
exported folder, or a local teacher) and prompted in the chat format it trained with. Without
`chat.prompt` the conversation is read from stdin, one message a line (`exit` or end of input
stops); every turn is appended to `<run dir>/chat.jsonl`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from distill.data.quality.checks import code_blocks
from distill.errors import UserError
from distill.evaluation.app import load_eval_model
from distill.evaluation.execution import run_program
from distill.evaluation.samples import append_jsonl
from distill.runs import update_metrics

STOP_WORDS = ("exit", "quit")


def run_chat(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Answer `chat.prompt`, or each line of stdin, streaming; return the `chat/...` metrics."""
    model, tokenizer, label = load_chat_model(cfg, run_dir)
    messages = [{"role": "system", "content": cfg.chat.system}] if cfg.chat.system else []
    prompts = [cfg.chat.prompt] if cfg.chat.prompt else stdin_prompts()
    turns = 0
    for prompt in prompts:
        messages.append({"role": "user", "content": prompt})
        reply = answer(model, tokenizer, messages, cfg.chat)
        messages.append({"role": "assistant", "content": reply})
        row: dict[str, Any] = {"model": label, "prompt": prompt, "answer": reply}
        if cfg.chat.run_code:
            row["run"] = run_first_block(reply, cfg.chat.timeout_s)
            print(f"[sandbox: {row['run']}]", flush=True)
        append_jsonl(Path(run_dir) / "chat.jsonl", [row])
        turns += 1
    return update_metrics(run_dir, {"chat/turns": turns, "chat/model": label})


def load_chat_model(cfg: DictConfig, run_dir: Path) -> tuple[Any, Any, str]:
    """The model and tokenizer, loaded by the evaluation stage's own loader."""
    if cfg.chat.model == "teacher" and cfg.teacher.get("kind") != "hf":
        raise UserError(
            f"distill chat runs a local model: teacher={cfg.teacher.name} is served by an API; "
            "use chat.model=student, an exported folder, or a local teacher (teacher=hf)"
        )
    overrides = {"model": cfg.chat.model, "adapters": cfg.chat.adapters, "backend": "hf"}
    as_eval = OmegaConf.merge(cfg, {"eval": overrides})
    return load_eval_model(as_eval, Path(run_dir))


def answer(model: Any, tokenizer: Any, messages: list[dict[str, str]], chat: DictConfig) -> str:
    """Generate the reply to `messages`, printing its text to stdout as it comes."""
    import torch
    from transformers import TextStreamer

    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(model.device)
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    sampling = {"do_sample": True, "temperature": chat.temperature} if chat.temperature else {}
    with torch.no_grad():
        out = model.generate(
            **inputs,
            max_new_tokens=chat.max_new_tokens,
            streamer=streamer,
            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
            **({"do_sample": False} if not sampling else sampling),
        )
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def stdin_prompts() -> Iterator[str]:
    """One message a line until `exit`, `quit` or the end of input (a prompt marker on a TTY)."""
    while True:
        if sys.stdin.isatty():
            print("you> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line or line.strip().lower() in STOP_WORDS:
            return
        if line.strip():
            yield line.strip()


def run_first_block(reply: str, timeout_s: float) -> str:
    """Run the reply's first fenced block (Python) in the sandbox; its verdict in words."""
    blocks = code_blocks(reply)
    if not blocks:
        return "no code block to run"
    language, code = blocks[0]
    if language not in (None, "python"):
        return f"not run: the first block is not Python ({language}); chat runs Python"
    result = run_program(code, timeout_s)
    return result.result if result.reason != "passed" else "ran to its end (exit 0)"
