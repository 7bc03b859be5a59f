"""The training loop: LR shape, resume equality (with Ctrl-C), the NaN stop, gradient accumulation, method paths."""

import json
import math
import os
import signal

import pytest
import torch

import rankwise
from rankwise.data import train_windows
from rankwise.schedule import TrainingSchedule
from rankwise.train import (
    LMTask,
    Prepared,
    TrainConfig,
    TrainingDiverged,
    TrainingInterrupted,
    family_of,
    method_kwargs,
    prepare_method,
    train,
    warmup_decay,
)
from tests.helpers import tiny_llama


def tokens(n=4000, vocab=97, seed=5):
    """A learnable stream: a fixed random sequence of 50 tokens, repeated."""
    period = torch.randint(0, vocab, (50,), generator=torch.Generator().manual_seed(seed))
    return period.repeat(n // 50)


def task(**kw):
    t = tokens()
    return LMTask(t[:3600], t[3600:], batch_size=4, seq_len=16, **kw)


def cfg(**kw):
    return TrainConfig(**{"steps": 12, "lr": 3e-3, "eval_every": 6, "eval_batches": 2, "log_every": 2,
                          "progress": False, **kw})


def run(tmp, method="lora", kwargs=None, resume=False, t=None, **c):
    torch.manual_seed(0)
    model = tiny_llama()
    config = cfg(**c)
    prepared = prepare_method(model, method, {"rank": 4, "dropout": 0.1} if kwargs is None else kwargs,
                              lr=config.lr, total_steps=config.steps)
    return model, train(model, t or task(), prepared, config, tmp, resume=resume)


def test_warmup_then_cosine_and_linear_closed_form():
    assert warmup_decay(0, 100, 0.1) == pytest.approx(0.1)
    assert warmup_decay(9, 100, 0.1) == pytest.approx(1.0)
    assert warmup_decay(10, 100, 0.1) == pytest.approx(1.0)
    p = (55 - 10) / 90
    assert warmup_decay(55, 100, 0.1, "cosine", 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))
    assert warmup_decay(55, 100, 0.1, "linear", 0.0) == pytest.approx(1 - p)
    assert warmup_decay(100, 100, 0.1, "cosine", 0.1) == pytest.approx(0.1)
    assert warmup_decay(70, 100, 0.06, "constant") == 1.0


class InterruptAt(LMTask):
    """Sends this process SIGINT (as Ctrl-C does) while building the batch of one step."""

    at: int = -1

    def batch(self, step, micro):
        if step == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        return super().batch(step, micro)


def test_ctrl_c_saves_and_resume_is_bit_identical(tmp_path):
    ref, result = run(tmp_path / "a")
    assert result.final_eval["val_loss"] < math.log(97)  # it learned something
    t = tokens()
    interrupting = InterruptAt(t[:3600], t[3600:], batch_size=4, seq_len=16)
    interrupting.at = 4
    with pytest.raises(TrainingInterrupted, match="after step 5"):
        run(tmp_path / "b", t=interrupting)
    assert json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())["step"] == 5
    resumed, _ = run(tmp_path / "b", resume=True)
    for (n, p), q in zip(ref.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(p, q), n
    rows = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "eval"] == [6, 12]
    assert (tmp_path / "b" / "metrics.csv").read_text().startswith("step,kind,loss")


class NaNAt(LMTask):
    at: int = -1

    def loss(self, model, batch):
        loss = super().loss(model, batch)
        return loss * float("nan") if self._step == self.at else loss

    def batch(self, step, micro):
        self._step = step
        return super().batch(step, micro)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    t = tokens()
    bad = NaNAt(t[:3600], t[3600:], batch_size=4, seq_len=16)
    bad.at = 7
    with pytest.raises(TrainingDiverged, match=r"became nan at step 8.*last good checkpoint \(step 5\)"):
        run(tmp_path, t=bad, save_every=5)
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert state["step"] == 5
    saved = rankwise.io.files.read_tensors(tmp_path / "checkpoint" / "model.safetensors")
    assert all(torch.isfinite(v).all() for v in saved.values())
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in rows) == 6  # nothing logged for the diverged step


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(rankwise.ConfigError, match="no checkpoint"):
        run(tmp_path, resume=True)


class Fixed(LMTask):
    """Micro-batch k of a step is the k-th quarter of one fixed batch, so accumulation can be checked."""

    def batch(self, step, micro):
        x = next(train_windows(self.train_tokens, self.batch_size, self.seq_len, step + 1, start_step=step))
        x = x.chunk(self.grad_accum)[micro]
        return {"input_ids": x, "labels": x}


