"""The contract every registered benchmark keeps, run over all of them.

A benchmark's YAML composes and names it; its data loads from the shared copy (the variable its
YAML reads); missing data is named before any work; both prompt formats render; a fenced chat
answer holding the reference becomes a sample that passes, and the reference itself passes while
an empty sample fails, so a benchmark that assembles programs wrongly is caught.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from distill.errors import UserError
from distill.evaluation.benchmarks import BENCHMARKS, Problem, get_benchmark, load_problems
from distill.evaluation.execution import score_samples
from distill.evaluation.prompts import PROMPT_FORMATS
from tests.conftest import compose_config

from .conftest import build_char_tokenizer

CONF_EVAL = Path(__file__).resolve().parents[2] / "conf" / "eval"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
# Where the shared copy of each benchmark's data lies, by the variable its YAML reads.
SHARED_DATA = {
    "DISTILL_MBPP_PATH": SHARED / "mbpp",
    "DISTILL_EVALPLUS_PATH": SHARED / "evalplus",
    "DISTILL_MULTIPLE_PATH": SHARED / "multipl-e",
}
PROBLEMS_CHECKED = 3


def data_path(name: str) -> str | None:
    env_var = get_benchmark(name).env_var
    if env_var is None:
        return None
    path = SHARED_DATA.get(env_var)
    if path is None or not path.is_dir():
        pytest.skip(f"no shared copy for {env_var}")
    return str(path)


@pytest.fixture(params=BENCHMARKS.names())
def name(request) -> str:
    return request.param


def test_every_benchmark_has_its_yaml(name, monkeypatch) -> None:
    bench = get_benchmark(name)
    assert bench.name == name and bench.title and bench.sample_key in ("completion", "solution")
    yamls = [
        p for p in CONF_EVAL.glob("*.yaml") if yaml.safe_load(p.read_text())["benchmark"] == name
    ]
    assert yamls, f"no conf/eval/*.yaml sets benchmark: {name}"
    if bench.env_var:
        monkeypatch.setenv(bench.env_var, "/data/of/" + name)
        cfg = compose_config("eval", [f"eval={yamls[0].stem}"])
        assert cfg.eval.data_path == "/data/of/" + name  # the YAML reads the benchmark's variable


def test_every_yaml_names_a_registered_benchmark() -> None:
    for path in CONF_EVAL.glob("*.yaml"):
        assert yaml.safe_load(path.read_text())["benchmark"] in BENCHMARKS.names(), path.name


def test_missing_data_is_named_before_any_work(name, tmp_path) -> None:
    bench = get_benchmark(name)
    if bench.env_var is None:
        pytest.skip("its data ships with a package")
    problems = bench.check_data(str(tmp_path / "nowhere"))
    assert problems and all("eval.data_path" in p for p in problems)
    with pytest.raises(UserError, match="eval.data_path"):
        load_problems(name, 1, tmp_path / "nowhere")


def test_problems_load_in_order_with_their_benchmark(name) -> None:
    problems = load_problems(name, None, data_path(name))
    assert len(problems) >= 100
    assert len({p.task_id for p in problems}) == len(problems)
    assert {p.benchmark for p in problems} == {name}
    assert load_problems(name, PROBLEMS_CHECKED, data_path(name)) == problems[:PROBLEMS_CHECKED]


def test_prompts_render_in_both_formats(name) -> None:
    bench = get_benchmark(name)
    tokenizer = build_char_tokenizer()
    for problem in load_problems(name, PROBLEMS_CHECKED, data_path(name)):
        for prompt_format in PROMPT_FORMATS:
            text = bench.prompt(problem, prompt_format, tokenizer)
            assert problem.prompt.strip() in text, (name, prompt_format)
        assert bench.stop_sequences("chat") == ()


def test_reference_passes_and_an_empty_sample_fails(name) -> None:
    bench = get_benchmark(name)
    problems = [p for p in load_problems(name, None, data_path(name))[:20] if p.canonical_solution][
        :PROBLEMS_CHECKED
    ]
    if not problems:
        pytest.skip(f"{name} has no reference solutions")
    samples = [p.canonical_solution for p in problems]  # a completion or a whole solution
    samples += [chat_sample(bench, p) for p in problems]
    samples += ["" for p in problems]
    pairs = [(p.task_id, s) for p, s in zip(problems * 3, samples, strict=True)]
    by_id = {p.task_id: p for p in problems}
    results = score_samples(by_id, pairs, timeout_s=10.0, workers=2, progress=False)
    n = len(problems)
    assert [r.passed for r in results] == [True] * (2 * n) + [False] * n
    for part in bench.parts:  # every test set passes for the reference
        assert all(r.parts[part] for r in results[:n])


def chat_sample(bench, problem: Problem) -> str:
    """The sample a chat answer holding the reference (and the model's own test) becomes."""
    code = problem.canonical_solution
    if bench.sample_key == "completion":
        code = problem.prompt + code
    answer = f"Here it is:\n```{bench.language}\n{code}\n```\nDone."
    return bench.postprocess(answer, problem, "chat")
