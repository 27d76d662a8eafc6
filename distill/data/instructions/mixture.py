"""Exact integer quotas for a mixture of (language, task kind, difficulty) weights.

`quotas` is the largest-remainder method on one axis. `mixture_quotas` rounds the joint cells so
that every axis's totals equal that axis's own `quotas` (a run of 10,000 asks exactly 3,000 Python
prompts when Python weighs 0.3), each (language, kind) pair is within 1 of its exact share, and each
cell within 1 where such a rounding exists (else within 2). Rounding a table to floor or ceiling
with fixed row and column sums is a bipartite b-matching (controlled rounding, Bacharach 1966),
solved here by augmenting paths that start from the largest remainders.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Mapping

Cell = tuple[Hashable, Hashable]


def quotas(weights: Mapping[str, float], total: int) -> dict[str, int]:
    """Exact integer counts proportional to `weights` that sum to `total` (largest remainder)."""
    norm = sum(weights.values())
    raw = {k: total * w / norm for k, w in weights.items()}
    counts = {k: int(v) for k, v in raw.items()}
    by_remainder = sorted(raw, key=lambda k: (raw[k] - counts[k], k), reverse=True)
    for k in by_remainder[: total - sum(counts.values())]:
        counts[k] += 1
    return counts


def mixture_quotas(axes: list[Mapping[str, float]], total: int) -> dict[tuple[str, str, str], int]:
    """Counts per (language, kind, difficulty) cell for three axes of weights.

    Returns:
        Cell -> count, in `itertools.product` order; the counts sum to `total`.
    """
    langs, kinds, diffs = ({k: w / sum(a.values()) for k, w in a.items()} for a in axes)
    pair_raw = {
        (lang, kind): total * langs[lang] * kinds[kind]
        for lang, kind in itertools.product(langs, kinds)
    }
    pairs = controlled_round(pair_raw, quotas(axes[0], total), quotas(axes[1], total))
    assert pairs is not None  # two axes always admit a controlled rounding
    diff_quotas = quotas(axes[2], total)  # as given: float ties break as in `quotas`
    raw = {(pair, d): pair_raw[pair] * diffs[d] for pair in pairs for d in diffs}
    cells = controlled_round(raw, pairs, diff_quotas)
    if cells is None:  # round each pair's own count instead: always feasible, cells within 2
        cells = controlled_round(
            {(pair, d): pairs[pair] * diffs[d] for pair in pairs for d in diffs}, pairs, diff_quotas
        )
        assert cells is not None
    return {
        (lang, kind, d): cells[((lang, kind), d)]
        for (lang, kind), d in itertools.product(pairs, diffs)
    }


def controlled_round(
    x: Mapping[Cell, float], row_sums: Mapping[Hashable, int], col_sums: Mapping[Hashable, int]
) -> dict[Cell, int] | None:
    """Round each x[(row, col)] to its floor or ceiling so rows and columns sum as given.

    Returns:
        The rounded table, or None when no such rounding exists.
    """
    x = {
        k: round(v, 9) for k, v in x.items()
    }  # float noise must not make an exact share fractional
    out = {k: int(v) for k, v in x.items()}
    need: dict[tuple[str, Hashable], int] = {("r", r): s for r, s in row_sums.items()}
    need.update({("c", c): s for c, s in col_sums.items()})
    for (r, c), v in out.items():
        need["r", r] -= v
        need["c", c] -= v
    if any(n < 0 for n in need.values()):
        return None
    fractional = sorted((k for k in x if x[k] > out[k]), key=lambda k: out[k] - x[k])
    up: set[Cell] = set()
    for cell in fractional:  # greedy by largest remainder, then augmenting paths fix the rest
        if need["r", cell[0]] > 0 and need["c", cell[1]] > 0:
            up.add(cell)
            need["r", cell[0]] -= 1
            need["c", cell[1]] -= 1
    for row in [r for r in row_sums for _ in range(need["r", r])]:
        path = _augmenting_path(row, fractional, up, need)
        if path is None:
            return None
        for i, cell in enumerate(path):  # alternate: add, remove, add, ...
            (up.add if i % 2 == 0 else up.remove)(cell)
        need["r", row] -= 1
        need["c", path[-1][1]] -= 1
    if any(need.values()):
        return None
    return {k: v + (k in up) for k, v in out.items()}


def _augmenting_path(
    row: Hashable, edges: list[Cell], up: set[Cell], need: dict
) -> list[Cell] | None:
    """Breadth-first: row -> col over an unused edge, col -> row over a used one, to a free col."""
    by_row: dict[Hashable, list[Cell]] = {}
    by_col: dict[Hashable, list[Cell]] = {}
    for cell in edges:
        by_row.setdefault(cell[0], []).append(cell)
        by_col.setdefault(cell[1], []).append(cell)
    parent: dict[Hashable, tuple[Cell, Hashable] | None] = {("r", row): None}
    frontier = [row]
    while frontier:
        nxt = []
        for r in frontier:
            for cell in by_row.get(r, []):
                c = cell[1]
                if cell in up or ("c", c) in parent:
                    continue
                parent["c", c] = (cell, ("r", r))
                if need["c", c] > 0:
                    return _trace(parent, ("c", c))
                for back in by_col[c]:
                    if back in up and ("r", back[0]) not in parent:
                        parent["r", back[0]] = (back, ("c", c))
                        nxt.append(back[0])
        frontier = nxt
    return None


def _trace(parent: dict, node: Hashable) -> list[Cell]:
    path = []
    while parent[node] is not None:
        cell, node = parent[node]
        path.append(cell)
    return path[::-1]
