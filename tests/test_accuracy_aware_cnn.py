"""AccuracyAwareQuantization on the resnet-like CNN (residual Adds, a Concat with a shared
range, MaxPool, GAP, Gemm): groups cover every quantized layer once; the cached-suffix ranking
(thread or process executor, any memory budget) scores every candidate exactly as whole-model
runs do; each iteration's reverted model is exactly the export with those layers in float.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import pytest

import fastq
from fastq import metrics
from fastq.algorithms import accuracy_aware as aa_mod

from models.builders import resnet_like
from models.util import on_threads


@pytest.fixture(scope="module")
def cnn():
    m, make = resnet_like()
    calib = make(16, 1)
    sess = fastq.InferenceSession(m)
    val = [(s, sess.run(None, s)[0]) for s in make(12, 2)]     # targets: float logits
    return m, calib, val


def cfg(**p):
    return {"algorithms": [{"name": "AccuracyAwareQuantization",
                            "params": {"stat_subset_size": 16, "maximal_drop": 0.0,
                                       "ranking_subset_size": 6, **p}}]}


def test_groups_cover_the_plan_and_concat_is_one_group(cnn):
    m, calib, _ = cnn
    c = fastq.config.load(cfg())
    from fastq.quantize import run_default
    _, st = run_default(m, calib, c, c.main.params.base_algorithm, c.main.params.base, False)
    groups = aa_mod.quantizer_groups(st.plan)
    flat = [n for g in groups for n in g]
    assert len(flat) == len(set(flat))
    assert set(st.plan.weights) <= set(flat)
    assert {n for q in st.plan.activations.values() for n, _ in q.consumers} <= set(flat)
    assert any(n.startswith("concat") for g in groups for n in g)
    pool = next(g for g in groups if any(n.startswith("maxpool") for n in g))
    assert len(pool) == 2                          # MaxPool in/out share one range
    # reverting every group leaves no Q/DQ at all
    full, _ = aa_mod.export(st, set(flat))
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear")
                   for n in full.graph.node)


def test_cached_ranking_equals_uncached_and_process_executor(cnn):
    m, calib, val = cnn
    kw = dict(validation_data=val, metric=metrics.neg_mse, progress=False)
    a = fastq.quantize(m, calib, cfg(max_iter_num=2), **kw).report.accuracy_aware
    b = fastq.quantize(m, calib, cfg(max_iter_num=2), memory_budget=0,
                       **kw).report.accuracy_aware
    with ProcessPoolExecutor(2) as ex:
        c = fastq.quantize(m, calib, cfg(max_iter_num=2), executor=ex,
                           **kw).report.accuracy_aware
    assert a["iterations"] == 2
    ra, rb = a["ranking_runs"], b["ranking_runs"]
    assert rb["from_cache"] == 0 and rb["cached_bytes"] == 0
    assert ra["from_cache"] > 0 and ra["nodes_run"] < rb["nodes_run"] == rb["nodes_whole"]
    for other in (b, c):
        assert [r["layers"] for r in other["reverts"]] == [r["layers"] for r in a["reverts"]]
        assert [r["subset_score"] for r in other["reverts"]] == \
            [r["subset_score"] for r in a["reverts"]]
        assert other["final_metric"] == a["final_metric"]


def test_one_and_two_threads_rank_alike(cnn):
    """In-process ranking on fastq's threads (float convs of reverted layers, int8 suffixes,
    stacked evaluations) scores exactly as one thread does."""
    m, calib, val = cnn
    kw = dict(validation_data=val, metric=metrics.neg_mse, progress=False)
    got = on_threads((1, 2), lambda: fastq.quantize(m, calib, cfg(max_iter_num=2), **kw))
    a, b = (r.report.accuracy_aware for r in got)
    assert [r["layers"] for r in a["reverts"]] == [r["layers"] for r in b["reverts"]]
    assert [r["subset_score"] for r in a["reverts"]] == [r["subset_score"] for r in b["reverts"]]
    assert got[0].model.SerializeToString() == got[1].model.SerializeToString()
