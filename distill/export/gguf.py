"""GGUF files for llama.cpp and Ollama, written with the `gguf` package from an exported folder.

Two architectures, the students distill trains: Llama (CodeLlama, SmolLM2) and Qwen2
(Qwen2.5-Coder). Tensor names come from the `gguf` package's own map; Llama's query and key
projections are permuted into llama.cpp's rotary layout (as its converter does); norms and
biases stay float32, matrices are stored as the asked type. The tokenizer goes in as llama.cpp
reads it: SentencePiece-style BPE (Llama's byte-fallback vocabulary: tokens, scores that order
merges as the tokenizer does, types) or byte-level BPE (tokens, types, merges, the pre-tokenizer's
name), with special ids, BOS/EOS flags and the chat template. Each file is
checked by loading it back with transformers (which undoes the permutation) and comparing
next-token logits with the folder's model (:func:`check_gguf`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distill.config.export import check_gguf_request
from distill.errors import UserError

log = logging.getLogger(__name__)

# How close a GGUF's next-token logits must be to the merged model's, per type: the largest
# difference over the check prompts, relative to the largest logit (f16 rounds each weight to
# 11 significant bits, q8_0 to 8 bits per block of 32).
# Measured (experiments/performance/gguf/results.md): SmolLM2-135M f16 0.001, q8_0 0.023; the
# tiny random test student, whose weights are far larger than a trained model's, 0.010 and 0.21.
TOLERANCE = {"f16": 0.05, "q8_0": 0.35}


CHECK_PROMPTS = (
    'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n',
    "Write a function that returns the largest prime factor of a number.",
    "fn main() {\n    let v: Vec<i32> = (1..10).collect();\n",
)


def export_ggufs(model_dir: Path, kinds: list[str], stem: str) -> dict[str, dict[str, Any]]:
    """Write and check one GGUF per type in `model_dir`; what each check measured. The merged
    model and its reference logits are loaded and computed once for all types.

    Raises:
        UserError: If the architecture has no writer, or a file's logits are out of its type's
            :data:`TOLERANCE`.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    problems = check_gguf_request(kinds, model.config.model_type)
    if problems:
        raise UserError("\n".join(problems))
    reference = next_token_logits(model, tokenizer)
    checks = {}
    for kind in kinds:
        path = write_gguf(model, tokenizer, model_dir / f"{stem}-{kind}.gguf", kind)
        result = check_gguf(path, tokenizer, reference)
        if result["max_rel_diff"] > TOLERANCE[kind]:
            raise UserError(
                f"{path.name}: its next-token logits differ from the merged model's by "
                f"{result['max_rel_diff']:.3f} of the largest logit (tolerance for {kind}: "
                f"{TOLERANCE[kind]}); the export is left unfinished"
            )
        checks[kind] = {
            **result,
            "file": path.name,
            "bytes": path.stat().st_size,
            "tolerance": TOLERANCE[kind],
        }
    return checks


