"""Templates: six languages x nine kinds x three levels; exact quotas, determinism, snippets."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from distill.data.instructions.languages import LANGUAGES, parse_signature, render_signature
from distill.data.instructions.mixture import controlled_round, mixture_quotas, quotas
from distill.data.instructions.prompts import TASK_KINDS, stub
from distill.data.instructions.specs import FUNCTION_SPECS, TOPICS
from distill.data.instructions.templates import (
    DIFFICULTIES,
    PYTHON_SPECS,
    Instruction,
    check_mixture,
    instructions_from_config,
    load_snippets,
    max_tokens_for,
    sample_instructions,
)
from distill.data.quality.validators import syntax_check

PRESET = OmegaConf.load(Path(__file__).parents[3] / "conf" / "data" / "code_instruct_6lang.yaml")
AXES = [dict(PRESET.languages), dict(PRESET.task_kinds), dict(PRESET.difficulties)]


def exact_share(axes, cell, total) -> float:
    share = float(total)
    for weights, value in zip(axes, cell, strict=True):
        share *= weights[value] / sum(weights.values())
    return share


def test_preset_covers_six_languages_nine_kinds_three_levels():
    assert set(PRESET.languages) == set(LANGUAGES) and len(LANGUAGES) == 6
    assert set(PRESET.task_kinds) == set(TASK_KINDS) and len(TASK_KINDS) >= 8
    assert set(PRESET.difficulties) == set(DIFFICULTIES)
    assert check_mixture(*AXES) == []


def test_a_10000_run_hits_every_axis_exactly_and_every_cell_within_one():
    out = sample_instructions(10_000, *AXES, seed=0)
    assert len(out) == 10_000 and len({i.prompt for i in out}) == 10_000
    cells = Counter((i.language, i.task_kind, i.difficulty) for i in out)
    assert cells == {c: n for c, n in mixture_quotas(AXES, 10_000).items() if n}
    for cell, n in cells.items():
        assert abs(n - exact_share(AXES, cell, 10_000)) < 1, cell
    for axis, weights in enumerate(AXES):
        got = Counter(i for cell, n in cells.items() for i in [cell[axis]] * n)
        assert got == quotas(weights, 10_000)
    assert Counter(i.language for i in out)["python"] == 3000  # weight 0.30 of 10,000
    assert Counter(i.difficulty for i in out)["hard"] == 2500


def test_mixture_quotas_keep_every_marginal_for_random_mixtures():
    rng = random.Random(0)
    for _ in range(200):
        axes = [
            {f"{a}{i}": rng.choice([0.0, 1.0, 0.5, rng.random()]) + 0.01 for i in range(k)}
            for a, k in zip(
                "lkd", (rng.randint(1, 6), rng.randint(1, 9), rng.randint(1, 3)), strict=True
            )
        ]
        total = rng.randint(0, 20_000)
        counts = mixture_quotas(axes, total)
        assert sum(counts.values()) == total
        for axis, weights in enumerate(axes):
            marginal = Counter()
            for cell, n in counts.items():
                marginal[cell[axis]] += n
            assert {k: marginal[k] for k in weights} == quotas(weights, total)
        assert all(abs(n - exact_share(axes, c, total)) < 2 for c, n in counts.items())


def test_controlled_round_says_when_no_rounding_exists():
    x = {("a", "x"): 0.5, ("a", "y"): 0.5, ("b", "x"): 0.5, ("b", "y"): 0.5}
    rounded = controlled_round(x, {"a": 1, "b": 1}, {"x": 1, "y": 1})
    assert rounded is not None and sum(rounded.values()) == 2
    assert controlled_round(x, {"a": 2, "b": 0}, {"x": 2, "y": 0}) is None  # ceil(0.5) < 2


def test_sampling_is_deterministic_and_a_bigger_run_extends_a_smaller_one():
    first = sample_instructions(600, *AXES, seed=3)
    assert sample_instructions(600, *AXES, seed=3) == first
    assert {i.prompt for i in sample_instructions(600, *AXES, seed=4)} != {i.prompt for i in first}
    bigger = sample_instructions(1200, *AXES, seed=3)
    for cell in {(i.language, i.task_kind, i.difficulty) for i in first}:
        small = {i.prompt for i in first if (i.language, i.task_kind, i.difficulty) == cell}
        large = {i.prompt for i in bigger if (i.language, i.task_kind, i.difficulty) == cell}
        assert small <= large or large <= small, cell  # already-paid prompts stay asked


@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_every_kind_asks_for_a_tagged_block_in_each_language(language):
    tag = LANGUAGES[language].tag
    out = sample_instructions(len(TASK_KINDS) * 3, {language: 1}, dict.fromkeys(TASK_KINDS, 1),
                              dict.fromkeys(DIFFICULTIES, 1), seed=0)  # fmt: skip
    assert {i.task_kind for i in out} == set(TASK_KINDS)
    for ins in out:
        assert f"```{tag} fenced block" in ins.prompt, ins.prompt
        assert LANGUAGES[language].name in ins.prompt
        if ins.task_kind in ("fix_bug", "refactor", "optimise"):
            assert "```text block" in ins.prompt  # the "before" code is never the extracted one


@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_every_spec_renders_a_stub_that_parses(language):
    for spec in FUNCTION_SPECS:
        code = stub(spec, language)
        if language == "python":
            code += "    pass\n"
        assert syntax_check(code, language).ok, code
        name = parse_signature(spec.name)[0]
        rendered = render_signature(spec.name, language).replace("_", "").lower()
        assert name.replace("_", "") in rendered


def test_signatures_use_each_languages_idioms():
    sig = "merge_sorted(a: list[int], b: list[int]) -> list[int]"
    assert render_signature(sig, "java") == "public static int[] mergeSorted(int[] a, int[] b)"
    assert render_signature(sig, "go") == "func MergeSorted(a []int, b []int) []int"
    assert render_signature(sig, "rust") == "fn merge_sorted(a: &[i64], b: &[i64]) -> Vec<i64>"
    assert render_signature(sig, "cpp") == (
        "std::vector<int> merge_sorted(const std::vector<int>& a, const std::vector<int>& b)"
    )


def test_max_tokens_grows_with_difficulty_and_verbosity():
    out = sample_instructions(500, *AXES, seed=0)
    assert all(512 <= i.max_tokens <= 8192 and i.max_tokens % 64 == 0 for i in out)
    assert max_tokens_for("implement", "hard", "python") > max_tokens_for(
        "implement", "easy", "python"
    )
    assert max_tokens_for("implement", "easy", "java") > max_tokens_for(
        "implement", "easy", "python"
    )
    assert max_tokens_for("write_tests", "easy", "go") > max_tokens_for("implement", "easy", "go")
    assert max_tokens_for("implement", "easy", "python", scale=2.0) == 1024


def test_a_cell_that_cannot_be_filled_says_so():
    hard = sum(s.difficulty == "hard" for s in FUNCTION_SPECS) * (len(TOPICS) + 1)
    one = ({"rust": 1}, {"optimise": 1}, {"hard": 1})
    assert len({i.prompt for i in sample_instructions(hard, *one)}) == hard
    with pytest.raises(ValueError, match=r"rust/optimise/hard .* data\.seed_snippets"):
        sample_instructions(hard + 1, *one)


def test_snippets_seed_oss_instruct_prompts(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "lib.rs").write_text("fn a() {}\nfn b() {}\nfn c() {}\nfn d() {}\n")
    (tmp_path / "src" / "tool.py").write_text("import os\n\ndef f():\n    return os.sep\n")
    (tmp_path / "src" / "README.md").write_text("not code\nat\nall\n")
    folder = load_snippets(tmp_path / "src")
    assert set(folder) == {"python", "rust"} and folder["rust"] == [
        "fn a() {}\nfn b() {}\nfn c() {}\nfn d() {}"
    ]
    rows = [{"language": "py", "code": f"x = {i}\ny = x + 1\nprint(x, y)"} for i in range(6)]
    rows.append({"language": "cobol", "code": "a\nb\nc"})
    jsonl = tmp_path / "snippets.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    snippets = load_snippets(jsonl)
    assert list(snippets) == ["python"] and len(snippets["python"]) == 6
    out = sample_instructions(8, {"python": 1}, {"implement": 1}, {"medium": 1}, snippets=snippets)
    seeded = [i for i in out if i.source.startswith("snippet:")]
    assert len(seeded) == 4  # seed_fraction 0.5
    for ins in seeded:
        assert "### Problem" in ins.prompt and "x + 1" in ins.prompt
        assert ins.max_tokens > max_tokens_for("implement", "medium", "python")
    assert len({i.prompt for i in out}) == 8


def test_instructions_from_config_reads_every_option(tmp_path):
    jsonl = tmp_path / "snippets.jsonl"
    jsonl.write_text(
        json.dumps({"language": "rs", "code": "fn a() {}\nfn b() {}\nfn c() {}"}) + "\n"
    )
    options = {"seed_snippets": str(jsonl), "seed_fraction": 1.0, "max_tokens_scale": 0.5}
    data = OmegaConf.create({**OmegaConf.to_container(PRESET), "num_examples": 50, **options})
    out = instructions_from_config(data, seed=0)
    assert len(out) == 50
    rust = [i for i in out if i.language == "rust"]
    assert sum(i.source.startswith("snippet") for i in rust) == len(
        {i.task_kind + i.difficulty for i in rust}
    )
    assert all(i.max_tokens <= 4096 for i in out)
    with pytest.raises(ValueError, match="data.seed_snippets=.* does not exist"):
        data.seed_snippets = "/nonexistent"
        instructions_from_config(data, 0)


def test_a_fixed_instruction_seed_draws_the_same_instructions_for_every_run_seed():
    data = OmegaConf.create({**OmegaConf.to_container(PRESET), "num_examples": 40})
    prompts = {s: [i.prompt for i in instructions_from_config(data, s)] for s in (0, 1)}
    assert prompts[0] != prompts[1]  # the run's seed draws the instructions by default
    data.instruction_seed = 0
    assert [i.prompt for i in instructions_from_config(data, 1)] == prompts[0]


def test_quotas_are_exact_and_use_the_largest_remainder():
    assert quotas({"a": 0.5, "b": 0.3, "c": 0.2}, 7) == {"a": 4, "b": 2, "c": 1}  # 3.5 2.1 1.4
    assert quotas({"a": 1, "b": 1, "c": 1}, 0) == {"a": 0, "b": 0, "c": 0}
    weights = {"x": 3.0, "y": 1.0, "z": 0.7, "w": 0.0}
    for total in range(0, 60):
        counts = quotas(weights, total)
        assert sum(counts.values()) == total
        assert counts["w"] == 0
        for k, w in weights.items():  # never more than one away from the exact share
            assert abs(counts[k] - total * w / sum(weights.values())) < 1


MIXTURE = {
    "languages": {"python": 1.0},
    "task_kinds": {"implement": 2.0, "complete": 1.0},
    "difficulties": {"easy": 1.0, "medium": 1.0, "hard": 1.0},
}


def test_sample_instructions_hits_every_cell_count():
    out = sample_instructions(30, **MIXTURE, seed=0)
    assert len(out) == 30 and all(isinstance(i, Instruction) for i in out)
    cells = Counter((i.language, i.task_kind, i.difficulty) for i in out)
    # weights 2:2:2:1:1:1 of 30 -> 6.67 x3 and 3.33 x3; the kinds must total 20 and 10 and each
    # difficulty 10, so the largest remainders go to two implement cells and one complete cell
    assert cells == {
        ("python", "implement", "easy"): 7,
        ("python", "implement", "medium"): 7,
        ("python", "implement", "hard"): 6,
        ("python", "complete", "easy"): 3,
        ("python", "complete", "medium"): 3,
        ("python", "complete", "hard"): 4,
    }
    assert len({i.prompt for i in out}) == 30  # distinct within a cell, and across kinds
    hard = {s[1] for s in PYTHON_SPECS if s[0] == "hard"}
    for ins in out:
        if ins.difficulty == "hard" and ins.task_kind == "implement":
            assert any(signature in ins.prompt for signature in hard)


def test_sample_instructions_is_deterministic_for_a_seed():
    first = sample_instructions(20, **MIXTURE, seed=3)
    assert sample_instructions(20, **MIXTURE, seed=3) == first
    assert sample_instructions(20, **MIXTURE, seed=4) != first


def test_asking_more_than_a_cell_holds_names_num_examples():
    hard = sum(s[0] == "hard" for s in PYTHON_SPECS) * (len(TOPICS) + 1)  # specs x topic seeds
    one_cell = {"languages": {"python": 1}, "task_kinds": {"implement": 1}}
    assert len(sample_instructions(hard, **one_cell, difficulties={"hard": 1})) == hard
    with pytest.raises(
        ValueError, match=rf"asks for {hard + 1} .* only {hard} distinct .*data\.num_examples"
    ):
        sample_instructions(hard + 1, **one_cell, difficulties={"hard": 1})


def test_check_mixture_names_unknown_axis_values():
    problems = check_mixture(
        {"python": 1, "cobol": 1}, {"implement": 1, "haiku": 1}, {"easy": 1, "hard": 1}
    )
    assert problems == [
        "data.languages: no templates for ['cobol']; available: python, javascript, java, cpp, "
        "go, rust",
        "data.task_kinds: no templates for ['haiku']; available: implement, complete, fix_bug, "
        "write_tests, refactor, optimise, data_structure, algorithm, explain_then_code",
    ]
    assert check_mixture(*MIXTURE.values()) == []
