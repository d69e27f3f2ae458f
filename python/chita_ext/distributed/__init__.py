"""chita_ext.distributed: solves and gradient collection with A's columns sharded over the
ranks of a torch.distributed process group (gloo on CPU, NCCL on GPU).

Every rank holds a contiguous block of columns of A (rank 0 the first); products with A
are local, n-vectors are all-reduced, and the top-k is a distributed radix select. See
docs/distributed.md.
"""
from .comm import Comm, CommStats
from .gradients import ShardedGradientStore, collect_gradients
from .layout import balanced_ranges, column_range
from .select import topk_abs
from .solve import METHODS, solve

__all__ = ["METHODS", "Comm", "CommStats", "ShardedGradientStore", "balanced_ranges",
           "collect_gradients", "column_range", "solve", "topk_abs"]
