"""The layer map: uniform, last_k and explicit pairs, the pair curriculum, and errors."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from distill.losses import LOSSES
from distill.losses.layer_map import LayerMap, active_pairs, uniform_pairs
from tests.losses.conftest import step


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
