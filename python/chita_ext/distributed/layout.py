"""Which contiguous block of columns (or rows) each rank holds."""
from __future__ import annotations

from dataclasses import dataclass


def balanced_ranges(total: int, parts: int) -> list:
    """``parts`` contiguous ranges ``(begin, end)`` covering ``[0, total)``, sizes differing
    by at most one, the larger ones first: part r has ``total // parts + (r < total % parts)``.

    This is the split :func:`chita_ext.distributed.collect_gradients` uses for columns
    (weights) and rows (samples); :func:`column_range` gives one rank's part.
    """
    if parts < 1 or total < 0:
        raise ValueError(f"cannot split {total} into {parts} parts")
    base, extra = divmod(int(total), int(parts))
    out, begin = [], 0
    for r in range(parts):
        end = begin + base + (1 if r < extra else 0)
        out.append((begin, end))
        begin = end
    return out


def column_range(p: int, rank: int, world_size: int) -> tuple:
    """The balanced contiguous column block ``(begin, end)`` of ``rank`` among ``world_size``."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
    return balanced_ranges(p, world_size)[rank]


@dataclass(frozen=True)
class ShardLayout:
    """Column blocks of all ranks: rank r holds global columns ``[offsets[r], offsets[r+1])``."""

    offsets: tuple  # length R + 1, offsets[0] = 0, offsets[R] = p
    rank: int

    @classmethod
    def from_sizes(cls, sizes, rank: int) -> ShardLayout:
        offsets = [0]
        for s in sizes:
            offsets.append(offsets[-1] + int(s))
        return cls(tuple(offsets), rank)

    @property
    def p(self) -> int:
        return self.offsets[-1]

    @property
    def begin(self) -> int:
        return self.offsets[self.rank]

    @property
    def end(self) -> int:
        return self.offsets[self.rank + 1]

    @property
    def size(self) -> int:
        return self.end - self.begin

    def owners(self, begin: int, end: int) -> list:
        """Ranks whose blocks meet the global column range ``[begin, end)``."""
        return [r for r in range(len(self.offsets) - 1)
                if self.offsets[r] < end and begin < self.offsets[r + 1]]
