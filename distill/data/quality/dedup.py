"""Exact and near-duplicate removal over the records' code (their answer when no code was found).

Exact: the same code after dropping blank lines and trailing spaces. Near: MinHash signatures of
token shingles, candidate pairs from locality-sensitive hashing (datasketch's MinHashLSH, the
BigCode recipe), each candidate verified by the exact Jaccard similarity of the shingle sets, so
the threshold means what it says. The first record of a group is kept: the result is deterministic.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

TOKEN = re.compile(r"\w+|[^\w\s]")


def dedup_text(record: dict[str, Any]) -> str:
    return record.get("code") or record.get("response") or ""


def normalise(text: str) -> str:
    """Blank lines and trailing spaces dropped: formatting-only changes are exact duplicates."""
    return "\n".join(line.rstrip() for line in text.splitlines() if line.strip())


def shingles(text: str, k: int) -> set[str]:
    """The set of k-token shingles (the whole token run when shorter than k)."""
    tokens = TOKEN.findall(text)
    if len(tokens) <= k:
        return {" ".join(tokens)} if tokens else set()
    return {" ".join(tokens[i : i + k]) for i in range(len(tokens) - k + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def exact_duplicates(texts: list[str]) -> dict[int, int]:
    """Index of each text that repeats an earlier one -> the earlier one's index."""
    first: dict[str, int] = {}
    out = {}
    for i, text in enumerate(texts):
        key = hashlib.sha256(normalise(text).encode()).hexdigest()
        if key in first:
            out[i] = first[key]
        else:
            first[key] = i
    return out


def near_duplicates(
    texts: list[str], threshold: float, shingle_size: int = 5, num_perm: int = 128
) -> dict[int, int]:
    """Index of each text whose shingle Jaccard with an earlier kept text is >= threshold -> it."""
    from datasketch import MinHash, MinHashLSH

    # LSH only proposes candidates (verified exactly below): a slightly lower threshold misses
    # fewer true pairs, and datasketch needs at least two bands (threshold < 1).
    lsh = MinHashLSH(threshold=min(0.95, 0.9 * threshold), num_perm=num_perm)
    sets: dict[int, set[str]] = {}
    out = {}
    for i, text in enumerate(texts):
        grams = shingles(text, shingle_size)
        if not grams:
            continue
        sig = MinHash(num_perm=num_perm, seed=1)
        sig.update_batch([g.encode() for g in sorted(grams)])
        matches = [j for j in lsh.query(sig) if jaccard(grams, sets[j]) >= threshold]
        if matches:
            out[i] = min(matches)
            continue
        lsh.insert(i, sig)
        sets[i] = grams
    return out


def deduplicate(
    records: list[dict[str, Any]], quality: Any
) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Drop exact, then near duplicates (per `data.quality`); returns (kept, {reason: ids})."""
    if not quality.dedup:
        return records, {}
    texts = [dedup_text(r) for r in records]
    dropped: dict[str, list[str]] = {}
    exact = exact_duplicates(texts)
    if exact:
        dropped["exact_duplicate"] = [records[i]["id"] for i in sorted(exact)]
    keep = [i for i in range(len(records)) if i not in exact]
    if quality.near_dup_threshold is not None:
        near = near_duplicates(
            [texts[i] for i in keep],
            quality.near_dup_threshold,
            quality.shingle_size,
            quality.minhash_perms,
        )
        if near:
            dropped["near_duplicate"] = [records[keep[i]]["id"] for i in sorted(near)]
        keep = [idx for pos, idx in enumerate(keep) if pos not in near]
    return [records[i] for i in keep], dropped
