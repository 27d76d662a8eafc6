"""Instruction templates: (language x task kind x difficulty) prompts, sampled to exact quotas.

This is the first, Python-only set: function specs seeded by topic, rendered as one of several task
kinds. A mixture is a weight per axis; `sample_instructions` turns weights into exact counts
(largest remainder), so a run of N examples hits the asked mixture, deterministically for a seed.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from dataclasses import dataclass

# (difficulty, signature, what it does): short specs in the HumanEval style.
PYTHON_SPECS: list[tuple[str, str, str]] = [
    (
        "easy",
        "sum_of_squares(nums: list[int]) -> int",
        "returns the sum of the squares of the numbers",
    ),
    (
        "easy",
        "is_palindrome(text: str) -> bool",
        "tells whether a string reads the same backwards, ignoring case",
    ),
    (
        "easy",
        "count_vowels(text: str) -> int",
        "counts the vowels (a, e, i, o, u, either case) in a string",
    ),
    (
        "easy",
        "max_of_three(a: int, b: int, c: int) -> int",
        "returns the largest of three integers",
    ),
    (
        "easy",
        "reverse_words(sentence: str) -> str",
        "reverses the order of the words in a sentence",
    ),
    ("easy", "factorial(n: int) -> int", "returns n! for a non-negative integer n"),
    (
        "easy",
        "celsius_to_fahrenheit(c: float) -> float",
        "converts a temperature from Celsius to Fahrenheit",
    ),
    ("easy", "even_numbers(nums: list[int]) -> list[int]", "keeps only the even numbers, in order"),
    (
        "easy",
        "first_duplicate(items: list[int]) -> int | None",
        "returns the first value seen twice, or None",
    ),
    ("easy", "capitalize_words(text: str) -> str", "capitalizes the first letter of every word"),
    ("easy", "average(nums: list[float]) -> float", "returns the mean of a non-empty list"),
    ("easy", "count_words(text: str) -> dict[str, int]", "counts how often each word occurs"),
    ("easy", "is_prime(n: int) -> bool", "tells whether n is a prime number"),
    (
        "easy",
        "digit_sum(n: int) -> int",
        "returns the sum of the decimal digits of a non-negative integer",
    ),
    (
        "easy",
        "remove_duplicates(items: list[int]) -> list[int]",
        "drops repeated values, keeping first occurrences in order",
    ),
    ("easy", "longest_word(text: str) -> str", "returns the longest word (the first one on ties)"),
    (
        "medium",
        "fibonacci(n: int) -> int",
        "returns the n-th Fibonacci number (fibonacci(0) == 0) in O(n) time",
    ),
    (
        "medium",
        "is_anagram(a: str, b: str) -> bool",
        "tells whether two strings are anagrams, ignoring spaces and case",
    ),
    ("medium", "flatten(nested: list) -> list", "flattens arbitrarily nested lists into one list"),
    (
        "medium",
        "run_length_encode(text: str) -> str",
        "encodes runs of characters, e.g. 'aaab' -> 'a3b1'",
    ),
    (
        "medium",
        "merge_sorted(a: list[int], b: list[int]) -> list[int]",
        "merges two sorted lists into one sorted list",
    ),
    (
        "medium",
        "binary_search(nums: list[int], target: int) -> int",
        "returns the index of target in a sorted list, or -1",
    ),
    ("medium", "balanced_brackets(text: str) -> bool", "tells whether (), [] and {} are balanced"),
    (
        "medium",
        "rotate_list(items: list[int], k: int) -> list[int]",
        "rotates a list to the right by k places",
    ),
    (
        "medium",
        "gcd(a: int, b: int) -> int",
        "returns the greatest common divisor with Euclid's algorithm",
    ),
    (
        "medium",
        "chunk(items: list[int], size: int) -> list[list[int]]",
        "splits a list into chunks of the given size",
    ),
    (
        "medium",
        "most_common_char(text: str) -> str",
        "returns the most frequent character (the first one on ties)",
    ),
    (
        "medium",
        "pascal_row(n: int) -> list[int]",
        "returns row n of Pascal's triangle (row 0 is [1])",
    ),
    (
        "medium",
        "to_binary(n: int) -> str",
        "returns the binary representation of a non-negative integer without a prefix",
    ),
    (
        "medium",
        "second_largest(nums: list[int]) -> int | None",
        "returns the second largest distinct value, or None",
    ),
    (
        "medium",
        "caesar_cipher(text: str, shift: int) -> str",
        "shifts letters by `shift`, keeping case and other characters",
    ),
    (
        "medium",
        "matrix_transpose(m: list[list[int]]) -> list[list[int]]",
        "returns the transpose of a rectangular matrix",
    ),
    (
        "hard",
        "longest_common_prefix(words: list[str]) -> str",
        "returns the longest prefix shared by all words",
    ),
    (
        "hard",
        "longest_increasing_subsequence(nums: list[int]) -> int",
        "returns the length of the longest strictly increasing subsequence",
    ),
    (
        "hard",
        "edit_distance(a: str, b: str) -> int",
        "returns the Levenshtein distance between two strings",
    ),
    (
        "hard",
        "word_break(text: str, words: list[str]) -> bool",
        "tells whether text splits into a sequence of the given words",
    ),
    (
        "hard",
        "coin_change(coins: list[int], amount: int) -> int",
        "returns the fewest coins that make the amount, or -1",
    ),
    (
        "hard",
        "spiral_order(m: list[list[int]]) -> list[int]",
        "returns the elements of a matrix in spiral order",
    ),
    (
        "hard",
        "valid_sudoku_row(row: list[int]) -> bool",
        "tells whether a row holds 1..9 each exactly once",
    ),
    ("hard", "roman_to_int(numeral: str) -> int", "converts a Roman numeral to an integer"),
    (
        "hard",
        "max_subarray_sum(nums: list[int]) -> int",
        "returns the largest sum of a contiguous non-empty subarray",
    ),
    (
        "hard",
        "permutations(items: list[int]) -> list[list[int]]",
        "returns all permutations, in lexicographic order of positions",
    ),
    (
        "hard",
        "top_k_frequent(nums: list[int], k: int) -> list[int]",
        "returns the k most frequent values, most frequent first",
    ),
    (
        "hard",
        "evaluate_rpn(tokens: list[str]) -> int",
        "evaluates an expression in reverse Polish notation (+ - * and integer /)",
    ),
]

TASK_KINDS: dict[str, str] = {
    "implement": (
        "Write a Python function `{signature}` that {description}.\n"
        "Answer with the complete function in a ```python fenced code block."
    ),
    "complete": (
        "Complete this Python function:\n\n```python\ndef {signature}:\n"
        '    """{description_cap}."""\n```\n'
        "Answer with the complete function in a ```python fenced code block."
    ),
    "explain_then_code": (
        "Explain in two sentences how you would write a Python function `{signature}` that "
        "{description}, then give the function in a ```python fenced code block."
    ),
}
LANGUAGES = ("python",)
DIFFICULTIES = ("easy", "medium", "hard")


@dataclass(frozen=True)
class Instruction:
    """One prompt for the teacher, with the mixture cell it belongs to."""

    language: str
    task_kind: str
    difficulty: str
    prompt: str


def render(task_kind: str, signature: str, description: str) -> str:
    return TASK_KINDS[task_kind].format(
        signature=signature,
        description=description,
        description_cap=description[:1].upper() + description[1:],
    )


def quotas(weights: Mapping[str, float], total: int) -> dict[str, int]:
    """Exact integer counts proportional to `weights` that sum to `total` (largest remainder)."""
    norm = sum(weights.values())
    raw = {k: total * w / norm for k, w in weights.items()}
    counts = {k: int(v) for k, v in raw.items()}
    by_remainder = sorted(raw, key=lambda k: (raw[k] - counts[k], k), reverse=True)
    for k in by_remainder[: total - sum(counts.values())]:
        counts[k] += 1
    return counts


def check_mixture(
    languages: Mapping[str, float],
    task_kinds: Mapping[str, float],
    difficulties: Mapping[str, float],
) -> list[str]:
    """Names every axis value that has no templates yet."""
    problems = []
    for axis, given, known in (
        ("languages", languages, LANGUAGES),
        ("task_kinds", task_kinds, tuple(TASK_KINDS)),
        ("difficulties", difficulties, DIFFICULTIES),
    ):
        unknown = sorted(set(given) - set(known))
        if unknown:
            problems.append(
                f"data.{axis}: no templates for {unknown}; available: {', '.join(known)}"
            )
    return problems


def sample_instructions(
    total: int,
    languages: Mapping[str, float],
    task_kinds: Mapping[str, float],
    difficulties: Mapping[str, float],
    seed: int = 0,
) -> list[Instruction]:
    """`total` distinct-as-possible instructions hitting the mixture's quotas exactly."""
    rng = random.Random(seed)
    cells = {
        (lang, kind, diff): languages[lang] * task_kinds[kind] * difficulties[diff]
        for lang, kind, diff in itertools.product(languages, task_kinds, difficulties)
    }
    out: list[Instruction] = []
    for (lang, kind, diff), count in quotas(cells, total).items():
        specs = [s for s in PYTHON_SPECS if s[0] == diff]
        if count > len(specs):
            raise ValueError(
                f"data: the mixture asks for {count} {lang}/{kind}/{diff} prompts but only "
                f"{len(specs)} distinct ones exist; lower data.num_examples or widen the mixture"
            )
        rng.shuffle(specs)
        for _, signature, description in specs[:count]:
            out.append(Instruction(lang, kind, diff, render(kind, signature, description)))
    rng.shuffle(out)
    return out
