"""MultiPL-E in five languages: real compilers and runtimes in the real sandbox.

Per language, on three problems: hand-written correct completions pass; wrong ones that build,
one that does not build, one that loops and one that attacks the machine fail, each for its own
reason, and nothing of theirs is left running. A language whose toolchain is missing here skips
(``make toolchains`` installs them; CI does).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from distill.evaluation.benchmarks import get_benchmark, load_problems
from distill.evaluation.execution import classify, job_for
from distill.evaluation.sandbox import Sandbox
from distill.evaluation.toolchains import TOOLCHAINS, Toolchain, missing

from .conftest import uid_processes
from .multipl_e_programs import (
    ADD,
    CHAT_ANSWERS,
    CORRECT,
    GCD,
    HOSTILE,
    LOOPING,
    NOT_BUILDING,
    STRLEN,
    WRONG,
)

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "multipl-e"
LANGS = ("js", "java", "cpp", "rs", "go")
# node starts in a tenth of a second; the compiled languages' builds make theirs slow tests.
BUILT = [pytest.param(lang, marks=[] if lang == "js" else pytest.mark.slow) for lang in LANGS]
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="no shared copy of MultiPL-E")


def problems(lang: str) -> dict:
    bench = get_benchmark(f"multipl_e_{lang}")
    if why := bench.unavailable():
        pytest.skip(why)
    return {p.task_id: p for p in load_problems(bench.name, None, DATA)}


def judge(lang: str, completions: list[tuple[str, str]], timeout_s: float = 5.0) -> list:
    """The compatible verdicts on ``(task_id, completion)``; nothing may be left running."""
    by_id = problems(lang)
    jobs = [job_for(by_id[task], code, "compatible", timeout_s)[0] for task, code in completions]
    with Sandbox(workers=2) as sandbox:
        replies = sandbox.run(jobs)
        assert uid_processes(sandbox.uids) == []
        return [classify(reply, None, sandbox.isolation) for reply in replies]


@pytest.mark.parametrize("lang", BUILT)
def test_correct_pass_and_wrong_fail_for_its_own_reason(lang) -> None:
    tasks = [ADD, STRLEN, GCD]
    verdicts = judge(
        lang,
        [(t, CORRECT[lang][t]) for t in tasks]
        + [(t, WRONG[lang][t]) for t in tasks]
        + [(t, NOT_BUILDING[lang][t]) for t in tasks]
        + [(t, LOOPING[lang][t]) for t in tasks],
        timeout_s=3.0,
    )
    assert [v.passed for v in verdicts] == [True] * 3 + [False] * 9, verdicts
    wrong_reason = {"cpp": "signal"}.get(lang, "exit")  # C++'s assert aborts
    assert [v.reason for v in verdicts[3:6]] == [wrong_reason] * 3
    # JavaScript has no build: its syntax error is the run's.
    built = "exit" if lang == "js" else "compile_error"
    assert [v.reason for v in verdicts[6:9]] == [built] * 3
    for verdict in verdicts[6:9]:  # the first error line of the compiler
        assert re.search(r"error|program_test\.go:\d+", verdict.detail, re.I), verdict
    assert [v.reason for v in verdicts[9:]] == ["timeout"] * 3


@pytest.mark.parametrize("lang", BUILT)
def test_hostile_programs_fail_and_leave_nothing(lang) -> None:
    (verdict,) = judge(lang, [(ADD, HOSTILE[lang])], timeout_s=3.0)
    # Process and thread bombs hit the process limit and run out the clock; the Rust program
    # gets no memory; the file write is refused (the program runs under another uid).
    expected = {"js": "exit", "rs": "signal"}.get(lang, "timeout")
    assert (verdict.passed, verdict.reason) == (False, expected), verdict
    if lang == "js" and os.geteuid() == 0:
        assert "EACCES" in verdict.detail
    assert not Path("/root/distill-sandbox-escape").exists()


def test_a_compiled_program_has_no_network() -> None:
    """A C++ program that connects to a server on the host's loopback cannot reach it."""
    by_id = problems("cpp")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.5)
    port = server.getsockname()[1]
    code = (
        "  int s = socket(AF_INET, SOCK_STREAM, 0);\n"
        "  sockaddr_in a{}; a.sin_family = AF_INET; a.sin_port = htons(PORT);\n"
        "  a.sin_addr.s_addr = htonl(0x7f000001);\n"
        "  assert(connect(s, (sockaddr*)&a, sizeof a) == 0);\n"
        "  return x + y;\n"
    ).replace("PORT", str(port))
    problem = replace(by_id[ADD], prompt="#include <arpa/inet.h>\n" + by_id[ADD].prompt)
    job = job_for(problem, code, "compatible", 3.0)[0]
    with Sandbox(workers=1) as sandbox:
        (reply,) = sandbox.run([job])
        verdict = classify(reply, None, sandbox.isolation)
    assert (verdict.passed, verdict.reason) == (False, "signal")  # the assert aborted
    with pytest.raises(TimeoutError):
        server.accept()
    server.close()
    control = job_for(problem, CORRECT["cpp"][ADD], "compatible", 3.0)[0]  # the header builds
    with Sandbox(workers=1) as sandbox:
        assert classify(sandbox.run([control])[0], None, sandbox.isolation).passed


