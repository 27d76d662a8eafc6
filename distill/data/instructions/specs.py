"""The raw material of the templates: function specs, data structures, algorithmic problems, topics.

Specs are written once, language-neutrally (signatures in Python type notation, rendered per
language by `distill.data.instructions.languages`). Topic seeds frame a spec in a domain, so one
spec yields many distinct prompts; the descriptions are our own wording, not copied from HumanEval
or MBPP.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Spec:
    """One task seed of a difficulty: a function signature, or a named data structure or problem."""

    difficulty: str
    name: str
    description: str


def _table(text: str) -> list[Spec]:
    """Rows of `difficulty | name or signature | description`; an indented `| ...` continues."""
    out = []
    for line in text.strip().replace("\n    | ", " | ").splitlines():  # wrapped rows rejoin
        difficulty, rest = line.split(" | ", 1)
        name, description = rest.rsplit(" | ", 1)  # a signature may hold " | " (`int | None`)
        out.append(Spec(difficulty.strip(), name.strip(), description.strip()))
    return out


FUNCTION_SPECS = _table("""
easy | sum_of_squares(nums: list[int]) -> int | returns the sum of the squares of the numbers
easy | is_palindrome(text: str) -> bool | tells whether text reads the same backwards, ignoring case
easy | count_vowels(text: str) -> int | counts the vowels (a, e, i, o, u, either case) in a string
easy | max_of_three(a: int, b: int, c: int) -> int | returns the largest of three integers
easy | reverse_words(sentence: str) -> str | reverses the order of the words in a sentence
easy | factorial(n: int) -> int | returns n! for a non-negative integer n (n <= 20)
easy | celsius_to_fahrenheit(c: float) -> float | converts a temperature from Celsius to Fahrenheit
easy | even_numbers(nums: list[int]) -> list[int] | keeps only the even numbers, in order
easy | first_duplicate(items: list[int]) -> int | None | returns the first value seen twice, or none
easy | capitalize_words(text: str) -> str | capitalizes the first letter of every word
easy | average(nums: list[float]) -> float | returns the mean of a non-empty list
easy | count_words(text: str) -> dict[str, int] | counts how often each space-separated word occurs
easy | is_prime(n: int) -> bool | tells whether n is a prime number
easy | digit_sum(n: int) -> int | returns the sum of the decimal digits of a non-negative integer
easy | remove_duplicates(items: list[int]) -> list[int] | drops repeats, keeping first occurrences
easy | longest_word(text: str) -> str | returns the longest word (the first one on ties)
easy | clamp(value: int, low: int, high: int) -> int | limits a value to the range [low, high]
easy | count_positive(nums: list[int]) -> int | counts the strictly positive numbers
easy | running_total(nums: list[int]) -> list[int] | returns the prefix sums of the list
easy | is_sorted(nums: list[int]) -> bool | tells whether a list is in non-decreasing order
easy | join_with_commas(words: list[str]) -> str | joins words as "a, b and c" (empty list: "")
easy | hamming_distance(a: str, b: str) -> int
    | counts the differing positions of two equal-length strings
easy | leap_year(year: int) -> bool | tells whether a Gregorian calendar year is a leap year
easy | initials(full_name: str) -> str | returns the upper-case initials of the words of a name
medium | fibonacci(n: int) -> int | returns the n-th Fibonacci number (fibonacci(0) == 0) in O(n)
medium | is_anagram(a: str, b: str) -> bool
    | tells whether two strings are anagrams, ignoring spaces and case
medium | flatten(nested: list[list[int]]) -> list[int] | concatenates a list of lists in order
medium | run_length_encode(text: str) -> str | encodes runs of characters, e.g. "aaab" -> "a3b1"
medium | merge_sorted(a: list[int], b: list[int]) -> list[int] | merges two sorted lists into one
medium | binary_search(nums: list[int], target: int) -> int
    | returns the index of target in sorted nums, or -1
medium | balanced_brackets(text: str) -> bool | tells whether (), [] and {} are balanced
medium | rotate_list(items: list[int], k: int) -> list[int] | rotates a list right by k places
medium | gcd(a: int, b: int) -> int | returns the greatest common divisor with Euclid's algorithm
medium | chunk(items: list[int], size: int) -> list[list[int]] | splits a list into chunks of a size
medium | most_common_char(text: str) -> str
    | returns the most frequent character (the first on ties)
medium | pascal_row(n: int) -> list[int] | returns row n of Pascal's triangle (row 0 is [1])
medium | to_binary(n: int) -> str | returns the binary form of n >= 0 without a prefix
medium | second_largest(nums: list[int]) -> int | None
    | returns the second largest distinct value, or none
