"""The checks each stage adds to `validate`: all cheap, none loads weights."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from distill.config.export import check_gguf_request


def check_teacher(cfg: DictConfig) -> Iterable[str]:
    """The teacher is registered, its config was composed over its own schema, and what it needs
    from the environment (an API key) is there."""
    from distill.teachers import TEACHERS

    kind = cfg.teacher.get("kind")
    if kind not in TEACHERS.names():
        return [f"teacher.kind={kind}: {TEACHERS.miss_message(str(kind))}"]
    teacher = TEACHERS.get(kind)
    schema = OmegaConf.get_type(cfg.teacher)
    if schema is not teacher.Config:
        return [
            f"teacher.kind={kind} but the teacher's config was not composed over its schema "
            f"({teacher.Config.__name__}): a file in conf/teacher/ starts with "
            f"`defaults: [schema/{kind}@_here_, _self_]`; choose such a file (teacher=<file>) "
            "instead of overriding teacher.kind"
        ]
    return list(teacher.problems(cfg))


def white_box(cfg: DictConfig) -> bool:
    """The teacher gives logits (False for an unregistered kind: check_teacher reports it)."""
    from distill.teachers import TEACHERS, gives_logits

    return cfg.teacher.get("kind") in TEACHERS.names() and gives_logits(cfg.teacher)


def check_embedded(cfg: DictConfig) -> Iterable[str]:
    """Every `embedded:<name>` model of the run is known and its packages are installed."""
    from distill.models.embedded import EMBEDDED_MODELS, install_command, missing_packages

    paths = {"teacher.path": cfg.teacher.path} if cfg.teacher.get("path") else {}
    paths["student.path"] = cfg.student.path
    keys_of: dict[str, list[str]] = {}  # one report per model, naming every key that uses it
    for key, path in paths.items():
        if str(path).startswith("embedded:"):
            keys_of.setdefault(str(path).removeprefix("embedded:"), []).append(key)
    for name, keys in keys_of.items():
        where = f"{' and '.join(keys)}=embedded:{name}"
        if name not in EMBEDDED_MODELS:
            yield f"{where}: no such embedded model; known: {', '.join(EMBEDDED_MODELS)}"
        elif missing := missing_packages(name):
            yield (
                f"{where} {'need' if len(keys) > 1 else 'needs'} {', '.join(missing)}, not "
                f"installed: run `{install_command(name)}` (or `make demo`, which installs it)"
            )


def check_prompt_format(cfg: DictConfig) -> Iterable[str]:
    from distill.models.prompt_formats import check_prompt_format as problem_of

    problems = [
        problem_of(cfg.student.get("prompt_format")),
        problem_of(cfg.teacher.get("prompt_format"), "teacher.prompt_format"),
    ]
    return [p for p in problems if p]


def check_data(cfg: DictConfig) -> Iterable[str]:
    from distill.data.instructions.templates import check_mixture, instructions_from_config

    d = cfg.data
    problems = check_mixture(d.languages, d.task_kinds, d.difficulties)
    if not problems:
        try:  # also reads data.seed_snippets: a bad path or file fails here, before any spend
            instructions_from_config(d, cfg.seed)
        except (ValueError, OSError) as err:
            problems.append(str(err))
    q = d.get("quality")
    if q and q.decontaminate and "mbpp" in q.benchmarks and q.mbpp_path:
        if not (Path(q.mbpp_path) / "mbpp.jsonl").is_file():
            problems.append(
                f"data.quality.mbpp_path={q.mbpp_path} has no mbpp.jsonl: give the folder holding "
                "MBPP's mbpp.jsonl (e.g. ../shared/data/mbpp) or remove mbpp from "
                "data.quality.benchmarks"
            )
    return problems


def check_dataset(cfg: DictConfig) -> Iterable[str]:
    dataset = cfg.data.dataset
    if dataset and not Path(dataset).exists():
        return [f"data.dataset={dataset} does not exist: give a JSONL from `distill generate`"]
    return []


def check_losses(cfg: DictConfig) -> Iterable[str]:
    from distill.losses import check_loss_config, load_plugins

    try:
        load_plugins(list(cfg.plugins))
    except ImportError as err:
        return [str(err)]
    logits = white_box(cfg)
    return [
        *check_loss_config(cfg.loss.components, teacher_white_box=logits),
        *check_on_policy(cfg.train.on_policy, logits),
        *check_teacher_cache_use(cfg),
    ]


def check_teacher_cache_use(cfg: DictConfig) -> Iterable[str]:
    """Training from a logit cache: it must exist and fit the losses (no weights load)."""
    if cfg.train.teacher_logits != "cache":
        return
    from distill.losses import LOSSES
    from distill.losses.composite import split_component

    path, tc = cfg.teacher_cache.path, cfg.teacher_cache
    if not path or not (Path(path) / "manifest.json").exists():
        yield (
            f"train.teacher_logits=cache needs a built cache at teacher_cache.path={path}: run "
            "`distill teacher-cache data.dataset=...` first and pass its teacher_cache/ folder"
        )
    if cfg.train.on_policy.lmbda > 0:
        yield (
            "train.on_policy.lmbda > 0 with train.teacher_logits=cache: the cache scores only the "
            "stored answers, not the student's samples; use train.teacher_logits=online"
        )
    for name, spec in cfg.loss.components.items():
        weight, options, kwargs = split_component(spec)
        try:
            factory = LOSSES.get(name)
        except KeyError:
            continue  # reported by check_loss_config
        needs = factory.requires & {"teacher_hidden_states", "teacher_attentions"}
        if weight and needs:
            yield (
                f"loss.components.{name} needs {', '.join(sorted(needs))}, which a logit cache "
                "does not hold; use train.teacher_logits=online"
            )
        kinds = getattr(factory, "sparse_kinds", ())
        if weight and "teacher_logits" in factory.requires and tc.kind not in kinds:
            yield (
                f"loss.components.{name} cannot learn from a '{tc.kind}' cache (it works with: "
                f"{', '.join(kinds) or 'none'}); use teacher_cache.kind=topk or an online teacher"
            )
        if weight and "temperature_schedule" in options:
            yield (
                f"loss.components.{name}.temperature_schedule: a logit cache is captured at one "
                "temperature; remove the schedule or use train.teacher_logits=online"
            )
        default = inspect.signature(factory).parameters.get("temperature")
        temperature = kwargs.get("temperature", default.default if default else None)
        if weight and temperature is not None and float(temperature) != float(tc.temperature):
            yield (
                f"loss.components.{name}.temperature={temperature} but the cache is captured at "
                f"teacher_cache.temperature={tc.temperature}; set them equal"
            )


def check_on_policy(on_policy: DictConfig, white_box: bool) -> Iterable[str]:
    from distill.losses.schedules import check_schedule

    if on_policy.schedule is not None:
        yield from check_schedule(on_policy.schedule, "train.on_policy.schedule")
    if on_policy.schedule is not None and on_policy.lmbda == 0:
        yield "train.on_policy.schedule multiplies lmbda, which is 0: set train.on_policy.lmbda > 0"
    if on_policy.lmbda > 0 and not white_box:
        yield (
            "train.on_policy: the student's own samples need an online white-box teacher to "
            "score them (a text-only teacher or a logit cache knows only the stored answers); "
            "set teacher=hf teacher.path=... or train.on_policy.lmbda=0"
        )


def check_eval(cfg: DictConfig) -> Iterable[str]:
    e = cfg.eval
    problems = []
    if e.adapters and not (Path(e.adapters) / "adapter_config.json").exists():
        problems.append(
            f"eval.adapters={e.adapters} has no adapter_config.json: give a train run's adapters/"
        )
    problems += model_choice("eval", e.model)
    if e.samples and not Path(e.samples).exists():
        problems.append(
            f"eval.samples={e.samples} does not exist: give a samples JSONL file (or MultiPL-E's "
            "completions folder)"
        )
    from distill.evaluation.benchmarks import BENCHMARKS, get_benchmark

    if e.benchmark not in BENCHMARKS.names():
        problems.append(f"eval.benchmark={e.benchmark!r}: {BENCHMARKS.miss_message(e.benchmark)}")
    else:
        problems += get_benchmark(e.benchmark).check_data(e.data_path)
    if e.backend == "vllm" and not e.samples:
        from distill.evaluation.vllm_backend import vllm_problems

        problems += vllm_problems()
    return problems


def check_benchmark_runs_here(cfg: DictConfig) -> Iterable[str]:
    """The pipeline ends by scoring on `eval.benchmark`: a toolchain it lacks is named before
    anything is generated or trained (`distill eval` alone skips such a benchmark instead)."""
    from distill.evaluation.benchmarks import BENCHMARKS, get_benchmark

    if cfg.eval.benchmark not in BENCHMARKS.names():
        return []  # check_eval names it
    why = get_benchmark(cfg.eval.benchmark).unavailable()
    return [f"eval.benchmark={cfg.eval.benchmark} cannot be scored here: {why}"] if why else []


def check_cache_teacher(cfg: DictConfig) -> Iterable[str]:
    if not white_box(cfg):
        return [
            f"teacher={cfg.teacher.name} gives no logits: `distill teacher-cache` needs a "
            "white-box teacher, e.g. teacher=embedded_smollm2_135m or "
            "teacher=hf teacher.path=<folder>"
        ]
    return []


def check_export(cfg: DictConfig) -> Iterable[str]:
    x = cfg.export
    if (x.run is None) == (x.adapters is None):
        return [
            "give one of export.run=<train or pipeline run directory> and "
            "export.adapters=<adapters folder>"
        ]
    problems = []
    if x.run is not None and not (Path(x.run) / "adapters" / "adapter_config.json").is_file():
        problems.append(
            f"export.run={x.run} has no adapters/adapter_config.json: give a run that trained "
            "(`distill train` or `distill pipeline`)"
        )
    if x.adapters is not None and not (Path(x.adapters) / "adapter_config.json").is_file():
        problems.append(
            f"export.adapters={x.adapters} has no adapter_config.json: give a train run's "
            "adapters/ folder"
        )
    adapters = Path(x.adapters) if x.adapters else Path(x.run or ".") / "adapters"
    if x.gguf and (adapters / "adapter_config.json").is_file():
        problems += check_gguf_request(list(x.gguf), _base_model_type(adapters))
    out = Path(x.out) if x.out else None
    if out is not None and out.exists() and any(out.iterdir()):
        if not (out / "export.json").is_file():
            problems.append(
                f"export.out={out} exists and is not an earlier export: choose an empty or new "
                "folder (an earlier export there is replaced)"
            )
    return problems


def _base_model_type(adapters: Path) -> str | None:
    """The architecture (``model_type``) of the base the adapters were trained on, when its
    folder is at hand (read from two small JSON files: no weights)."""
    base = json.loads((adapters / "adapter_config.json").read_text()).get("base_model_name_or_path")
    config = Path(base or "") / "config.json"
    return json.loads(config.read_text()).get("model_type") if config.is_file() else None


def model_choice(group: str, model: str) -> list[str]:
    """`<group>.model` is student, teacher, or a model folder (what `distill export` writes)."""
    if model in ("student", "teacher") or (Path(model) / "config.json").is_file():
        return []
    return [
        f"{group}.model={model}: use 'student' (with {group}.adapters), 'teacher', or a model "
        "folder with a config.json (what `distill export` writes)"
    ]


def check_chat(cfg: DictConfig) -> Iterable[str]:
    c = cfg.chat
    if problems := model_choice("chat", c.model):
        return problems
    if c.adapters and not (Path(c.adapters) / "adapter_config.json").is_file():
        return [f"chat.adapters={c.adapters} has no adapter_config.json: give a run's adapters/"]
    return []


STAGE_CHECKS: dict[str, tuple[Callable[[DictConfig], Iterable[str]], ...]] = {
    "generate": (check_data,),
    "train": (check_dataset, check_losses),
    "eval": (check_eval,),
    "teacher_cache": (check_dataset, check_cache_teacher),
    "pipeline": (check_data, check_losses, check_eval, check_benchmark_runs_here),
    "export": (check_export,),
    "chat": (check_chat,),
}


def stage_checks(stage: str) -> tuple[Callable[[DictConfig], Iterable[str]], ...]:
    return (check_teacher, check_embedded, check_prompt_format, *STAGE_CHECKS.get(stage, ()))
