"""Batch order: length grouping, the difficulty curriculum, and accumulation-group token counts."""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from torch.utils.data import Dataset, Sampler

log = logging.getLogger(__name__)
DIFFICULTY_ORDER = ("easy", "medium", "hard")


def difficulty_levels(difficulties: Sequence[str | None]) -> list[int]:
    """Curriculum rank of each example: easy 0, medium 1, hard 2; unknown levels last (3)."""
    unknown = sorted({str(d) for d in difficulties if d not in DIFFICULTY_ORDER})
    if unknown:
        log.warning(
            "data.curriculum=difficulty: difficulty levels %s are not among %s; their examples "
            "come last in the first epoch",
            ", ".join(unknown),
            ", ".join(DIFFICULTY_ORDER),
        )
    rank = {name: i for i, name in enumerate(DIFFICULTY_ORDER)}
    return [rank.get(d, len(DIFFICULTY_ORDER)) for d in difficulties]  # type: ignore[arg-type]


class LengthGroupedSampler(Sampler[list[int]]):
    """Shuffled batches of similar lengths, so little compute goes to padding.

    With `levels`, the first epoch (epoch 0) is a curriculum: examples come in increasing level
    (easy -> medium -> hard), still length-grouped within a level, batches shuffled within a
    level (a batch that straddles two levels keeps its place); later epochs shuffle normally.
    Every epoch has `len(self)` batches. Lightning calls `set_epoch`, so a resumed run does not
    replay the curriculum; without it the epoch counts the passes over the sampler.

    Args:
        lengths: token count of each example.
        batch_size: examples per batch.
        seed: base seed; the order changes every epoch.
        group: batches sorted together in one pool.
        levels: curriculum level of each example (lower first), or None for no curriculum.
    """

    def __init__(
        self,
        lengths: list[int],
        batch_size: int,
        seed: int = 0,
        group: int = 8,
        levels: list[int] | None = None,
    ) -> None:
        self.lengths, self.batch_size, self.seed, self.group = lengths, batch_size, seed, group
        self.levels = levels
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        curriculum = self.levels is not None and self.epoch == 0
        self.epoch += 1
        if curriculum:
            return iter(self._curriculum(rng))
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        pools = self._pools(order, key=lambda j: self.lengths[j])
        batches = [b for pool in pools for b in self._chunks(pool)]
        rng.shuffle(batches)
        return iter(batches)

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def _pools(self, order: list[int], key: Callable[[int], Any]) -> list[list[int]]:
        """`order` cut into pools of `batch_size * group`, each sorted by `key`."""
        size = self.batch_size * self.group
        return [sorted(order[i : i + size], key=key) for i in range(0, len(order), size)]

    def _chunks(self, order: list[int]) -> list[list[int]]:
        return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def _curriculum(self, rng: random.Random) -> list[list[int]]:
        levels = self.levels
        assert levels is not None
        order: list[int] = []
        for level in sorted(set(levels)):
            members = [i for i, lv in enumerate(levels) if lv == level]
            rng.shuffle(members)
            order += members
        # Pools over the level-sorted order, sorted by (level, length): levels stay in order,
        # lengths are grouped within a level, and the batch count is that of other epochs.
        pools = self._pools(order, key=lambda j: (levels[j], self.lengths[j]))
        batches = [b for pool in pools for b in self._chunks(pool)]

        def run_key(item: tuple[int, list[int]]) -> int:
            position, batch = item
            found = {levels[i] for i in batch}
            return found.pop() if len(found) == 1 else -1 - position  # straddler: its own run

        shuffled: list[list[int]] = []
        for _, run in itertools.groupby(enumerate(batches), key=run_key):
            same_level = [batch for _, batch in run]
            rng.shuffle(same_level)
            shuffled += same_level
        return shuffled


class GroupTokenBatches(Sampler[list[tuple[int, int]]]):
    """A batch sampler that tags each index with the scored tokens of its accumulation group.

    The groups are `accumulate` consecutive batches of an epoch (the micro-batches of one
    optimizer step, as Lightning counts them from the epoch start); the last one may be shorter.
    Under data parallelism every rank draws the same epoch order (same seed) and takes every
    `world_size`-th batch from its `rank` on, cut to the same count on every rank (DDP needs equal
    step counts), so one step of `world_size` ranks sees what `world_size` accumulated
    micro-batches of one process would see. A resumed run skips the batches its checkpoint had
    already trained on (`skip_batches`).

    Args:
        sampler: the batch sampler giving an epoch's batches (kept as `.sampler`, where
            Lightning finds `set_epoch`).
        scored: scored tokens of each example (`scored_tokens`).
        accumulate: micro-batches per optimizer step: data.batch_size / (hardware.micro_batch_size
            x devices), as `distill.hardware.batch_split` derives it.
        rank: this process's data-parallel rank.
        world_size: the number of data-parallel processes.
    """

    def __init__(
        self,
        sampler: Sampler[list[int]],
        scored: list[int],
        accumulate: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        self.sampler, self.scored, self.accumulate = sampler, scored, accumulate
        self.rank, self.world_size = rank, world_size
        self.skip = 0

    def skip_batches(self, count: int) -> None:
        """Leave out the first `count` batches of this rank's next epoch (a mid-epoch resume)."""
        self.skip = count

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        batches = list(self.sampler)
        share = len(self) * self.world_size
        if share < len(batches):
            log.debug("%d batch(es) of the epoch left out to even ranks", len(batches) - share)
        mine = batches[self.rank : share : self.world_size]
        skip, self.skip = self.skip, 0
        for start in range(0, len(mine), self.accumulate):
            group = mine[start : start + self.accumulate]
            total = sum(self.scored[i] for batch in group for i in batch)
            for offset, batch in enumerate(group):
                if start + offset >= skip:
                    yield [(i, total) for i in batch]

    def __len__(self) -> int:
        return len(self.sampler) // self.world_size  # type: ignore[arg-type]


class Examples(Dataset):
    """Encoded examples; a key `(index, group_tokens)` returns the example with that count."""

    def __init__(self, examples: list[dict]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        if isinstance(key, tuple):
            index, group_tokens = key
            return {**self.examples[index], "group_tokens": group_tokens}
        return self.examples[key]
