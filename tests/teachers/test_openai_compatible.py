"""An open model behind an OpenAI-compatible endpoint as the teacher: `distill generate` through
its real entry point against a local server on loopback, retries, failures and the key check."""

from __future__ import annotations

import json

from omegaconf import OmegaConf

from distill.teachers.base import Failure, Request
from distill.teachers.openai_compatible import OpenAICompatibleConfig, OpenAICompatibleTeacher
from tests.cli.test_cli import run
from tests.teachers.fake_openai import FakeOpenAI


class Journal:
    """Records what the teacher journals, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def answered(self, rid, answer) -> None:
        self.events.append(("answered", rid))

    def failed(self, rid, failure) -> None:
        self.events.append(("failed", rid))


def teacher(server: FakeOpenAI, **settings) -> OpenAICompatibleTeacher:
    config = OpenAICompatibleConfig(
        name="served", model=server.model, base_url=server.base_url, **settings
    )
    config.retry.backoff_s = 0.01
    return OpenAICompatibleTeacher(config, settings.get("api_key_env") and "k-123")


def test_generate_stores_the_served_models_answers(tmp_path):
    with FakeOpenAI() as server:
        args = [
            "generate",
            "teacher=openai_compatible",
            f"teacher.model={server.model}",
            f"teacher.base_url={server.base_url}",
            "data.num_examples=6",
            "data.export=false",
            f"hydra.run.dir={tmp_path / 'run'}",
        ]
        out = run(args, tmp_path)
        assert out.returncode == 0, out.stderr[-3000:]
        assert len(server.requests) == 6
        assert max(r["max_tokens"] for r in server.requests) <= 1024  # the YAML's ceiling
        assert all(r["temperature"] == 0.0 for r in server.requests)
        assert server.requests[0]["messages"][0]["role"] == "system"
        rows = [json.loads(line) for line in (tmp_path / "run/data/dataset.jsonl").open()]
        assert len(rows) == 6 and all(r["teacher"] == server.model for r in rows)
        assert all(r["code"].startswith("def ") and r["checks"]["syntax"] for r in rows)
        assert rows[0]["usage"]["output_tokens"] == 9 and rows[0]["cost_usd"] == 0.0
        again = run(args, tmp_path)  # a rerun asks for nothing it has
        assert again.returncode == 0 and len(server.requests) == 6


def test_busy_and_broken_servers_are_retried_and_a_bad_request_is_not():
    with FakeOpenAI() as server:
        requests = [
            Request(f"r{i}", [{"role": "user", "content": f"{word} please"}], 32)
            for i, word in enumerate(["alpha", "beta"])
        ]
        server.fail_next = [429, 503]  # both requests meet one busy answer each
        journal = Journal()
        out = dict(teacher(server, max_concurrency=1).answer(requests, journal))
        assert [out[r].text.splitlines()[1] for r in ("r0", "r1")] == [
            "def alpha(x):",
            "def beta(x):",
        ]
        assert len(server.requests) == 4 and sorted(journal.events) == [
            ("answered", "r0"),
            ("answered", "r1"),
        ]
        server.fail_next = [400]
        journal = Journal()
        ((rid, failure),) = teacher(server).answer(requests[:1], journal)
        assert isinstance(failure, Failure) and failure.kind == "client_error"
        assert failure.permanent and "HTTP 400" in failure.message
        assert journal.events == [("failed", "r0")] and len(server.requests) == 5
        server.fail_next = [500, 500, 500, 500]  # every attempt: a transient failure, given up
        ((rid, failure),) = teacher(server).answer(requests[:1], Journal())
        assert failure.kind == "server_error" and not failure.permanent
        assert "after 4 attempts" in failure.message


def test_an_unreachable_server_is_a_connection_failure():
    config = OpenAICompatibleConfig(name="x", model="m", base_url="http://127.0.0.1:9/v1")
    config.retry.max_attempts, config.retry.backoff_s = 2, 0.01
    ((rid, failure),) = OpenAICompatibleTeacher(config).answer(
        [Request("r", [{"role": "user", "content": "hi"}], 8)], Journal()
    )
    assert failure.kind == "connection" and "127.0.0.1:9" in failure.message


def test_the_key_is_sent_and_a_missing_one_is_named_before_anything_runs(tmp_path, monkeypatch):
    with FakeOpenAI() as server:
        monkeypatch.setenv("MY_SERVER_KEY", "k-123")
        t = teacher(server, api_key_env="MY_SERVER_KEY")
        dict(t.answer([Request("r", [{"role": "user", "content": "hi"}], 8)], Journal()))
        assert server.headers[0]["Authorization"] == "Bearer k-123"
    monkeypatch.delenv("MY_SERVER_KEY")
    out = run(
        [
            "generate",
            "teacher=openai_compatible",
            "teacher.model=m",
            "teacher.api_key_env=MY_SERVER_KEY",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        tmp_path,
    )
    assert out.returncode == 2
    assert "teacher.api_key_env=MY_SERVER_KEY but $MY_SERVER_KEY is not set" in out.stdout


def test_settings_name_what_changes_an_answer_not_where_it_is_served():
    a = OpenAICompatibleConfig(name="a", model="m", base_url="http://a:1/v1")
    b = OpenAICompatibleConfig(name="a", model="m", base_url="http://b:2/v1", temperature=0.0)
    assert OpenAICompatibleTeacher(a).settings(64) == OpenAICompatibleTeacher(b).settings(64)
    c = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(a), {"temperature": 0.7}))
    assert OpenAICompatibleTeacher(c).settings(64)["temperature"] == 0.7


def test_the_servers_own_sampling_fields_are_sent_and_key_the_answers(tmp_path):
    """llama.cpp's Python server penalises repeats (1.1) unless a request says otherwise: with
    temperature 0 alone its answers are not greedy ones. `extra_body` goes with every request and
    into the settings that key stored answers."""
    with FakeOpenAI() as server:
        greedy = teacher(server, extra_body={"repeat_penalty": 1.0, "top_k": 1})
        request = Request("r0", [{"role": "user", "content": "alpha please"}], 32)
        ((_, answer),) = greedy.answer([request], Journal())
        assert answer.text.splitlines()[1] == "def alpha(x):"
        sent = server.requests[0]
        assert sent["repeat_penalty"] == 1.0 and sent["top_k"] == 1 and sent["temperature"] == 0.0
        assert greedy.settings(32)["repeat_penalty"] == 1.0
        assert teacher(server).settings(32) != greedy.settings(32)
    # from the command line: `+teacher.extra_body.repeat_penalty=1.0`
    args = ["eval", "--cfg", "job", "eval.model=teacher", "teacher=openai_compatible"]
    out = run([*args, "teacher.model=m", "+teacher.extra_body.repeat_penalty=1.0"], tmp_path)
    assert "extra_body:\n    repeat_penalty: 1.0" in out.stdout, out.stderr[-2000:]
