"""`distill export` through the real entry point, on a tiny student trained in 4-bit NF4."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from distill.config.export import check_gguf_request
from distill.export.card import ANTHROPIC_NOTE, model_card
from distill.export.gguf import TOLERANCE
from distill.export.ollama import ollama_template
from distill.models.prompt_formats import PROMPT_FORMATS

DISTILL = [sys.executable, "-m", "distill"]


def run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*DISTILL, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A pipeline run of the tiny pair with the student in 4-bit NF4, as the real pairs train."""
    run_dir = tmp_path_factory.mktemp("export") / "run"
    args = ["pipeline", "experiment=tiny_smoke", "student.quantization=nf4"]
    out = run([*args, f"hydra.run.dir={run_dir}"], run_dir.parent)
    assert out.returncode == 0, out.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="module")
def exported(trained) -> Path:
    """The run exported in float32: the merge must then reproduce the adapters exactly."""
    out_dir = trained.parent / "export32"
    args = ["export", f"export.run={trained}", "export.dtype=float32", f"hydra.run.dir={out_dir}"]
    out = run(args, trained.parent)
    assert out.returncode == 0, out.stderr[-3000:]
    return out_dir / "model"


def test_the_export_loads_with_plain_transformers(exported, trained) -> None:
    model = AutoModelForCausalLM.from_pretrained(exported)
    assert getattr(model.config, "quantization_config", None) is None  # dense, no bitsandbytes
    assert not any("lora" in name for name, _ in model.named_parameters())  # merged, not wrapped
    assert AutoTokenizer.from_pretrained(exported).chat_template  # the format it trained with
    record = json.loads((exported / "export.json").read_text())
    weights = trained / "adapters" / "adapter_model.safetensors"
    assert record["adapters_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert record["quantization"] == "nf4" and record["dtype"] == "float32"
    assert not exported.with_name("model.partial").exists()


def test_a_float32_merge_reproduces_the_adapters_on_the_4bit_base(exported) -> None:
    check = json.loads((exported / "export.json").read_text())["check"]
    assert check["tokens"] > 50
    assert check["top1_agreement"] == 1.0
    assert check["ce_merged"] == pytest.approx(check["ce_adapters"], abs=1e-4)


def test_the_merged_weights_are_the_dequantized_base_plus_the_adapters(exported, trained):
    """One projection by hand: NF4 base dequantized, plus scale * B @ A from the adapters."""
    from peft import PeftModel

    from distill.models.loading import load_base_student

    student = OmegaConf.load(trained / ".hydra" / "config.yaml").student
    base = load_base_student(student).dequantize()
    name = "model.layers.0.self_attn.q_proj.weight"
    dense = dict(base.named_parameters())[name].detach().clone()
    peft = PeftModel.from_pretrained(base, str(trained / "adapters"))
    layer = peft.base_model.model.model.layers[0].self_attn.q_proj
    delta = layer.get_delta_weight("default")
    assert delta.abs().sum() > 0  # the adapters were trained
    with safe_open(str(exported / "model.safetensors"), "pt") as f:
        merged = f.get_tensor(name)
    torch.testing.assert_close(merged, dense + delta, rtol=0, atol=1e-6)


def test_the_exported_model_generates_what_the_adapters_generate(exported, trained, tmp_path):
    """`distill eval eval.model=<export>` against the adapters on the 4-bit base: same samples."""
    common = ["eval", "experiment=tiny_smoke", "student.quantization=nf4"]
    a = run([*common, f"eval.model={exported}", f"hydra.run.dir={tmp_path / 'a'}"], tmp_path)
    b = run(
        [*common, f"eval.adapters={trained / 'adapters'}", f"hydra.run.dir={tmp_path / 'b'}"],
        tmp_path,
    )
    assert a.returncode == 0 and b.returncode == 0, (a.stderr[-2000:], b.stderr[-2000:])
    raw_a = [json.loads(x)["raw"] for x in (tmp_path / "a/eval/exported_samples.jsonl").open()]
    raw_b = [json.loads(x)["raw"] for x in (tmp_path / "b/eval/student_samples.jsonl").open()]
    assert len(raw_a) == 3 and raw_a == raw_b
    assert any(raw_a)  # it generated text, not nothing


@pytest.fixture(scope="module")
def shipped(trained) -> Path:
    """The run exported as shipped: bfloat16, both GGUF types, an Ollama Modelfile."""
    out = trained.parent / "shipped"
    args = ["export", f"export.run={trained}", f"export.out={out}", "export.check=false"]
    done = run(
        [*args, "export.gguf=[f16,q8_0]", f"hydra.run.dir={trained.parent / 'x'}"], trained.parent
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_bfloat16_export_and_the_model_card(shipped) -> None:
    with safe_open(str(shipped / "model.safetensors"), "pt") as f:
        assert f.get_tensor("model.embed_tokens.weight").dtype == torch.bfloat16
    card = (shipped / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["base_model"] == "tiny:student" and meta["library_name"] == "transformers"
    for part in ("## Training data", "| python |", "## Evaluation", "HumanEval pass@1 [95% CI]"):
        assert part in card, part
    assert "Not run" in card  # the check was off, and the card says so


def test_bad_input_is_named_before_any_work(trained, tmp_path) -> None:
    cases = [
        ([], "give one of export.run"),
        ([f"export.run={tmp_path}"], "has no adapters/adapter_config.json"),
        ([f"export.adapters={tmp_path}"], "has no adapter_config.json"),
        ([f"export.run={trained}", "export.dtype=int3"], "export.dtype='int3'"),
        ([f"export.run={trained}", f"export.out={trained}"], "is not an earlier export"),
        ([f"export.run={trained}", "export.gguf=[q4_k]"], "unknown ['q4_k']"),
    ]
    for overrides, message in cases:
        done = run(["export", *overrides, f"hydra.run.dir={tmp_path / 'r'}"], tmp_path)
        assert done.returncode == 2, (overrides, done.stderr[-1500:])
        assert message in done.stderr + done.stdout, overrides


def test_a_failed_export_leaves_nothing_that_looks_complete(trained, tmp_path) -> None:
    broken = tmp_path / "adapters"
    broken.mkdir()
    for f in (trained / "adapters").iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "adapter_model.safetensors").write_bytes(b"not safetensors")
    out = tmp_path / "model"
    args = ["export", f"export.adapters={broken}", f"export.out={out}", "experiment=tiny_smoke"]
    done = run([*args, "student.quantization=nf4", f"hydra.run.dir={tmp_path / 'r'}"], tmp_path)
    assert done.returncode != 0
    assert not out.exists()


def test_a_claude_trained_model_card_carries_anthropic_terms() -> None:
    source = OmegaConf.create(
        {
            "seed": 0,
            "student": {
                "name": "s", "path": "codellama/CodeLlama-7b-hf", "keep_layers": None,
                "quantization": "nf4", "lora": {"r": 16, "alpha": 32},
            },
            "teacher": {"name": "claude-sonnet", "kind": "claude"},
            "data": {
                "name": "code_instruct_6lang", "batch_size": 8,
                "quality": {"decontaminate": True, "decontam_ngram": 10,
                            "decontam_threshold": 0.5, "benchmarks": ["humaneval"]},
            },
            "loss": {"components": {"ce": {"weight": 1.0}}},
            "train": {"max_steps": 100, "optimizer": {"lr": 2e-4}},
        }
    )  # fmt: skip
    records = [{"language": "rust", "task_kind": "implement"}] * 3
    card = model_card(source, records, {}, None, {"dtype": "bfloat16", "check": None})
    assert (
        ANTHROPIC_NOTE in card and "license: llama2" in card and "| rust | implement | 3 |" in card
    )


def test_gguf_files_load_back_with_their_logits_within_tolerance(shipped) -> None:
    exported = shipped
    record = json.loads((exported / "export.json").read_text())["gguf"]
    assert set(record) == {"f16", "q8_0"}
    # f16 holds every bfloat16 weight of these small models exactly: the same logits (a wrong
    # rotary permutation or tensor name would measure about 1.7).
    assert record["f16"]["max_rel_diff"] < 1e-5 and record["f16"]["top1_agreement"] == 1.0
    assert record["q8_0"]["max_rel_diff"] <= TOLERANCE["q8_0"]
    q8 = exported / record["q8_0"]["file"]
    assert q8.stat().st_size < (exported / record["f16"]["file"]).stat().st_size
    # Independently of the export's own check: transformers reads the file as the same model.
    gguf_model = AutoModelForCausalLM.from_pretrained(
        exported, gguf_file=record["f16"]["file"], dtype=torch.float32
    )
    merged = AutoModelForCausalLM.from_pretrained(exported, dtype=torch.float32)
    ids = AutoTokenizer.from_pretrained(exported)("def f(x):\n    return", return_tensors="pt")
    with torch.no_grad():
        a, b = merged(**ids).logits, gguf_model(**ids).logits
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5 * float(a.abs().max()))
    modelfile = (exported / "Modelfile").read_text()
    assert f"FROM ./{record['q8_0']['file']}" in modelfile and "<|im_start|>" in modelfile


def test_gguf_requests_the_writer_cannot_serve_are_named() -> None:
    assert "no GGUF writer" in check_gguf_request(["f16"], "gpt2")[0]
    assert check_gguf_request(["f16", "q8_0"], "qwen2") == []
    assert check_gguf_request([], "gpt2") == []  # no GGUF asked: any architecture exports


def test_ollama_templates_for_the_trained_formats() -> None:
    assert ollama_template(PROMPT_FORMATS["alpaca"], "</s>")[0].endswith("### Response:\n")
    template, stops = ollama_template(PROMPT_FORMATS["codellama_instruct"], "</s>")
    assert template.startswith("[INST]") and stops == ["</s>"]
    assert ollama_template("{{ messages }}", "</s>") == (None, [])


def test_chat_streams_the_greedy_answer_of_the_exported_model(exported, tmp_path) -> None:
    prompt = "Write a function that adds two numbers."
    args = ["chat", "experiment=tiny_smoke", f"chat.model={exported}", f"chat.prompt={prompt}"]
    done = run([*args, "chat.max_new_tokens=12", f"hydra.run.dir={tmp_path}"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    tokenizer = AutoTokenizer.from_pretrained(exported)
    model = AutoModelForCausalLM.from_pretrained(exported)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
    )
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    expected = tokenizer.decode(out[0, ids.input_ids.shape[1] :], skip_special_tokens=True)
    assert expected.strip() and expected in done.stdout
    (row,) = [json.loads(line) for line in (tmp_path / "chat.jsonl").open()]
    assert row == {"model": "exported", "prompt": prompt, "answer": expected}


def test_chat_reads_a_conversation_from_stdin_until_exit(exported, tmp_path) -> None:
    args = ["chat", "experiment=tiny_smoke", f"chat.model={exported}", "chat.max_new_tokens=4"]
    done = subprocess.run(
        [*DISTILL, *args, f"hydra.run.dir={tmp_path}"],
        input="first question\n\nsecond question\nexit\nnever asked\n",
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "chat.jsonl").open()]
    assert [r["prompt"] for r in rows] == ["first question", "second question"]
    assert json.loads((tmp_path / "metrics.json").read_text())["chat/turns"] == 2


def test_chat_runs_the_first_python_block_in_the_sandbox() -> None:
    from distill.export.chat import run_first_block

    assert run_first_block("Sure:\n```python\nassert sum([1, 2]) == 3\n```", 5) == (
        "ran to its end (exit 0)"
    )
    assert "AssertionError" in run_first_block("```python\nassert 1 == 2\n```\nok", 5)
    assert run_first_block("```rust\nfn main() {}\n```", 5).startswith("not run")
    assert run_first_block("no code here", 5) == "no code block to run"


def test_chat_names_a_model_folder_that_is_not_one(tmp_path) -> None:
    done = run(["chat", f"chat.model={tmp_path}", "chat.prompt=hi"], tmp_path)
    assert done.returncode == 2 and "with a config.json" in done.stderr + done.stdout


GO_RENDER = """package main

import (
	"encoding/json"
	"os"
	"text/template"
)

func main() {
	tmpl := template.Must(template.New("").Parse(os.Args[1]))
	var data map[string]any
	if err := json.Unmarshal([]byte(os.Args[2]), &data); err != nil {
		panic(err)
	}
	if err := tmpl.Execute(os.Stdout, data); err != nil {
		panic(err)
	}
}
"""


@pytest.fixture(scope="module")
def go_template(tmp_path_factory):
    """Go's text/template (the engine Ollama renders Modelfile templates with) as a command."""
    if shutil.which("go") is None:
        pytest.skip("no Go toolchain (`make toolchains` installs golang-go)")
    folder = tmp_path_factory.mktemp("go")
    (folder / "main.go").write_text(GO_RENDER)
    env = {**os.environ, "GOCACHE": str(folder / "cache"), "GOFLAGS": "", "GO111MODULE": "off"}
    done = subprocess.run(
        ["go", "build", "-o", "render", "main.go"], cwd=folder, env=env, capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()
    return folder / "render"


def ollama_prompt(render: Path, modelfile_text: str, messages: list[dict]) -> str:
    """The prompt Ollama builds for a chat request, as its server and template code do: the
    Modelfile's SYSTEM goes first when the request has no system message; a template that reads
    `.Messages` gets every message (system ones too) and `.System` (them joined); an older one
    gets `.System` and `.Prompt` (one turn here)."""
    template = re.search(r'TEMPLATE """(.*?)"""', modelfile_text, re.DOTALL).group(1)
    system = re.search(r'SYSTEM """(.*?)"""', modelfile_text, re.DOTALL)
    if system and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system.group(1)}, *messages]
    systems = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    data = {"System": systems, "Response": ""}
    if ".Messages" in template:
        data["Messages"] = [{"Role": m["role"], "Content": m["content"]} for m in messages]
    else:
        data["Prompt"] = next(m["content"] for m in messages if m["role"] == "user")
    done = subprocess.run([str(render), template, json.dumps(data)], capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def chat_templates() -> dict[str, str]:
    """ChatML without a system message of its own (the tiny models'), SmolLM2's real template
    (it adds one), and the two instruction formats distill trains base models with."""
    from distill.models import embedded
    from distill.models.tiny import CHATML

    templates = {"chatml": CHATML}
    templates.update({name: PROMPT_FORMATS[name] for name in ("alpaca", "codellama_instruct")})
    if not embedded.missing_packages("smollm2-135m-instruct"):
        import gguf

        reader = gguf.GGUFReader(embedded.gguf_path("smollm2-135m-instruct"))
        templates["smollm2"] = reader.fields["tokenizer.chat_template"].contents()
    return templates


def test_ollama_builds_the_prompt_the_student_trained_with(go_template) -> None:
    """Each format's Modelfile, rendered as Ollama renders it, against the chat template's own
    rendering (Jinja, through transformers), with and without a system message; the BOS token
    the Jinja template writes is llama.cpp's tokenizer's job under Ollama."""
    from distill.export.ollama import default_system, modelfile
    from distill.models.tiny import tiny_tokenizer

    templates = chat_templates()
    for name, chat_template in templates.items():
        tokenizer = tiny_tokenizer()
        tokenizer.chat_template = chat_template
        system = default_system(tokenizer)
        assert (system is not None) == (name == "smollm2"), name
        text = modelfile("m.gguf", chat_template, "</s>", system)
        for messages in (
            [{"role": "user", "content": "Write add(a, b)."}],
            [{"role": "system", "content": "Answer in Python."}, {"role": "user", "content": "Hi"}],
        ):
            expected = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
            expected = expected.removeprefix(tokenizer.bos_token or "")
            assert ollama_prompt(go_template, text, messages) == expected, (name, messages)


def test_gguf_names_the_pre_tokenizer_llama_cpp_must_split_text_with() -> None:
    """Without `tokenizer.ggml.pre` llama.cpp splits text with its default regex; measured on the
    coder student served by llama.cpp, pass@1 fell from 55% to 10% (experiments/serving)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from distill.export.gguf import QWEN2_SPLIT, llama_cpp_pre
    from distill.models.tiny import tiny_tokenizer

    def bpe(pre) -> PreTrainedTokenizerFast:
        backend = Tokenizer(models.BPE(vocab={"a": 0, "b": 1, "ab": 2}, merges=[("a", "b")]))
        backend.pre_tokenizer = pre
        return PreTrainedTokenizerFast(tokenizer_object=backend)

    qwen2 = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    assert llama_cpp_pre(bpe(qwen2)) == "qwen2"
    assert llama_cpp_pre(bpe(pre_tokenizers.ByteLevel(add_prefix_space=False))) == "gpt2"
    other = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\s+"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    assert llama_cpp_pre(bpe(other)) is None
    assert llama_cpp_pre(tiny_tokenizer()) is None


LLAMA2 = Path(__file__).resolve().parents[2] / "shared/data/llama2_tokenizer/tokenizer.model"


@pytest.mark.skipif(not LLAMA2.exists(), reason=f"{LLAMA2} is missing (shared data)")
def test_a_codellama_gguf_carries_its_sentencepiece_tokenizer(tmp_path, caplog) -> None:
    """CodeLlama's vocabulary is SentencePiece BPE (`▁` for spaces, byte fallback): the GGUF names
    it `llama` with scores that order merges as the tokenizer does, not byte-level `gpt2` merges.
    Read back by transformers' GGUF reader, it splits every HumanEval+ solution as the exported
    folder's tokenizer does (llama.cpp's own check: experiments/serving/tokenizer_check.json)."""
    import gguf

    from distill.evaluation.benchmarks import load_problems
    from distill.export.gguf import write_gguf
    from distill.testing import codellama_model_dir

    pytest.importorskip("sentencepiece", reason="building the tokenizer needs sentencepiece")
    folder = codellama_model_dir(LLAMA2)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    write_gguf(model, tokenizer, tmp_path / "cl-f16.gguf", "f16")

    fields = gguf.GGUFReader(tmp_path / "cl-f16.gguf").fields
    assert bytes(fields["tokenizer.ggml.model"].parts[-1]).decode() == "llama"
    assert bool(fields["tokenizer.ggml.add_bos_token"].parts[-1][0])
    types = fields["tokenizer.ggml.token_type"]
    kinds = [int(types.parts[i][0]) for i in types.data]
    assert kinds[0] == gguf.TokenType.UNKNOWN and kinds[1] == gguf.TokenType.CONTROL
    assert kinds[3:259] == [gguf.TokenType.BYTE] * 256  # <0x00> .. <0xFF>
    read = AutoTokenizer.from_pretrained(tmp_path, gguf_file="cl-f16.gguf")
    for problem in load_problems("humaneval"):
        text = problem.prompt + problem.canonical_solution
        assert read(text).input_ids == tokenizer(text).input_ids, problem.task_id
    # llama.cpp puts `▁` after a special token as SentencePiece does; transformers 5's Llama
    # tokenizers (legacy=False, as it loads CodeLlama) do not, and exporting one says so
    assert "split differently there than in training" in caplog.text
    caplog.clear()
    legacy = AutoTokenizer.from_pretrained(folder, legacy=True)
    write_gguf(model, legacy, tmp_path / "legacy-f16.gguf", "f16")
    assert "split differently" not in caplog.text