def write_gguf(model: Any, tokenizer: Any, out: Path, kind: str) -> Path:
    """Write a (float32, llama or qwen2) model and its tokenizer as one GGUF file of `kind`."""
    import gguf

    config = model.config
    arch = config.model_type
    writer = gguf.GGUFWriter(str(out), arch)
    _write_config(writer, config, kind)
    _write_tokenizer(writer, tokenizer, config.vocab_size)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], config.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # llama.cpp reuses the embedding, as transformers does
        target = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise UserError(f"export.gguf: no GGUF name for the tensor {name} of {arch}")
        data = tensor.detach().float().numpy()
        if arch == "llama" and target.endswith(("attn_q.weight", "attn_k.weight")):
            heads = config.num_attention_heads
            if target.endswith("attn_k.weight"):
                heads = config.num_key_value_heads
            data = _rotary_permute(data, heads)
        data, qtype = _stored(data, kind)
        writer.add_tensor(target, data, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def _write_config(writer: Any, config: Any, kind: str) -> None:
    import gguf

    rope = getattr(config, "rope_parameters", None) or {}
    theta = rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_type("model")
    writer.add_file_type(
        gguf.LlamaFileType.MOSTLY_F16 if kind == "f16" else gguf.LlamaFileType.MOSTLY_Q8_0
    )
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(float(theta))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(config.vocab_size)


# llama.cpp splits text before BPE with a regex it picks by name (`tokenizer.ggml.pre`); without
# one it falls back to a default that splits code differently from the model's own tokenizer
# ("GENERATION QUALITY WILL BE DEGRADED": measured through llama.cpp's server, the coder student's
# pass@1 fell from 55% to 10% on 20 problems, with answers like `has_ close_elements`). Named here
# by the tokenizer's own pre-tokenizer (tokenizer.json) as llama.cpp's converter names it.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PRE_TOKENIZERS = {QWEN2_SPLIT: "qwen2"}


def llama_cpp_pre(tokenizer: Any) -> str | None:
    """llama.cpp's name for the tokenizer's pre-tokenizer: `gpt2` for GPT-2's byte-level regex
    (SmolLM2), `qwen2` for Qwen2's split; None when it is not one llama.cpp is known to share."""
    pre = json.loads(tokenizer.backend_tokenizer.to_str()).get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex"):
        return "gpt2"
    parts = pre.get("pretokenizers") or []
    if [p.get("type") for p in parts] == ["Split", "ByteLevel"]:
        return PRE_TOKENIZERS.get(parts[0].get("pattern", {}).get("Regex"))
    return None


def _write_tokenizer(writer: Any, tokenizer: Any, vocab_size: int) -> None:
    """The tokenizer as llama.cpp reads it: SentencePiece-style BPE ("llama": CodeLlama) or
    byte-level BPE ("gpt2": Qwen2, SmolLM2); ids past the tokenizer's own vocabulary (a padded
    embedding) become unused placeholder tokens."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model = spec["model"]
    # (left, right) pairs, in rank order; older tokenizer.json files write "left right"
    merges = [m.split(" ", 1) if isinstance(m, str) else m for m in model.get("merges") or []]
    sentencepiece = model.get("type") == "BPE" and bool(model.get("byte_fallback"))
    tokens, types = _token_list(tokenizer, vocab_size, sentencepiece)
    if sentencepiece:
        if (spec.get("pre_tokenizer") or {}).get("prepend_scheme") == "first":
            log.warning(
                "the student's tokenizer (legacy=False) adds no `▁` to text after a special "
                "token; llama.cpp does, as SentencePiece does: such prompts (`<s>[INST]`) split "
                "differently there than in training"
            )
        writer.add_tokenizer_model("llama")
        writer.add_token_list(tokens)
        writer.add_token_scores(_merge_scores(tokens, merges))
    else:
        writer.add_tokenizer_model("gpt2")
        pre = llama_cpp_pre(tokenizer)
        if pre is None:
            log.warning(
                "the student's pre-tokenizer has no llama.cpp name here: llama.cpp will split "
                "text with its default, unlike the student's tokenizer (see distill/export/gguf.py)"
            )
        else:
            writer.add_tokenizer_pre(pre)
        writer.add_token_list(tokens)
        if merges:
            writer.add_token_merges([f"{left} {right}" for left, right in merges])
    writer.add_token_types(types)
    for key, value in (
        ("bos", tokenizer.bos_token_id),
        ("eos", tokenizer.eos_token_id),
        ("unk", tokenizer.unk_token_id),
        ("pad", tokenizer.pad_token_id),
    ):
        if value is not None:
            getattr(writer, f"add_{key}_token_id")(value)
    # whether llama.cpp prepends BOS / appends EOS, as the tokenizer does (its defaults differ)
    bos, eos, ids = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer("a").input_ids
    writer.add_add_bos_token(bos is not None and ids[0] == bos)
    writer.add_add_eos_token(eos is not None and ids[-1] == eos)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def _token_list(tokenizer: Any, vocab_size: int, sentencepiece: bool) -> tuple[list[str], list]:
    """Every id's token text and llama.cpp type (control, user-defined, byte, unknown, normal)."""
    import re

    import gguf

    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    special = set(tokenizer.all_special_ids)
    added = set(tokenizer.added_tokens_decoder)
    byte = re.compile(r"<0x[0-9A-F]{2}>")
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(by_id[i])
        if i == tokenizer.unk_token_id and sentencepiece:
            types.append(gguf.TokenType.UNKNOWN)
        elif i in special:
            types.append(gguf.TokenType.CONTROL)
        elif i in added:
            types.append(gguf.TokenType.USER_DEFINED)
        elif sentencepiece and byte.fullmatch(by_id[i]):
            types.append(gguf.TokenType.BYTE)
        else:
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


# llama.cpp's SentencePiece tokenizer merges, of all adjacent pairs, the one whose joined text is
# the token of highest score: the score of a token made by the tokenizer's merge of rank r is -r,
# so llama.cpp merges in the tokenizer's own order. Tokens no merge makes (characters, bytes,
# specials) score lowest.
NOT_MERGED = -1e9


def _merge_scores(tokens: list[str], merges: list[list[str]]) -> list[float]:
    rank: dict[str, int] = {}
    for r, (left, right) in enumerate(merges):
        rank.setdefault(left + right, r)
    return [-float(rank[t]) if t in rank else NOT_MERGED for t in tokens]


def _rotary_permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """HF's rotary halves -> llama.cpp's interleaved pairs (the inverse of transformers'
    ``LlamaTensorProcessor._reverse_permute_weights``)."""
    dim = weights.shape[0] // heads // 2
    return weights.reshape(heads, 2, dim, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def _stored(data: np.ndarray, kind: str) -> tuple[np.ndarray, Any]:
    """The array as written and its GGML type: vectors stay float32, matrices take `kind`."""
    import gguf

    if data.ndim < 2:
        return data.astype(np.float32), gguf.GGMLQuantizationType.F32
    if kind == "f16":
        return data.astype(np.float16), gguf.GGMLQuantizationType.F16
    qtype = gguf.GGMLQuantizationType.Q8_0
    if data.shape[-1] % 32:  # Q8_0 packs rows in blocks of 32: llama.cpp keeps such rows in f16
        return data.astype(np.float16), gguf.GGMLQuantizationType.F16
    return gguf.quants.quantize(data, qtype), qtype


@torch.no_grad()
def next_token_logits(model: Any, tokenizer: Any) -> list[torch.Tensor]:
    """The model's logits at every position of each :data:`CHECK_PROMPTS` prompt."""
    return [model(tokenizer(p, return_tensors="pt").input_ids).logits[0] for p in CHECK_PROMPTS]


@torch.no_grad()
def check_gguf(gguf_file: Path, tokenizer: Any, reference: list[torch.Tensor]) -> dict[str, float]:
    """Load the GGUF back with transformers; compare its next-token logits with `reference`
    (:func:`next_token_logits` of the merged model).

    Returns:
        ``max_rel_diff`` (the largest logit difference relative to the largest logit) and
        ``top1_agreement``, over every position of the prompts.
    """
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(
        str(gguf_file.parent), gguf_file=gguf_file.name, dtype=torch.float32
    ).eval()
    worst, agree, total = 0.0, 0, 0
    for a, b in zip(reference, next_token_logits(loaded, tokenizer), strict=True):
        worst = max(worst, float((a - b).abs().max() / a.abs().max()))
        agree += int((a.argmax(-1) == b.argmax(-1)).sum())
        total += a.shape[0]
    return {"max_rel_diff": worst, "top1_agreement": agree / max(total, 1)}
