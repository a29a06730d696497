"""``--shard K/N``: one of N processes, each predicting every N-th image of a batch.

A scheduler that gives each job an index (a Slurm job array's
``$SLURM_ARRAY_TASK_ID``, a Kubernetes indexed job, a loop over ``K``) runs the
same ``wsdal predict`` command N times with ``--shard K/N``, K = 0 .. N-1. Shard K
takes the images at positions K, K + N, K + 2N, ... of the batch's images sorted by
key, an order that does not depend on how a folder happens to be listed, so the N
shards together cover every image exactly once. They may write into one output
folder at the same time (see :mod:`wsdal_wsi.lock`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from wsdal_wsi.errors import ConfigError

__all__ = ["Shard"]

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based: ``0/3``, ``1/3``, ``2/3``).

    Attributes
    ----------
    index : int
        K, in ``0 .. count - 1``.
    count : int
        N, at least 1.
    """

    index: int
    count: int

    def __post_init__(self) -> None:
        for name in ("index", "count"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"shard {name} must be an integer, got {value!r}")
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(
                f"--shard {self.index}/{self.count}: K/N needs N >= 1 and 0 <= K < N "
                "(K counts from 0, as $SLURM_ARRAY_TASK_ID does with --array=0-<N-1>)"
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"K/N"`` -> Shard (e.g. ``"$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT"``).

        Raises
        ------
        ConfigError
            Not two integers separated by ``/``, or K outside ``0 .. N-1``.
        """
        parts = str(text).strip().split("/")
        try:
            index, count = (int(p) for p in parts)
        except ValueError:
            raise ConfigError(
                f"--shard {text!r}: expected K/N, two integers such as 0/4 (shard 0 of 4)"
            ) from None
        return cls(index, count)

    def select(self, items: Sequence[T], *, key: Any) -> list[T]:
        """The items of this shard: every N-th one, K first, in the order of ``key``."""
        ordered = sorted(items, key=key)
        return ordered[self.index :: self.count]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
