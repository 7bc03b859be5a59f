"""Each survey experiment runs at a small size, writes its figure, and shows its claim."""

import json

import pytest

pytest.importorskip("sklearn")

from rankwise.experiments import dropout_lowrank, galore_relora, lora_asymmetry, low_rank_updates, parsimony  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def _figure_ok(result, name):
    assert result.figure is not None and result.figure.name == name
    assert result.figure.read_bytes()[:8] == PNG
    json.dumps(result.to_dict())


def test_law_of_parsimony_only_2r_singular_values_move(tmp_path):
    r = parsimony.run(tmp_path, record_every=25)
    _figure_ok(r, "parsimony.png")
    m = r.metrics
    assert m["relative_error"] < 1e-3                  # the target was learned…
    assert all(c <= m["bound"] for c in m["changed"])  # …while all but 2r = 6 of 30 singular values stay at ε (±0.1 %)
    assert all(c >= 3 for c in m["changed"])           # and the learning directions did move
    assert max(m["move_outside"]) < 1e-4               # the update lies in a fixed 2r-dim subspace
    assert all(k <= m["bound"] for k in m["update_rank"])


def test_galore_equals_relora_with_svd_reset_in_float64(tmp_path):
    r = galore_relora.run(tmp_path)
    _figure_ok(r, "galore_relora.png")
    m = r.metrics
    assert m["resets"] >= 4
    assert m["max_weight_diff"] <= 1e-6
    assert m["galore_vs_full"] > 1e-2            # the projection matters: not plain GD in disguise
    assert m["loss_end"] < 0.5 * m["loss_start"]  # and it trains


def test_updates_of_trained_networks_are_low_rank(tmp_path):
    r = low_rank_updates.run(tmp_path, hidden=64, steps=150)
    _figure_ok(r, "low_rank_updates.png")
    for kind in ("linear", "mlp"):
        m = r.metrics[kind]
        assert m["test_accuracy"] > 0.85, kind                 # the networks did learn the digits
        assert 1 <= m["rank99"] <= 0.25 * m["size"], (kind, m)  # 99 % of ΔW's energy in ≤ 16 of 64 directions


def test_dropout_lowers_the_rank_of_the_last_layer_activations(tmp_path):
    r = dropout_lowrank.run(tmp_path, epochs=20)
    _figure_ok(r, "dropout_lowrank.png")
    m = r.metrics
    assert m["rank_dropout"] < 0.9 * m["rank_plain"]
    s = r.series
    assert s["plain"]["test_loss"][-1] < s["plain"]["test_loss"][0]  # both runs learn
    assert s["dropout"]["test_loss"][-1] < s["dropout"]["test_loss"][0]


def test_loraplus_ratio_16_converges_faster_and_b_grows_from_zero(tmp_path):
    r = lora_asymmetry.run(tmp_path, steps=150)
    _figure_ok(r, "lora_asymmetry.png")
    m = r.metrics
    assert m["final_loss"]["16.0"] < 0.7 * m["final_loss"]["1.0"]
    assert m["final_loss"]["1.0"] < m["initial_loss"]
    assert r.series["1.0"]["norm_B"][0] < 0.1 * m["final_norm_B"]["1.0"]  # B starts at 0 and grows
    assert m["final_norm_B"]["16.0"] > 2 * m["final_norm_B"]["1.0"]
