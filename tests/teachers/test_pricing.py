"""Cost from usage with the catalog's prices, the worst-case bound, and the budget cap."""

from __future__ import annotations

import pytest

from distill.data.generation.generate import generate_dataset
from distill.data.instructions.templates import sample_instructions
from distill.data.store import DatasetStore
from distill.teachers.claude import ClaudeTeacher
from distill.teachers.pricing import Prices, prompt_token_bound, usage_cost, worst_case_cost
from tests.teachers.conftest import claude_config, prices_of
from tests.teachers.fake_model import FakeModel

HAIKU = Prices(input=1.0, output=5.0, cache_write_5m=1.25, cache_write_1h=2.0, cache_read=0.1)


def test_usage_cost_reference_values():
    m = 1_000_000
    assert usage_cost({"input_tokens": m, "output_tokens": m}, HAIKU) == pytest.approx(6.0)
    assert usage_cost({"cache_read_input_tokens": m}, HAIKU) == pytest.approx(0.1)
    split = {
        "cache_creation_input_tokens": 2 * m,
        "ephemeral_5m_input_tokens": m,
        "ephemeral_1h_input_tokens": m,
    }
    assert usage_cost(split, HAIKU) == pytest.approx(1.25 + 2.0)
    # Without the API's split, every write is billed at the TTL the request asked for.
    assert usage_cost({"cache_creation_input_tokens": m}, HAIKU, ttl="1h") == pytest.approx(2.0)
    assert usage_cost({"input_tokens": m, "output_tokens": m}, HAIKU, batch=True) == 3.0


def test_the_catalog_prices_are_config(serve):
    config = claude_config(serve(), "model=claude-sonnet-4-5")
    assert Prices.from_card(config.catalog.models["claude-sonnet-4-5"]).output == 15.0
    assert config.catalog.version == "2026-04"


def test_worst_case_bounds_the_real_cost():
    """Every prompt byte a token at the dearest input price, plus max_tokens of output."""
    model = FakeModel(answer_tokens=500, min_cache_tokens=10, rate_limits=None)
    for n in (1, 50, 400):
        messages = [{"role": "system", "content": "é" * n}, {"role": "user", "content": "x" * n}]
        body = {
            "model": "m",
            "max_tokens": 256,
            "system": [{"type": "text", "text": "é" * n, "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "x" * n}],
        }
        usage = model.answer(body, batch=False)["usage"]
        prompt = usage["input_tokens"] + usage["cache_creation_input_tokens"]
        assert prompt_token_bound(messages) >= prompt
        assert worst_case_cost(messages, 256, HAIKU) >= usage_cost(usage, HAIKU)


def test_the_budget_cap_holds_and_the_run_says_so(serve, tmp_path):
    api = serve(answer_tokens=200)
    config = claude_config(api, "budget_usd=0.012", "max_concurrency=4")
    instructions = sample_instructions(
        20, {"python": 1}, {"implement": 1}, {"easy": 1, "medium": 1}
    )
    store = DatasetStore(tmp_path / "d.jsonl")
    first = generate_dataset(ClaudeTeacher(config, "k"), instructions, store, "hi")
    billed = api.billed_usd(prices_of(config))
    assert billed <= 0.012 and first["generate/cost_usd"] == pytest.approx(billed)
    assert (
        first["generate/stopped"] == "budget"
        and "teacher.budget_usd=0.012" in (first["generate/stop_message"])
    )
    assert 5 <= first["generate/answered"] < 20 and first["generate/not_sent"] > 0
    # A rerun with the same cap counts what was spent before and sends nothing it cannot afford.
    again = generate_dataset(ClaudeTeacher(config, "k"), instructions, store, "hi")
    assert api.billed_usd(prices_of(config)) <= 0.012
    assert again["generate/stopped"] == "budget" and again["generate/cost_usd_total"] <= 0.012