def sgd_run(tmp, accum):
    t = tokens()
    torch.manual_seed(0)
    model = tiny_llama()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)  # SGD: the update is the gradient, so sums must agree
    opt.param_groups[0]["base_lr"] = 0.5
    prepared = Prepared("sgd", "adamw", None, opt, TrainingSchedule())
    train(model, Fixed(t[:3600], t[3600:], 4, 16, grad_accum=accum), prepared, cfg(steps=3, grad_accum=accum), tmp)
    return model


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    whole, accum = sgd_run(tmp_path / "a", 1), sgd_run(tmp_path / "b", 2)
    for p, q in zip(whole.parameters(), accum.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)


def test_adapter_path_trains_only_the_adapter(tmp_path):
    model, result = run(tmp_path)
    assert family_of("lora") == "adapter" and family_of("full") == "adamw"
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert result.trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    # AdamW: two fp32 moments per parameter, and a fp32 step count per tensor
    assert result.optimizer_state_bytes == 2 * 4 * result.trainable + 4 * len(trainable)
    assert (tmp_path / "checkpoint" / "trainer.pt").exists()


def test_method_kwargs_keep_only_fields_the_method_has():
    kw = method_kwargs("dora", {"rank": 16, "alpha": None, "targets": ["q_proj"], "update_gap": 50})
    assert kw == {"rank": 16, "targets": ["q_proj"]}
    assert method_kwargs("adamw", {"rank": 16}) == {}
    shared = {"rank": 4, "alpha": 8.0, "targets": ["q_proj"], "modules_to_save": ["score"], "update_gap": 50,
              "refresh_every": 5}
    assert method_kwargs("lift", shared) == {"rank": 4, "targets": ["q_proj"], "modules_to_save": ["score"],
                                             "refresh_every": 5}


def test_lift_path_sparse_deltas_plain_adamw_and_resume_across_refreshes(tmp_path):
    from rankwise.core.geometry import LayerGeometry

    kwargs = {"rank": 2, "refresh_every": 4, "approx_rank": 8}
    ref, result = run(tmp_path / "a", method="lift", kwargs=kwargs)
    base = tiny_llama()
    targets = [n for n, m in base.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"]
    modules = dict(base.named_modules())
    k = sum(2 * (modules[n].in_features + modules[n].out_features) for n in targets)
    assert result.trainable == k  # the sparse values on the masks
    trained = rankwise.trainable_parameters(ref)
    assert len(trained) == len(targets) and sum(p.numel() for p in trained) == k
    assert all(not dict(ref.named_modules())[n].weight.requires_grad for n in targets)  # no dense W gradient
    # plain AdamW: (K,) fp32 moments per layer and a fp32 step count per values tensor
    assert result.optimizer_state_bytes == 2 * 4 * k + 4 * len(targets)
    assert result.final_eval["val_loss"] < math.log(97)
    moved = 0
    lifted = dict(ref.named_modules())
    for n in targets:  # W + S against the base weight: only entries of the masks it went through moved
        layer, geo = lifted[n], LayerGeometry.of(modules[n])
        w_eff = geo.matrix(layer.weight) + layer.rankwise_lift.dense()
        moved += int((w_eff != geo.matrix(modules[n].weight)).sum())
    assert 0 < moved <= k * 3
    t = tokens()
    interrupting = InterruptAt(t[:3600], t[3600:], batch_size=4, seq_len=16)
    interrupting.at = 5  # stop after step 6: between the refreshes after steps 4 and 8
    with pytest.raises(TrainingInterrupted, match="after step 6"):
        run(tmp_path / "b", method="lift", kwargs=kwargs, t=interrupting)
    resumed, _ = run(tmp_path / "b", method="lift", kwargs=kwargs, resume=True)
    for (n, p), q in zip(ref.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(p, q), n


@pytest.mark.skipif(not hasattr(rankwise.optim, "build_optimizer"), reason="rankwise.optim.build_optimizer "
                    "(low-rank optimizers) is not in this install yet")
def test_optimizer_path_galore(tmp_path):
    model, result = run(tmp_path, method="galore", kwargs={"rank": 4})
    assert result.trainable == sum(p.numel() for p in model.parameters())
    assert math.isfinite(result.final_eval["val_loss"])


@pytest.mark.skipif(not hasattr(rankwise, "reparameterize"), reason="rankwise.reparameterize (reparameterised "
                    "pretraining) is not in this install yet")
def test_reparam_path_low_rank(tmp_path):
    model, result = run(tmp_path, method="low-rank", kwargs={"rank": 4})
    assert result.trainable < sum(p.numel() for p in tiny_llama().parameters())
    assert math.isfinite(result.final_eval["val_loss"])