medium | caesar_cipher(text: str, shift: int) -> str | shifts letters by `shift`, keeping case
medium | matrix_transpose(m: list[list[int]]) -> list[list[int]] | transposes a rectangular matrix
medium | group_lengths(words: list[str]) -> dict[str, int] | maps each distinct word to its length
medium | compress_ranges(nums: list[int]) -> list[str]
    | writes sorted ints as ranges: [1,2,3,5] -> 1-3, 5
medium | parse_key_values(text: str) -> dict[str, int] | parses "a=1;b=2" into a map (no bad pairs)
medium | prime_factors(n: int) -> list[int] | returns the prime factors of n >= 2, smallest first
medium | sliding_max(nums: list[int], k: int) -> list[int]
    | returns the maximum of every window of size k
medium | valid_ipv4(text: str) -> bool | tells whether text is a dotted-quad IPv4 address
medium | kth_smallest(nums: list[int], k: int) -> int | returns the k-th smallest value (1-based)
medium | word_frequencies_top(text: str, k: int) -> list[str]
    | returns the k most frequent words, ties a-z
hard | longest_common_prefix(words: list[str]) -> str
    | returns the longest prefix shared by all words
hard | longest_increasing_subsequence(nums: list[int]) -> int
    | returns the length of the longest increasing subsequence
hard | edit_distance(a: str, b: str) -> int | returns the Levenshtein distance between two strings
hard | word_break(text: str, words: list[str]) -> bool
    | tells whether text splits into the given words
hard | coin_change(coins: list[int], amount: int) -> int
    | returns the fewest coins making amount, or -1
hard | spiral_order(m: list[list[int]]) -> list[int]
    | lists the elements of a matrix in spiral order
hard | roman_to_int(numeral: str) -> int | converts a Roman numeral to an integer
hard | max_subarray_sum(nums: list[int]) -> int
    | returns the largest sum of a non-empty contiguous subarray
hard | top_k_frequent(nums: list[int], k: int) -> list[int]
    | returns the k most frequent values, most first
hard | evaluate_rpn(tokens: list[str]) -> int | evaluates reverse Polish notation (+ - * and /)
hard | longest_palindrome(text: str) -> str
    | returns the longest palindromic substring (first on ties)
hard | min_path_sum(grid: list[list[int]]) -> int
    | returns the cheapest corner-to-corner path sum moving right/down
hard | count_islands(grid: list[list[int]]) -> int | counts 4-connected groups of 1s in a 0/1 grid
hard | trap_rain_water(heights: list[int]) -> int
    | computes the water trapped between bars after rain
hard | merge_intervals(intervals: list[list[int]]) -> list[list[int]] | merges overlapping [a, b]
hard | longest_unique_substring(text: str) -> int
    | returns the length of the longest substring without repeats
hard | knapsack(weights: list[int], values: list[int], capacity: int) -> int
    | returns the best value of a 0/1 knapsack
hard | shortest_path_grid(grid: list[list[int]]) -> int
    | counts the fewest steps through 0-cells, or -1
hard | schedule_order(deps: list[list[int]]) -> list[int]
    | returns a topological order of [before, after] pairs
