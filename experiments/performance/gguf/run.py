"""How close `distill export`'s GGUF files are to the model they were written from.

For the embedded SmolLM2-135M-Instruct (a real Llama-architecture model) and the tiny random test
student: write each GGUF type with distill's writer, load it back with transformers, and compare
next-token logits on distill's check prompts (`distill.export.gguf.export_ggufs`, the code path
`distill export export.gguf=[...]` runs). Writes results.csv and results.md beside this file.

    python experiments/performance/gguf/run.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # experiments/

from provenance import provenance, write_csv  # noqa: E402

MODELS = {"SmolLM2-135M-Instruct": "embedded:smollm2-135m-instruct", "tiny random": "tiny:student"}


def main() -> None:
    from distill.export.gguf import TOLERANCE, export_ggufs
    from distill.models.sources import resolve_model_dir

    rows = []
    for label, spec in MODELS.items():
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "model"
            shutil.copytree(resolve_model_dir(spec), folder)
            start = time.perf_counter()
            checks = export_ggufs(folder, list(TOLERANCE), "model")
            seconds = time.perf_counter() - start
        for kind, check in checks.items():
            rows.append(
                {
                    "model": label,
                    "type": kind,
                    "bytes": check["bytes"],
                    "max_rel_diff": f"{check['max_rel_diff']:.2e}",
                    "top1_agreement": f"{check['top1_agreement']:.4f}",
                    "tolerance": check["tolerance"],
                    "seconds_both_types": f"{seconds:.1f}",
                }
            )
    meta = provenance(sys.argv)
    write_csv(HERE / "results.csv", rows, meta)
    lines = [
        f"Commit {meta['commit']}, {meta['date']}, {meta['machine']}.",
        f"Command: `{meta['command']}`",
        "",
        "| model | GGUF type | bytes | max logit difference / max logit | next-token agreement "
        "| tolerance |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['model']} | {r['type']} | {r['bytes']:,} | {r['max_rel_diff']} | "
        f"{float(r['top1_agreement']):.1%} | {r['tolerance']} |"
        for r in rows
    ]
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
