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

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["compute_each"]


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


def compute_each(pieces: Sequence[Sequence[Any]], consume: Callable[[int, tuple], None], *,
                 window: int | None = None) -> None:
    """Compute ``pieces`` (each a sequence of Dask collections); without a ``distributed``
    client, ``window`` at a time (default 1).

    ``consume(index, results)`` is called in this thread for each piece as it completes, in
    completion order; ``results`` is the tuple of the piece's computed values. An exception
    in a piece is raised here (pieces still running are cancelled or left to finish).
    """
    if not pieces:
        return
    client = _client()
    # threaded scheduler: one piece computes (on all cores) while the previous one is consumed;
    # more pieces at once raised bench/scale.py's peak memory over its bound
    if client is not None:  # the scheduler decides what runs; results released when consumed
        _distributed(client, pieces, consume)
    else:
        _threaded(pieces, consume, max(1, window or 1))


def _distributed(client: Any, pieces: Sequence[Sequence[Any]],
                 consume: Callable[[int, tuple], None]) -> None:
    """All pieces in one ``client.compute`` (one graph: pieces that share intermediate keys
    would otherwise race the scheduler releasing them); the scheduler's own root-task
    queueing bounds what runs at once. Each piece's results are gathered, consumed and
    released as soon as all of them are ready."""
    from distributed import as_completed

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
