"""Drawing a train split and a test split that shares no puzzle with it."""

from __future__ import annotations

from typing import Any, Callable, Hashable, Iterable

import numpy as np


def draw_disjoint(
    gen_one: Callable[[tuple], Any],
    args: tuple,
    train_ss: np.random.SeedSequence,
    test_ss: np.random.SeedSequence,
    num_train: int,
    num_test: int,
    train_keys: Callable[[Any], Iterable[Hashable]],
    test_key: Callable[[Any], Hashable],
    max_tries: int,
    what: str,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
) -> tuple[list[Any], list[Any]]:
    """`num_train` items, then `num_test` items whose key no train item has.

    Each item is `gen_one((child_seed, *args))` (a module-level function, so a
    spawn pool of `workers` processes can run it); items come back in seed order,
    so the result does not depend on `workers`. A rejected test item is redrawn
    from a fresh child seed, at most `max_tries` draws in all.
    """
    pool = None
    if workers > 1:
        import multiprocessing as mp

        pool = mp.get_context("spawn").Pool(workers)

    def run(seeds: list[np.random.SeedSequence]) -> Iterable[Any]:
        jobs = [(seed, *args) for seed in seeds]
        return pool.imap(gen_one, jobs) if pool is not None else map(gen_one, jobs)

    total, done = num_train + num_test, 0
    train: list[Any] = []
    test: list[Any] = []
    try:
        for item in run(train_ss.spawn(num_train)):
            train.append(item)
            done += 1
            if progress is not None:
                progress(done, total)
        seen = {key for item in train for key in train_keys(item)}
        tries = 0
        while len(test) < num_test:
            need = num_test - len(test)
            if tries + need > max_tries:
                raise ValueError(f"could not find {num_test} test {what} disjoint from train in {max_tries} draws")
            tries += need
            for item in run(test_ss.spawn(need)):
                if test_key(item) not in seen:
                    test.append(item)
                    done += 1
                    if progress is not None:
                        progress(done, total)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return train, test
