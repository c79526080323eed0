"""AccuracyAwareQuantization on the resnet-like CNN (residual Adds, a Concat with a shared
range, MaxPool, GAP, Gemm): groups cover every quantized layer once; the cached-suffix ranking
(thread or process executor, any memory budget) scores every candidate exactly as whole-model
runs do, and so does the split ranking (reverted region in a small session, the rest in the
current model's session) here and on a BERT block; each iteration's reverted model is exactly
the export with those layers in float.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import pytest

import fastq
from fastq import metrics
from fastq.algorithms import aa_eval
from fastq.algorithms import accuracy_aware as aa_mod

from models.builders import bert_like, resnet_like
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
    assert ra["split"] > 0 and rb["split"] == 0 and c["ranking_runs"]["split"] == 0
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


def _bert_problem():
    m, make = bert_like()
    calib = make(8, 1)
    sess = fastq.InferenceSession(m)
    return m, calib, [(f, sess.run(None, f)[0]) for f in make(6, 2)]


@pytest.mark.parametrize("which", ["cnn", "bert"])
def test_split_ranking_scores_every_candidate_as_whole_suffixes(cnn, monkeypatch, which):
    """Every ranking's candidate scores (metric, distance to float) are the same floats with
    and without the split; two iterations, so the second ranking splits a model that already
    has a layer in float. Both problems split some candidates; BERT's float residual stream
    leaves others whole (the rest feeds back into the region)."""
    m, calib, val = cnn if which == "cnn" else _bert_problem()
    seen = []
    real = aa_mod.rank

    def spy(*a, **k):
        seen.append(real(*a, **k))
        return seen[-1]
    monkeypatch.setattr(aa_mod, "rank", spy)
    kw = dict(validation_data=val, metric=metrics.neg_mse, progress=False)
    runs = {}
    for split in (True, False):
        monkeypatch.setattr(aa_eval, "SPLIT", split)
        seen.clear()
        a = fastq.quantize(m, calib, cfg(max_iter_num=2), **kw).report.accuracy_aware
        runs[split] = (list(seen), a)
    (s_on, a_on), (s_off, a_off) = runs[True], runs[False]
    assert len(s_on) == 2 and s_on == s_off
    assert a_on["ranking_runs"]["split"] > 0 and a_off["ranking_runs"]["split"] == 0
    if which == "bert":
        assert a_on["ranking_runs"]["split"] < a_on["ranking_runs"]["from_cache"]
    assert a_on["reverts"] == [dict(r, seconds=x["seconds"]) for r, x in
                               zip(a_off["reverts"], a_on["reverts"])]