@pytest.mark.parametrize("lang", LANGS)
def test_a_chat_answer_becomes_a_passing_completion(lang) -> None:
    bench = get_benchmark(f"multipl_e_{lang}")
    problem = problems(lang)[ADD]
    answer = f"Here it is:\n```{bench.language}\n{CHAT_ANSWERS[lang]}```\nIt adds."
    completion = bench.postprocess(answer, problem, "chat")
    (verdict,) = judge(lang, [(ADD, completion)])
    assert verdict.passed, (completion, verdict)
    if bench.helper is not None:  # the helper came along
        assert "twice" in completion and "main" not in completion


@pytest.mark.parametrize("lang", LANGS)
def test_completions_are_cut_at_the_stop_tokens_and_assembled_as_multipl_e(lang) -> None:
    bench = get_benchmark(f"multipl_e_{lang}")
    rows = [json.loads(line) for line in (DATA / f"humaneval-{lang}-reworded.jsonl").open()]
    row = next(r for r in rows if r["name"] == ADD)
    assert bench.stop_sequences("completion") == tuple(row["stop_tokens"])
    problem = problems(lang)[ADD] if not bench.unavailable() else None
    problem = problem or load_problems(bench.name, None, DATA)[0]
    raw = CORRECT[lang][ADD] + "\n" + bench.stops[0] + "more"
    completion = bench.postprocess(raw, problem, "completion")
    assert not any(stop in completion for stop in bench.stops)
    assert bench.program(problem, completion) == problem.prompt + completion + "\n" + problem.test
    assert problem.entry_point in problem.prompt.splitlines()[-1]
    assert job_for(problem, completion, "strict", 5.0) == (None, None)  # no strict form


def test_a_missing_toolchain_is_named_with_its_package(tmp_path) -> None:
    absent = replace(TOOLCHAINS["go"], tools=("distill-no-such-go",))
    assert "golang-go" in missing(absent) and "distill-no-such-go" in missing(absent)
    jar = replace(TOOLCHAINS["java"], files=(str(tmp_path / "javatuples.jar"),))
    assert "javatuples.jar" in missing(jar)
    assert missing(Toolchain("Sh", "x.sh", None, ("sh", "x.sh"), ("sh",), "dash")) is None


def test_a_missing_toolchain_skips_the_benchmark_before_any_work(tmp_path, monkeypatch) -> None:
    from distill.evaluation.app import run_eval

    monkeypatch.setitem(TOOLCHAINS, "go", replace(TOOLCHAINS["go"], tools=("distill-no-go",)))
    cfg = OmegaConf.create(
        {"eval": {"benchmark": "multipl_e_go", "samples": None, "model": "student"}}
    )
    metrics = run_eval(cfg, tmp_path)  # no model is loaded: cfg has none to load
    assert "golang-go" in metrics["eval/multipl_e_go/skipped"]
    assert "eval/multipl_e_go/pass@1" not in metrics
    assert json.loads((tmp_path / "metrics.json").read_text())["eval/multipl_e_go/skipped"]