hard | calculate(expression: str) -> int | evaluates + - * / and parentheses on integers
hard | next_permutation(nums: list[int]) -> list[int] | returns the next lexicographic permutation
hard | decode_ways(digits: str) -> int | ways to decode digits with 1 -> A ... 26 -> Z
""")

DATA_STRUCTURES = _table("""
easy | Stack | push, pop, peek, is_empty and size, raising a clear error on popping an empty stack
easy | Queue | enqueue, dequeue, peek and size, built from two stacks with amortised O(1) operations
easy | Counter | add an item, count an item, the most common item, and the number of distinct items
easy | RingBuffer | a fixed-capacity buffer where push overwrites the oldest item, with iteration
easy | MinStack | push, pop, top and get_min, all in O(1) time
easy | Matrix2x2 | 2x2 integer matrices with addition, multiplication, determinant and equality
easy | BitSet | set, clear, test and count bits of a fixed size, packed into machine words
easy | Stopwatch | start, stop, lap and total time from an injected clock function (testable)
medium | LRUCache | get and put with a fixed capacity, evicting the least recently used key in O(1)
medium | Trie | insert words, test membership, and list all words with a given prefix
medium | MinHeap | push, pop the smallest, peek and heapify an initial list, without library heaps
medium | UnionFind | union and find with path compression and union by rank, plus a set count
medium | Deque | a double-ended queue on a growable circular array
medium | IntervalSet | add closed intervals, merge overlaps, and test whether a point is covered
medium | SparseVector | a vector storing only non-zero entries, with dot product and addition
medium | HashMap | open-addressing hash map with linear probing, resize and deletion tombstones
medium | Graph | an adjacency-list graph with add_edge, BFS order and a path-exists check
medium | PriorityQueue | a min-priority queue of (priority, item) with decrease-key
hard | SegmentTree | range-sum queries and point updates in O(log n)
hard | FenwickTree | prefix sums, point updates, the first index whose prefix sum reaches a value
hard | LFUCache | least-frequently-used eviction with O(1) get and put, LRU among ties
hard | SkipList | insert, delete and search with randomised levels from a seeded generator
hard | RBTreeMap | an ordered map (red-black or AVL tree) with insert, lookup and in-order iteration
hard | TimeMap | set(key, value, time) and get(key, time) giving the latest value at or before time
hard | MedianFinder | add numbers and query the running median in O(log n) per insertion
hard | RangeMinQuery | a sparse table answering range-minimum queries in O(1) after O(n log n) build
""")

ALGORITHMS = _table("""
easy | two_sum | given integers and a target, the indices of two numbers adding up to the target
easy | fizzbuzz_variant | print rules for multiples of any given list of (divisor, word) pairs
easy | valid_parentheses | tell whether a string of brackets is properly nested
easy | majority_element | find the value occurring more than n/2 times using O(1) extra space
easy | move_zeroes | move all zeros of an array to its end in place, keeping the order of the rest
easy | pascal_triangle | build the first n rows of Pascal's triangle
easy | missing_number | find the one number missing from 0..n in an array of n distinct numbers
easy | binary_gap | the longest run of zeros between ones in the binary form of a positive integer
medium | group_anagrams | group a list of words into lists of anagrams
medium | product_except_self | products of all other elements, without division, in O(n)
medium | rotting_oranges | minutes until every orange in a grid rots (multi-source BFS), or -1
medium | course_schedule | whether all courses can be finished given prerequisite pairs
medium | kth_largest_stream | the k-th largest value after each number of a stream
medium | meeting_rooms | the minimum number of rooms needed for a list of meetings
medium | subsets_sum | count subsets of small positive integers that add up to a target
medium | spiral_matrix_fill | fill an n x n matrix with 1..n^2 in spiral order
hard | dijkstra | shortest distances from a source in a weighted directed graph
hard | n_queens | count the placements of n non-attacking queens
hard | regex_match | match a string against a pattern with '.' and '*'
hard | median_two_sorted | the median of two sorted arrays in O(log(m + n))
hard | word_ladder | the length of the shortest word-ladder transformation between two words
hard | minimum_window | the shortest substring containing all characters of a pattern
hard | max_flow | the maximum flow of a small network with Edmonds-Karp
hard | sudoku_solver | solve a 9x9 sudoku by backtracking with constraint propagation
""")

TOPICS: tuple[str, ...] = (
    "an inventory system for a small bookshop",
    "analysing web-server access logs",
    "a fitness tracker that records daily steps",
    "a library's book-lending service",
    "a DNA sequence analysis toolkit",
    "a personal budgeting app",
    "a weather station that reports hourly readings",
    "a multiplayer game's leaderboard",
    "a school's grade-book",
    "a ride-sharing dispatch service",
    "a warehouse robot that moves on a grid",
    "a chat application's message history",
    "a music playlist manager",
    "a package-delivery route planner",
    "an online shop's shopping cart",
    "a spreadsheet formula engine",
    "a text editor's undo history",
    "a network packet monitor",
    "a hospital appointment scheduler",
    "a recipe app that scales ingredients",
    "a stock-price alerting service",
    "a compiler's symbol table",
    "an IoT sensor dashboard",
    "a movie-rating website",
    "a parking garage with numbered spaces",
    "a file-synchronisation tool",
    "an airline seat-booking system",
    "a social network's friend suggestions",
    "a board-game engine",
    "a translation memory for localisation",
    "a city bike-rental system",
    "a version-control tool's diff view",
    "an email spam filter",
    "a museum's ticketing kiosk",
    "a farm's irrigation controller",
    "a job queue for background workers",
    "a courier's proof-of-delivery app",
    "a university course-registration system",
    "a smart thermostat's schedule",
    "a news aggregator's feed ranking",
)

BUG_KINDS: tuple[str, ...] = (
    "an off-by-one error",
    "a wrong boundary condition",
    "mishandling of an empty input",
    "a wrong comparison operator",
    "mutation of the caller's input",
    "a wrong initial value of an accumulator",
    "a missed special case",
    "an integer overflow or precision problem",
)

SMELLS: tuple[str, ...] = (
    "deeply nested conditionals",
    "duplicated logic",
    "magic numbers and unclear names",
    "one long function doing several things",
    "needless mutable state",
    "manual index bookkeeping",
)
