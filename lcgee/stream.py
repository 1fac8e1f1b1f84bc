"""Compute many lazy pieces (tiles, scenes) with a few in flight, consuming each as it ends.

Writing a raster tile by tile with one ``dask.compute`` per tile leaves the cores idle while
a tile's last task runs and while the tile is written. :func:`compute_each` keeps ``window``
pieces computing at once and hands each result to ``consume`` *in the calling thread* as soon
as it is ready (so file handles never cross threads, and with a remote Dask cluster the
results come back to the process that writes the files). Memory stays bounded by ``window``
pieces, not by the number of pieces.

With a ``distributed`` client active the pieces are submitted to it as one graph (pieces
sharing intermediate keys in separate graphs race the scheduler releasing them) and each
piece's results are released once consumed; otherwise each piece is computed by
``dask.compute`` (the default threaded scheduler) from a small thread pool, ``window`` at once
(default 1: the piece's compute uses every core, and the previous piece is written meanwhile).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotation only: distributed loads when a client exists
    from distributed import Client

__all__ = ["compute_each", "default_window"]


def _client() -> Any:
    """The active ``distributed`` client, else None."""
    try:
        from distributed import get_client
    except ImportError:  # pragma: no cover - distributed is a dependency
        return None
    try:
        return get_client()
    except ValueError:
        return None


def default_window(client: Client | None = None) -> int:
    """Pieces in flight: the cluster's threads (at least 2), so every core has work."""
    threads = 0
    if client is not None:
        try:
            threads = sum(client.nthreads().values())
        except Exception:  # a client that cannot answer: fall back to the cores
            threads = 0
    return max(2, threads or os.cpu_count() or 2)


def compute_each(pieces: Sequence[Sequence[Any]], consume: Callable[[int, tuple], None], *,
                 window: int | None = None) -> None:
    """Compute ``pieces`` (each a sequence of Dask collections), ``window`` at a time.

    ``consume(index, results)`` is called in this thread for each piece as it completes, in
    completion order; ``results`` is the tuple of the piece's computed values. An exception
    in a piece is raised here (pieces still running are cancelled or left to finish).
    """
    if not pieces:
        return
    client = _client()
    # threaded scheduler: one piece computes (on all cores) while the previous one is consumed;
    # more pieces at once raised bench/scale.py's peak memory over its bound
    window = max(1, window or (default_window(client) if client is not None else 1))
    if client is not None:
        _distributed(client, pieces, consume, window)
    else:
        _threaded(pieces, consume, window)


def _distributed(client: Any, pieces: Sequence[Sequence[Any]],
                 consume: Callable[[int, tuple], None], window: int) -> None:
    """All pieces in one ``client.compute`` (one graph: pieces that share intermediate keys
    would otherwise race the scheduler releasing them); the scheduler's own root-task
    queueing bounds what runs at once. Each piece's results are gathered, consumed and
    released as soon as all of them are ready."""
    from distributed import as_completed

    del window  # the scheduler decides; results are released as they are consumed
    flat = [(i, obj) for i, piece in enumerate(pieces) for obj in piece]
    futures = client.compute([obj for _, obj in flat])
    owner = {id(f): i for f, (i, _) in zip(futures, flat)}
    by_piece: dict[int, list[Any]] = {}
    for f, (i, _) in zip(futures, flat):
        by_piece.setdefault(i, []).append(f)
    left = {i: len(fs) for i, fs in by_piece.items()}
    del futures
    try:
        for future in as_completed(list(f for fs in by_piece.values() for f in fs)):
            i = owner[id(future)]
            left[i] -= 1
            if left[i]:
                continue
            values = tuple(f.result() for f in by_piece.pop(i))
            consume(i, values)
    except BaseException:
        for fs in by_piece.values():
            for f in fs:
                f.cancel()
        raise


def _threaded(pieces: Sequence[Sequence[Any]], consume: Callable[[int, tuple], None],
              window: int) -> None:
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    import dask

    todo = iter(enumerate(pieces))
    with ThreadPoolExecutor(window) as pool:
        running: dict[Any, int] = {}

        def submit() -> bool:
            try:
                i, piece = next(todo)
            except StopIteration:
                return False
            running[pool.submit(dask.compute, *piece)] = i
            return True

        for _ in range(window):
            submit()
        try:
            while running:
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    i = running.pop(future)
                    values = future.result()
                    submit()
                    consume(i, values)
        except BaseException:
            for future in running:
                future.cancel()
            raise
