"""Co-rewarding-I's sampler: a question and its rephrasing always in the same generation batch."""

from __future__ import annotations

from torch.utils.data import Sampler

from corewarding.training.trl_internals import RepeatSampler

__all__ = ["PairedRepeatSampler"]


class PairedRepeatSampler(Sampler[int]):
    """TRL's ``RepeatSampler`` over *pairs*: rows 2k (question) and 2k+1 (its rephrasing) stay together.

    Pairs are shuffled and batched exactly as ``RepeatSampler`` shuffles and batches prompts; each
    pair then yields its question G times and its rephrasing G times, so both views of a pair are
    in the same generation batch as two adjacent groups of G.

    >>> list(PairedRepeatSampler(num_pairs=2, num_generations=2, pairs_per_batch=1, shuffle=False))
    [0, 0, 1, 1, 2, 2, 3, 3]
    """

    def __init__(
        self,
        num_pairs: int,
        num_generations: int,
        pairs_per_batch: int,
        repeat_count: int = 1,
        shuffle: bool = True,
        seed: int | None = None,
    ):
        self.num_generations = num_generations
        self.pairs = RepeatSampler(
            range(num_pairs), mini_repeat_count=1, batch_size=pairs_per_batch, repeat_count=repeat_count,
            shuffle=shuffle, seed=seed,
        )

    def __iter__(self):
        for pair in self.pairs:
            for row in (2 * pair, 2 * pair + 1):
                yield from [row] * self.num_generations

    def __len__(self) -> int:
        return len(self.pairs) * 2 * self.num_generations
