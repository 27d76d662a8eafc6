"""Layer-wise losses (feature_match, attn_transfer), their layer map, and R-Drop consistency."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from distill.losses import LOSSES, StepOutputs, build_loss, check_loss_config
from distill.losses.attention import AttentionTransferLoss
from distill.losses.consistency import ConsistencyLoss
from distill.losses.features import FeatureMatchLoss
from distill.losses.layer_map import LayerMap, active_pairs, uniform_pairs
from distill.testing import fake_batch, tiny_llama, tiny_tokenizer

CONF = Path(__file__).resolve().parents[2] / "conf" / "loss"


def eager(model: LlamaForCausalLM) -> LlamaForCausalLM:
    model.set_attn_implementation("eager")  # SDPA returns no attention maps
    return model


def heads8_teacher() -> LlamaForCausalLM:
    """4 layers, width 64, 8 attention heads (tiny_llama has 4)."""
    config = LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=4,
        initializer_range=0.5,
    )
    torch.manual_seed(3)
    return eager(LlamaForCausalLM(config).eval())


@pytest.fixture(scope="module")
def models() -> dict[str, LlamaForCausalLM]:
    return {
        "student": eager(tiny_llama(2, seed=2, hidden_size=32)),  # 2 layers, width 32, 4 heads
        "teacher": eager(tiny_llama(4, seed=1, hidden_size=32)),  # same width, deeper
        "wide": eager(tiny_llama(4, seed=1, hidden_size=64)),  # other width
        "heads8": heads8_teacher(),  # other width and head count
    }


@pytest.fixture(scope="module")
def batch() -> dict[str, torch.Tensor]:
    """2 rows of 12: 4 prompt tokens (-100); the last row ends in 3 padded tokens."""
    return fake_batch(tiny_tokenizer())


def step(student, teacher, batch) -> StepOutputs:
    """StepOutputs as the trainer builds them: teacher under no_grad, all layer outputs."""
    kwargs = {
        "input_ids": batch["input_ids"],
        "attention_mask": batch["attention_mask"],
        "output_hidden_states": True,
        "output_attentions": True,
    }
    student.zero_grad(set_to_none=True)
    s = student(**kwargs)
    with torch.no_grad():
        t = teacher(**kwargs)
    return StepOutputs(
        student_logits=s.logits,
        teacher_logits=t.logits,
        student_hidden_states=s.hidden_states,
        teacher_hidden_states=t.hidden_states,
        student_attentions=s.attentions,
        teacher_attentions=t.attentions,
    )


def unscored(labels: torch.Tensor) -> torch.Tensor:
    """(B, T) True at positions whose output is not scored: label t+1 is -100, or t is last."""
    mask = torch.ones_like(labels, dtype=torch.bool)
    mask[:, :-1] = labels[:, 1:] == -100
    return mask


# ---- layer map -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("depths", "expected"),
    [
        ((2, 4), [(0, 1), (1, 3)]),
        ((4, 4), [(0, 0), (1, 1), (2, 2), (3, 3)]),
        ((3, 4), [(0, 0), (1, 2), (2, 3)]),
        ((4, 2), [(0, 0), (1, 0), (2, 1), (3, 1)]),  # 0.5 rounds up: not Python's round()
        ((8, 2), [(0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (5, 1), (6, 1), (7, 1)]),  # 0.25 -> 0
    ],
)
def test_uniform_spreads_evenly_and_maps_last_to_last(depths, expected):
    pairs = uniform_pairs(*depths)
    assert pairs == expected
    assert pairs[-1] == (depths[0] - 1, depths[1] - 1)
    assert all(0 <= t < depths[1] for _, t in pairs)


def test_last_k_and_explicit_pairs():
    assert LayerMap("x", "last_k", 1).pairs(2, 4) == [(1, 3)]
    assert LayerMap("x", "last_k", 2).pairs(2, 4) == [(0, 2), (1, 3)]
    # Explicit pairs are kept, ordered shallow to deep (the curriculum's order).
    assert LayerMap("x", [[1, 3], [0, 1]], 1).pairs(2, 4) == [(0, 1), (1, 3)]
    # Hydra hands lists over as ListConfig.
    listconfig = OmegaConf.create({"layers": [[0, 2]]}).layers
    assert LayerMap("x", listconfig, 1).pairs(2, 4) == [(0, 2)]


@pytest.mark.parametrize(
    ("fraction", "n", "count"),
    [(0.0, 4, 1), (0.25, 4, 1), (0.26, 4, 2), (0.5, 4, 2), (1.0, 4, 4), (2.0, 4, 4), (0.3, 10, 3)],
)
def test_active_pairs_round_up_from_shallow_to_deep(fraction, n, count):
    pairs = [(i, i) for i in range(n)]
    assert active_pairs(pairs, fraction) == pairs[:count]


@pytest.mark.parametrize("name", ["feature_match", "attn_transfer"])
@pytest.mark.parametrize(
    ("kwargs", "option"),
    [({"layers": [[0, 1], [2, 3]]}, "layers"), ({"layers": "last_k", "last_k": 3}, "last_k")],
)
def test_out_of_range_layers_name_the_option_and_both_depths(models, batch, name, kwargs, option):
    loss = LOSSES.build(name, **kwargs)
    out = step(models["student"], models["teacher"], batch)
    pattern = rf"loss\.components\.{name}\.{option}.*student has 2 layers, the teacher 4"
    with pytest.raises(ValueError, match=pattern):
        loss(out, batch)
    with pytest.raises(ValueError, match=pattern):  # prepare sees it before the optimizer
        loss.prepare(models["student"].config, models["teacher"].config)


BAD_KWARGS = [
    ("feature_match", {"layers": "evenly"}, r"feature_match\.layers='evenly': unknown kind"),
    ("feature_match", {"layers": []}, r"feature_match\.layers=\[\]"),
    ("feature_match", {"layers": [[0]]}, r"feature_match\.layers: pair \[0\]"),
    ("feature_match", {"layers": [[0, -1]]}, r"feature_match\.layers: pair \[0, -1\]"),
    ("feature_match", {"layers": [[0, 1.5]]}, r"feature_match\.layers: pair \[0, 1\.5\]"),
    ("feature_match", {"layers": [[0, 1], [0, 1]]}, r"feature_match\.layers=.*listed twice"),
    ("feature_match", {"last_k": 0}, r"feature_match\.last_k=0: use an integer >= 1"),
    ("feature_match", {"metric": "l1"}, r"feature_match\.metric='l1': use one of mse, cosine"),
    ("feature_match", {"projection": "x"}, r"feature_match\.projection='x': use one of shared"),
    ("attn_transfer", {"layers": "all"}, r"attn_transfer\.layers='all': unknown kind"),
    ("attn_transfer", {"last_k": -2}, r"attn_transfer\.last_k=-2"),
    ("attn_transfer", {"heads": "sum"}, r"attn_transfer\.heads='sum': use one of average, mix"),
    ("attn_transfer", {"metric": "js"}, r"attn_transfer\.metric='js': use one of kl, mse"),
    ("consistency", {"temperature": 0.0}, r"consistency\.temperature=0\.0: .* > 0"),
]


@pytest.mark.parametrize(("name", "kwargs", "message"), BAD_KWARGS)
def test_bad_kwargs_name_the_override(name, kwargs, message):
    with pytest.raises(ValueError, match=rf"loss\.components\.{message}"):
        LOSSES.build(name, **kwargs)


# ---- feature_match ---------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["mse", "cosine"])
def test_features_zero_for_the_same_model_and_positive_otherwise(models, batch, metric):
    loss = FeatureMatchLoss(metric=metric)
    same = step(models["teacher"], models["teacher"], batch)
    assert loss(same, batch).item() == pytest.approx(0.0, abs=1e-5)
    assert loss(step(models["student"], models["teacher"], batch), batch).item() > 1e-3


def test_features_match_a_float64_reference(models, batch):
    out = step(models["student"], models["teacher"], batch)
    mask = ~unscored(batch["labels"])
    terms = []
    for s, t in [(0, 1), (1, 3)]:  # uniform, 2 -> 4 layers; index 0 of the tuple is embeddings
        hs = out.student_hidden_states[s + 1].double()
        ht = out.teacher_hidden_states[t + 1].double()
        mse = (hs - ht).pow(2).mean(-1)[mask].mean()
        cos = (1 - torch.cosine_similarity(hs, ht, dim=-1))[mask].mean()
        terms.append((mse, cos))
    for i, metric in enumerate(["mse", "cosine"]):
        want = sum(term[i] for term in terms) / 2
        got = FeatureMatchLoss(metric=metric)(out, batch)
        assert got.dtype == torch.float32
        assert got.item() == pytest.approx(want.item(), rel=1e-5)


def test_features_divide_by_the_global_token_count(models, batch):
    out = step(models["student"], models["teacher"], batch)
    local = FeatureMatchLoss()(out, batch)
    scored = int((~unscored(batch["labels"])).sum())
    given = FeatureMatchLoss()(out, dict(batch, loss_tokens=torch.tensor(2.0 * scored)))
    assert given.item() == pytest.approx(local.item() / 2, rel=1e-6)


def test_features_at_unscored_positions_change_nothing(batch):
    gen = torch.Generator().manual_seed(0)
    student = tuple(torch.randn(2, 12, 8, generator=gen) for _ in range(3))
    teacher = tuple(torch.randn(2, 12, 8, generator=gen) for _ in range(5))
    loss = FeatureMatchLoss()
    before = loss(StepOutputs(student_hidden_states=student, teacher_hidden_states=teacher), batch)
    hide = unscored(batch["labels"])[..., None]
    noisy = tuple(torch.where(hide, 100 * torch.randn_like(h), h) for h in teacher)
    after = loss(StepOutputs(student_hidden_states=student, teacher_hidden_states=noisy), batch)
    assert after.item() == pytest.approx(before.item(), rel=1e-6)
    changed = tuple(h.clone() for h in teacher)
    changed[-1][0, 5] += 3.0  # a scored position of the last layer
    moved = loss(StepOutputs(student_hidden_states=student, teacher_hidden_states=changed), batch)
    assert moved.item() != pytest.approx(before.item(), rel=1e-6)


@pytest.mark.parametrize(
    ("projection", "keys"), [("shared", ["shared"]), ("per_pair", ["s0_t1", "s1_t3"])]
)
def test_projections_are_trainable_state_and_backward_reaches_them(models, batch, projection, keys):
    student, wide = models["student"], models["wide"]
    loss = FeatureMatchLoss(projection=projection)
    out = step(student, wide, batch)
    with pytest.raises(RuntimeError, match=r"width 32 != teacher width 64.*call prepare\("):
        loss(out, batch)
    loss.prepare(student.config, wide.config)
    params = dict(loss.named_parameters())
    assert sorted(params) == sorted(
        f"projections.{k}.{w}" for k in keys for w in ("weight", "bias")
    )
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in params.values())
    assert loss.projections[keys[0]].weight.shape == (64, 32)
    assert set(params) <= set(loss.state_dict())
    first = loss.projections[keys[0]].weight
    loss.prepare(student.config, wide.config)  # a second call keeps the trained projection
    assert loss.projections[keys[0]].weight is first
    loss(out, batch).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params.values())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_features_take_bf16_and_keep_the_teacher_detached(models, batch):
    student, wide = models["student"], models["wide"]
    loss = FeatureMatchLoss(metric="cosine")
    loss.prepare(student.config, wide.config)
    out = step(student, wide, batch)
    teacher = tuple(h.to(torch.bfloat16).requires_grad_() for h in out.teacher_hidden_states)
    out.student_hidden_states = tuple(h.to(torch.bfloat16) for h in out.student_hidden_states)
    out.teacher_hidden_states = teacher
    value = loss(out, batch)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert all(h.grad is None for h in teacher)


@pytest.mark.parametrize("name", ["feature_match", "attn_transfer"])
def test_active_layers_uses_the_shallow_pairs_first(models, batch, name):
    out = step(models["student"], models["teacher"], batch)
    first, last = (LOSSES.build(name, layers=[p])(out, batch) for p in ([0, 1], [1, 3]))
    loss = LOSSES.build(name)  # uniform: (0, 1), (1, 3)
    assert loss.active_layers == 1.0
    assert loss(out, batch).item() == pytest.approx((first.item() + last.item()) / 2, rel=1e-6)
    loss.active_layers = 0.5
    assert loss(out, batch).item() == pytest.approx(first.item(), rel=1e-6)
    loss.active_layers = 0.0  # at least one pair
    assert loss(out, batch).item() == pytest.approx(first.item(), rel=1e-6)


def test_inactive_per_pair_projections_get_zero_gradients(models, batch):
    """Inactive pairs stay in the graph with weight 0, so DDP finds a gradient for each."""
    student, wide = models["student"], models["wide"]
    loss = FeatureMatchLoss(projection="per_pair")
    loss.prepare(student.config, wide.config)
    loss.active_layers = 0.5
    loss(step(student, wide, batch), batch).backward()
    assert loss.projections["s0_t1"].weight.grad.abs().sum() > 0
    assert torch.equal(loss.projections["s1_t3"].weight.grad, torch.zeros(64, 32))


# ---- attn_transfer ---------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["kl", "mse"])
def test_attention_zero_for_the_same_model_and_positive_otherwise(models, batch, metric):
    loss = AttentionTransferLoss(metric=metric)
    same = step(models["teacher"], models["teacher"], batch)
    assert loss(same, batch).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(step(models["student"], models["teacher"], batch), batch).item() > 1e-4


def attention_reference(student, teacher, labels, metric="kl") -> float:
    """float64 loops: rows averaged over heads on both sides, mean over scored queries."""
    values = []
    for b, q in zip(*torch.nonzero(~unscored(labels), as_tuple=True), strict=True):
        s = student[b, :, q].detach().double().mean(0)
        t = teacher[b, :, q].double().mean(0)
        keep = t > 0
        kl = (t[keep] * (t[keep].log() - s[keep].log())).sum()
        values.append(kl if metric == "kl" else (t - s).pow(2).sum())
    return float(sum(values) / len(values))


@pytest.mark.parametrize("metric", ["kl", "mse"])
def test_attention_matches_a_float64_reference(models, batch, metric):
    out = step(models["student"], models["heads8"], batch)  # 4 vs 8 heads, averaged
    want = (
        sum(
            attention_reference(
                out.student_attentions[s], out.teacher_attentions[t], batch["labels"], metric
            )
            for s, t in [(0, 1), (1, 3)]
        )
        / 2
    )
    got = AttentionTransferLoss(metric=metric)(out, batch)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(want, rel=1e-5)


def synthetic_attention(gen, heads: int, mask: torch.Tensor) -> torch.Tensor:
    """(2, heads, 12, 12) causal rows over the real keys of `mask` (B, T)."""
    scores = torch.randn(2, heads, 12, 12, generator=gen)
    causal = torch.ones(12, 12, dtype=torch.bool).tril()
    allowed = causal & mask[:, None, None, :].bool()
    return scores.masked_fill(~allowed, float("-inf")).softmax(-1).nan_to_num()


def test_attention_ignores_unscored_queries_and_padded_keys(batch):
    left = dict(batch)  # left padding: the real queries of row 1 see 2 padded keys
    left["attention_mask"] = torch.ones(2, 12, dtype=torch.long)
    left["attention_mask"][1, :2] = 0
    gen = torch.Generator().manual_seed(0)
    student = tuple(synthetic_attention(gen, 4, left["attention_mask"]) for _ in range(2))
    teacher = tuple(synthetic_attention(gen, 4, left["attention_mask"]) for _ in range(4))
    loss = AttentionTransferLoss()
    before = loss(StepOutputs(student_attentions=student, teacher_attentions=teacher), left)
    # Mass moved onto the padded keys counts for nothing: rows are renormalised without them.
    pad = (1 - left["attention_mask"])[:, None, None, :].float()
    leaky = tuple(0.7 * a + 0.3 * pad / 2 for a in teacher)
    after = loss(StepOutputs(student_attentions=student, teacher_attentions=leaky), left)
    assert after.item() == pytest.approx(before.item(), rel=1e-5)
    # Unscored query rows change nothing either.
    hide = unscored(left["labels"])[:, None, :, None]
    other = tuple(torch.where(hide, a.flip(-1), a) for a in teacher)
    after = loss(StepOutputs(student_attentions=student, teacher_attentions=other), left)
    assert after.item() == pytest.approx(before.item(), rel=1e-6)


def test_head_mixing_is_trainable_and_starts_as_the_average(models, batch):
    student, teacher = models["student"], models["heads8"]
    mix = AttentionTransferLoss(heads="mix")
    out = step(student, teacher, batch)
    with pytest.raises(RuntimeError, match=r"heads=mix: no 8 -> 4 head mixing.*prepare\("):
        mix(out, batch)
    mix.prepare(student.config, teacher.config)
    assert sorted(dict(mix.named_parameters())) == ["mixing.s0_t1", "mixing.s1_t3"]
    assert mix.mixing["s0_t1"].shape == (4, 8) and mix.mixing["s0_t1"].requires_grad
    assert {"mixing.s0_t1", "mixing.s1_t3"} <= set(mix.state_dict())
    # At init each student head is compared with the teacher's head average.
    pairs = [(0, 1), (1, 3)]
    want = 0.0
    for s, t in pairs:
        t_avg = out.teacher_attentions[t].mean(1, keepdim=True)
        for h in range(4):
            s_head = out.student_attentions[s][:, h : h + 1]
            want += attention_reference(s_head, t_avg, batch["labels"]) / (4 * len(pairs))
    value = mix(out, batch)
    assert value.item() == pytest.approx(want, rel=1e-5)
    value.backward()
    assert all(p.grad.abs().sum() > 0 for p in mix.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


# ---- consistency -----------------------------------------------------------------------------


def consistency_reference(first, second, labels, temperature=1.0) -> float:
    p = torch.log_softmax(first.double() / temperature, -1)
    q = torch.log_softmax(second.double() / temperature, -1)
    per = 0.5 * ((p.exp() * (p - q)).sum(-1) + (q.exp() * (q - p)).sum(-1))
    return float(per[~unscored(labels)].mean() * temperature**2)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_consistency_matches_the_reference_and_is_symmetric(batch, temperature):
    gen = torch.Generator().manual_seed(0)
    a, b = (3 * torch.randn(2, 12, 11, generator=gen) for _ in range(2))
    loss = ConsistencyLoss(temperature)
    value = loss(StepOutputs(student_logits=a, student_second_logits=b), batch)
    want = consistency_reference(a, b, batch["labels"], temperature)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(want, rel=1e-5)
    swapped = loss(StepOutputs(student_logits=b, student_second_logits=a), batch)
    assert swapped.item() == pytest.approx(value.item(), rel=1e-6)
    assert loss(StepOutputs(student_logits=a, student_second_logits=a), batch).item() == 0.0
    hide = unscored(batch["labels"])[..., None]
    noisy = torch.where(hide, 50 * torch.randn_like(b), b)
    masked = loss(StepOutputs(student_logits=a, student_second_logits=noisy), batch)
    assert masked.item() == pytest.approx(value.item(), rel=1e-6)


def test_consistency_trains_both_passes_of_a_dropout_student(batch):
    student = tiny_llama(2, seed=2).train()
    for module in student.modules():
        if hasattr(module, "attention_dropout"):
            module.attention_dropout = 0.3  # tiny_llama has no dropout of its own
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    first, second = student(**inputs).logits, student(**inputs).logits
    first.retain_grad(), second.retain_grad()
    value = ConsistencyLoss()(
        StepOutputs(student_logits=first, student_second_logits=second), batch
    )
    assert value.item() > 0
    value.backward()
    assert first.grad.abs().sum() > 0 and second.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    with pytest.raises(ValueError, match=r"consistency: .*no second student pass.*'second_pass'"):
        ConsistencyLoss()(StepOutputs(student_logits=first), batch)


# ---- presets and the composite ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("preset", "component"), [("kl_attn", "attn_transfer"), ("kl_feature", "feature_match")]
)
def test_presets_build_with_their_components(models, batch, preset, component):
    cfg = OmegaConf.load(CONF / f"{preset}.yaml")
    assert list(check_loss_config(cfg.components, teacher_white_box=True)) == []
    loss = build_loss(cfg.components)
    assert set(loss.components) == {"ce", "kl", component}
    assert loss.weights[component] == pytest.approx(0.1)
    result = loss(step(models["student"], models["teacher"], batch), batch)
    assert torch.isfinite(result.total) and result.parts[component].item() > 0


def test_composite_prepares_projections_and_drives_the_layer_curriculum(models):
    spec = {"weight": 1.0, "layer_schedule": {"kind": "linear", "start": 0.5, "end": 1.0}}
    components = {"feature_match": spec, "attn_transfer": dict(spec, heads="mix")}
    assert list(check_loss_config(components, teacher_white_box=True)) == []
    loss = build_loss(components)
    loss.prepare(models["student"].config, models["heads8"].config)
    names = {n for n, p in loss.named_parameters() if p.requires_grad}
    assert "components.feature_match.projections.shared.weight" in names
    assert {f"components.attn_transfer.mixing.{k}" for k in ("s0_t1", "s1_t3")} <= names
    loss.set_step(0, max_steps=10)
    assert loss.components["feature_match"].active_layers == pytest.approx(0.5)
