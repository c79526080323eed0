"""runtime/parallel.py's ``ordered_map``: items in order whichever thread runs them, the caller's
thread alone when threads do not pay (GIL-bound items), the workers when they do (items that
release the GIL), nested maps serial, early close waits for running items, and a forked child
gets working pools."""

import multiprocessing
import threading
import time

import pytest

from fastq.runtime import parallel
from fastq.runtime.parallel import ordered_map


def _run(fn, items, workers=2):
    """[(result, name of the thread that ran the item)] in item order."""
    return list(ordered_map(lambda i: (fn(i), threading.current_thread().name), items,
                            workers=workers))


def _busy(i):
    """~1 ms of pure Python: holds the GIL throughout."""
    t = time.perf_counter()
    x = 0
    while time.perf_counter() - t < 0.001:
        x += 1
    return i * 3


def _sleepy(i):
    """~2 ms with the GIL released: threads overlap fully."""
    time.sleep(0.002)
    return i * 3


def test_gil_bound_items_run_on_the_callers_thread():
    me = threading.current_thread().name
    got = _run(_busy, range(120))
    assert [r for r, _ in got] == [3 * i for i in range(120)]
    # the probe's window ran on the workers, everything after it on this thread
    assert got[0][1].startswith("fastq-map")
    assert all(name == me for _, name in got[-40:])


def test_items_that_release_the_gil_go_to_the_workers():
    me = threading.current_thread().name
    got = _run(_sleepy, range(60))
    assert [r for r, _ in got] == [3 * i for i in range(60)]
    assert me in {name for _, name in got}     # the caller's probe
    assert all(name.startswith("fastq-map") for _, name in got[-20:])


def test_heavy_items_stay_on_the_workers_unprobed(monkeypatch):
    monkeypatch.setattr(parallel, "HEAVY_SECONDS", 0.005)
    got = _run(lambda i: time.sleep(0.006) or i, range(40))
    assert [r for r, _ in got] == list(range(40))
    assert all(name.startswith("fastq-map") for _, name in got)


def test_a_map_inside_a_worker_is_serial():
    def outer(i):
        time.sleep(0.002)
        inner = _run(lambda j: j + i, range(5))
        return [r for r, _ in inner], {name for _, name in inner}

    got = _run(outer, range(40))
    assert [r for (r, _), _ in got] == [[j + i for j in range(5)] for i in range(40)]
    on_workers = [(names, who) for (_, names), who in got if who.startswith("fastq-map")]
    assert on_workers
    for names, who in on_workers:
        assert names == {who}                  # the worker ran its inner map itself


def _tracked(fail_at=None):
    """An item function (~3 ms, GIL released) that keeps the items running now in a list and
    raises at item ``fail_at``."""
    running = []
    lock = threading.Lock()

    def item(i):
        with lock:
            running.append(i)
        time.sleep(0.003)
        with lock:
            running.remove(i)
        if i == fail_at:
            raise ValueError(f"item {i}")
        return i
    return item, running


def test_error_is_raised_in_turn_after_running_items_finish():
    item, running = _tracked(fail_at=30)
    got = []
    with pytest.raises(ValueError, match="item 30"):
        for r in ordered_map(item, range(100), workers=2):
            got.append(r)
    assert got == list(range(30))
    assert running == []                       # nothing left running behind the caller's back


def test_an_error_from_the_items_iterator_propagates_after_running_items_finish():
    item, running = _tracked()

    def source(bad):
        for i in range(100):
            if i == bad:
                raise KeyError(f"sample {i}")
            yield i
    for bad in (1, 9, 40):              # in the probe on the workers, later on either side
        got = []
        with pytest.raises(KeyError, match=f"sample {bad}"):
            for r in ordered_map(item, source(bad), workers=2):
                got.append(r)
        assert got == list(range(len(got))) and len(got) <= bad and running == []


def test_closing_early_waits_for_running_items():
    item, running = _tracked()
    gen = ordered_map(item, range(100), workers=2)
    got = [next(gen) for _ in range(25)]
    gen.close()
    assert got == list(range(25)) and running == []


def _child(q):
    q.put([r for r in ordered_map(_sleepy, range(30), workers=2)])


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                    reason="no fork start method on this platform")
def test_a_forked_child_gets_working_pools():
    list(ordered_map(_sleepy, range(30), workers=2))      # the parent's pool exists
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q,))
    p.start()
    p.join(60)
    alive = p.is_alive()
    if alive:
        p.kill()
    assert not alive and p.exitcode == 0
    assert q.get(timeout=5) == [3 * i for i in range(30)]
