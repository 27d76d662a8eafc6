"""Does llama.cpp split text as the exported student's tokenizer does? One GGUF per tokenizer
family the writer knows, tokenized by llama.cpp itself (llama-cpp-python, its own venv, the
file loaded vocabulary-only) against the exported folder's tokenizer (transformers).

    python experiments/serving/tokenizer_check.py --llama-python /tmp/llcpp/bin/python

Texts: every HumanEval+ prompt with its canonical solution (indented code), and each one rendered
as the student's chat prompt (special tokens inside the text). Tokenizers:

- `codellama`: the CodeLlama stand-in (Llama 2's SentencePiece file plus CodeLlama's 16 pieces,
  a tiny random Llama; distill.testing.codellama_model_dir), written as `llama` (scores);
- `qwen2`: the embedded coder student's folder, when an export of it is given (`--qwen2
  EXPORTED_FOLDER`), written as `gpt2` with `pre = qwen2`.

Writes `tokenizer_check.json` (commit, date, machine, command; per tokenizer: texts compared,
texts split alike, and the first differences).
"""

from __future__ import annotations

import argparse
import difflib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
from provenance import provenance  # noqa: E402

from distill.evaluation.benchmarks import load_problems  # noqa: E402
from distill.evaluation.prompts import build_prompt  # noqa: E402
from distill.export.gguf import write_gguf  # noqa: E402
from distill.models.prompt_formats import apply_prompt_format  # noqa: E402
from distill.testing import codellama_model_dir  # noqa: E402

LLAMA2 = ROOT.parent / "shared/data/llama2_tokenizer/tokenizer.model"

# run by the llama-cpp-python interpreter: ids of each text, special tokens parsed, no BOS added
LLAMA_CPP_TOKENIZE = """
import json, sys, llama_cpp
model = llama_cpp.Llama(model_path=sys.argv[1], vocab_only=True, verbose=False)
texts = json.load(open(sys.argv[2]))
json.dump([model.tokenize(t.encode(), add_bos=False, special=True) for t in texts], sys.stdout)
"""


def texts(tokenizer) -> dict[str, list[str]]:
    problems = load_problems("humaneval")
    return {
        "code": [p.prompt + p.canonical_solution for p in problems],
        "chat prompt": [build_prompt(p, tokenizer, "chat") for p in problems],
    }


def unmatched(a: list[int], b: list[int]) -> int:
    """Tokens of `b` outside the blocks it shares with `a`."""
    blocks = difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_matching_blocks()
    return len(b) - sum(block.size for block in blocks)


def compare(name: str, folder: Path, python: str, work: Path, prompt_format: str | None) -> dict:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if prompt_format:
        apply_prompt_format(tokenizer, prompt_format)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    gguf_file = write_gguf(model, tokenizer, work / f"{name}-f16.gguf", "f16")
    result = {}
    for kind, batch in texts(tokenizer).items():
        (work / "texts.json").write_text(json.dumps(batch))
        done = subprocess.run(
            [python, "-c", LLAMA_CPP_TOKENIZE, str(gguf_file), str(work / "texts.json")],
            capture_output=True,
            text=True,
            check=True,
        )
        theirs = json.loads(done.stdout)
        ours = [tokenizer(t, add_special_tokens=False).input_ids for t in batch]
        differ = [i for i, (a, b) in enumerate(zip(theirs, ours, strict=True)) if a != b]
        result[kind] = {
            "texts": len(batch),
            "alike": len(batch) - len(differ),
            # over all texts: tokens outside the longest common runs of the two splits
            "tokens": sum(len(b) for b in ours),
            "tokens_different": sum(unmatched(theirs[i], ours[i]) for i in differ),
            "first_differences": [
                {
                    "text": batch[i][:120],
                    "llama_cpp": tokenizer.convert_ids_to_tokens(theirs[i])[:24],
                    "transformers": tokenizer.convert_ids_to_tokens(ours[i])[:24],
                }
                for i in differ[:3]
            ],
        }
        alike, different = result[kind]["alike"], result[kind]["tokens_different"]
        print(f"{name} {kind}: {alike}/{len(batch)} split alike, {different} tokens differ")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llama-python", required=True, help="python of llama-cpp-python's venv")
    parser.add_argument("--qwen2", type=Path, help="an exported coder-student folder")
    args = parser.parse_args()
    meta = provenance(sys.argv, peers=["transformers", "gguf"])
    meta["llama_cpp_python"] = subprocess.run(
        [args.llama_python, "-c", "import llama_cpp; print(llama_cpp.__version__)"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    record = {**meta, "tokenizers": {}}
    with tempfile.TemporaryDirectory() as work:
        folder = codellama_model_dir(LLAMA2)
        record["tokenizers"]["codellama"] = compare(
            "codellama", folder, args.llama_python, Path(work), "codellama_instruct"
        )
        if args.qwen2:
            record["tokenizers"]["qwen2"] = compare(
                "qwen2", args.qwen2, args.llama_python, Path(work), None
            )
    (HERE / "tokenizer_check.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
