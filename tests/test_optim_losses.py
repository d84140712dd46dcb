"""Stablemax, the ACT loss, AdamATan2, sparse sign-SGD and the lr schedule,
checked against their formulas on hand-made numbers."""

from __future__ import annotations

import math

import pytest
import torch

from hrm.model.act import PuzzleEmbedding
from hrm.model.losses import act_loss, softmax_cross_entropy, stablemax_cross_entropy
from hrm.optim import AdamATan2, SparseSignSGD, lr_at


def test_stablemax_matches_formula():
    logits = torch.tensor([[[1.0, -1.0, 0.0, 3.0], [-2.0, 0.5, 0.0, -0.5]]])
    labels = torch.tensor([[1, 2]])
    # s(x) = x+1 (x >= 0), 1/(1-x) (x < 0)
    s0 = [2.0, 0.5, 1.0, 4.0]
    s1 = [1 / 3, 1.5, 1.0, 1 / 1.5]
    want = [-math.log(s0[1] / sum(s0)), -math.log(s1[2] / sum(s1))]
    got = stablemax_cross_entropy(logits, labels)
    assert got.dtype == torch.float64
    assert got[0].tolist() == pytest.approx(want, rel=1e-12)


def test_ignored_labels_score_zero():
    logits = torch.randn(1, 3, 5)
    labels = torch.tensor([[0, 2, 0]])
    for fn in (stablemax_cross_entropy, softmax_cross_entropy):
        out = fn(logits, labels)
        assert out[0, 0] == 0 and out[0, 2] == 0 and out[0, 1] > 0


def test_softmax_option_matches_torch():
    logits = torch.randn(2, 3, 5)
    labels = torch.randint(1, 5, (2, 3))
    want = torch.nn.functional.cross_entropy(logits.reshape(-1, 5), labels.reshape(-1), reduction="none")
    torch.testing.assert_close(softmax_cross_entropy(logits, labels).reshape(-1), want)


def test_act_loss_combines_parts():
    logits = torch.tensor([[[0.0, 0.0, 5.0], [0.0, 5.0, 0.0]], [[0.0, 5.0, 0.0], [0.0, 5.0, 0.0]]])
    labels = torch.tensor([[2, 1], [2, 1]])  # first sequence right, second wrong in one token
    out = {
        "logits": logits,
        "q_halt": torch.tensor([1.0, -1.0]),
        "q_continue": torch.tensor([0.5, 0.2]),
        "target_q_continue": torch.tensor([0.9, 0.1]),
    }
    total, stats = act_loss(out, labels)
    lm = stablemax_cross_entropy(logits, labels).mean(-1).sum()
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    q_halt = bce(out["q_halt"], torch.tensor([1.0, 0.0]), reduction="sum")
    q_cont = bce(out["q_continue"], out["target_q_continue"], reduction="sum")
    assert total.item() == pytest.approx((lm + 0.5 * (q_halt + q_cont)).item(), rel=1e-6)
    assert stats["seq_correct"].tolist() == [True, False]
    assert stats["token_correct"].tolist() == [2, 1]


def test_adam_atan2_matches_reference_form():
    lr, b1, b2, wd = 0.1, 0.9, 0.95, 0.5
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = AdamATan2([p], lr=lr, betas=(b1, b2), weight_decay=wd)
    grads = [torch.tensor([0.5, -0.25]), torch.tensor([-1.0, 0.75])]
    ref, m, v = [1.0, -2.0], [0.0, 0.0], [0.0, 0.0]
    for t, g in enumerate(grads, start=1):
        p.grad = g.clone()
        opt.step()
        for i in range(2):
            gi = g[i].item()
            ref[i] *= 1 - lr * wd
            m[i] = b1 * m[i] + (1 - b1) * gi
            v[i] = b2 * v[i] + (1 - b2) * gi * gi
            ref[i] -= lr / (1 - b1**t) * math.atan2(m[i], math.sqrt(v[i]) / math.sqrt(1 - b2**t))
        assert p.detach().tolist() == pytest.approx(ref, rel=1e-6)


def test_adam_atan2_tolerates_zero_lr_and_zero_grad():
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = AdamATan2([p], lr=0.0, weight_decay=0.1)
    p.grad = torch.zeros(2)
    opt.step()
    assert torch.equal(p.detach(), torch.tensor([1.0, 2.0]))
    opt.param_groups[0]["lr"] = 0.1
    p.grad = torch.zeros(2)  # atan2(0, 0) = 0: no NaN where Adam would divide by eps
    opt.step()
    assert torch.isfinite(p).all()


def test_sparse_sign_sgd_updates_only_batch_rows_with_summed_grads():
    emb = PuzzleEmbedding(5, 2)
    emb.table.copy_(torch.ones(5, 2))
    emb.train()
    with torch.enable_grad():
        rows = emb(torch.tensor([1, 3, 1]))
        # Row 1 appears twice: gradients +2 and -3 sum to -1 -> sign -1.
        (rows * torch.tensor([[2.0, 1.0], [-1.0, 0.0], [-3.0, 1.0]])).sum().backward()
    opt = SparseSignSGD(emb, lr=0.1, weight_decay=0.5)
    opt.step()
    decay = 1 - 0.1 * 0.5
    assert emb.table[1].tolist() == pytest.approx([decay + 0.1, decay - 0.1])
    assert emb.table[3].tolist() == pytest.approx([decay + 0.1, decay])  # sign(0) = 0
    for r in (0, 2, 4):
        assert emb.table[r].tolist() == [1.0, 1.0]


def test_lr_schedule_warmup_then_cosine():
    assert lr_at(0, 1.0, 10, 110, 0.1) == 0.0
    assert lr_at(5, 1.0, 10, 110, 0.1) == pytest.approx(0.5)
    assert lr_at(10, 1.0, 10, 110, 0.1) == pytest.approx(1.0)
    assert lr_at(60, 1.0, 10, 110, 0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_at(110, 1.0, 10, 110, 0.1) == pytest.approx(0.1)
    assert lr_at(50, 1.0, 10, 110, 1.0) == pytest.approx(1.0)  # ratio 1 = constant


def test_stablemax_float32_path_matches_float64():
    # MPS has no float64: the loss there runs in float32. Same values within float32 rounding.
    from hrm.model.losses import IGNORE_LABEL, _stablemax_ce, loss_dtype

    assert loss_dtype(torch.device("mps")) == torch.float32 and loss_dtype(torch.device("cpu")) == torch.float64
    torch.manual_seed(0)
    logits, labels = 8 * torch.randn(4, 9, 11), torch.randint(0, 11, (4, 9))
    labels[0, :3] = IGNORE_LABEL
    want = stablemax_cross_entropy(logits, labels)
    got = _stablemax_ce(logits, labels, torch.float32)
    assert want.dtype == torch.float64 and got.dtype == torch.float32
    assert torch.allclose(got.double(), want, rtol=1e-5, atol=1e-6) and not torch.equal(got.double(), want)
    assert (got[0, :3] == 0).all()