def test_distill_eval_scores_multipl_e_completions_files(tmp_path) -> None:
    """`distill eval eval.samples=DIR` on MultiPL-E's own output layout, through the CLI."""
    problems("js")
    folder = tmp_path / "completions"
    folder.mkdir()
    by_task = {t: [CORRECT["js"][t], WRONG["js"][t]] for t in (ADD, STRLEN)}
    by_task[GCD] = [CORRECT["js"][GCD], CORRECT["js"][GCD]]
    for task, completions in by_task.items():
        record = {"name": task, "language": "js", "completions": completions}
        with gzip.open(folder / f"{task}.json.gz", "wt") as f:
            json.dump(record, f)
    (folder / f"{ADD}.results.json").write_text("{}")  # MultiPL-E's results: not samples
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "distill", "eval", "eval=multipl_e_js", f"eval.samples={folder}"]
    cmd += [f"eval.data_path={DATA}", f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    # pass@1 per problem: 1/2, 1/2, 2/2.
    assert metrics["eval/multipl_e_js/pass@1"] == pytest.approx(2 / 3)
    assert metrics["eval/multipl_e_js/num_samples"] == 6
    assert metrics["eval/multipl_e_js/outcome/exit"] == 2
    results = [
        json.loads(line)
        for line in (out / "eval" / "completions_multipl_e_js_results.jsonl").open()
    ]
    assert [r["passed"] for r in results if r["task_id"] == ADD] == [True, False]


def test_a_malformed_completions_file_is_named(tmp_path) -> None:
    from distill.errors import UserError
    from distill.evaluation.samples import load_samples

    bad = tmp_path / "HumanEval_0_x.json"
    bad.write_text(json.dumps({"name": "HumanEval_0_x", "completions": "not a list"}))
    with pytest.raises(UserError, match="HumanEval_0_x.json: needs a string 'name'"):
        load_samples(bad)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="holds no MultiPL-E"):
        load_samples(empty)


def test_a_pipeline_on_a_benchmark_without_its_toolchain_stops_before_any_work(monkeypatch):
    from distill.checks import stage_checks
    from distill.config import validate
    from distill.errors import ConfigError
    from tests.conftest import compose_config

    monkeypatch.setitem(TOOLCHAINS, "rs", replace(TOOLCHAINS["rs"], tools=("distill-no-rustc",)))
    cfg = compose_config("pipeline", ["experiment=tiny_smoke", "eval=multipl_e_rs"])
    cfg.eval.data_path = str(DATA)
    with pytest.raises(ConfigError, match="multipl_e_rs cannot be scored here: .*rustc"):
        validate(cfg, *stage_checks("pipeline"))


@pytest.mark.parametrize("lang", LANGS)
def test_a_chat_answer_is_complete_once_its_defining_block_closes(lang) -> None:
    bench = get_benchmark(f"multipl_e_{lang}")
    problem = next(p for p in load_problems(bench.name, None, DATA) if p.task_id.endswith(ADD))
    call = f"```{bench.language}\n{problem.entry_point};\n```"  # names it, defines nothing
    raw = f"{call}\n```{bench.language}\n{CHAT_ANSWERS[lang]}```\nIt adds. Also:\n{call}\n"
    end = raw.index("```", raw.index(CHAT_ANSWERS[lang])) + 3
    complete = [n for n in range(len(raw) + 1) if bench.answer_complete(raw[:n], problem, "chat")]
    assert complete == list(range(end, len(raw) + 1))
    sample = bench.postprocess(raw, problem, "chat")
    assert all(bench.postprocess(raw[:n], problem, "chat") == sample for n in complete)
