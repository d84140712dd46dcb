"""The model family: TRM and the plain transformer beside HRM, sharing one ACT loop; EMA."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from hrm.config import ConfigError, ModelConfig, load_config
from hrm.model import FAMILIES, TRM, count_parameters, segment_flops
from hrm.optim import EMA

SMALL = dict(hidden_size=32, num_heads=4)


def make(arch: str, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return FAMILIES[arch](ModelConfig(arch=arch, **{**SMALL, **kw}), vocab_size=7, seq_len=16, num_puzzle_ids=3)


def batch(B: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"inputs": torch.randint(1, 7, (B, 16), generator=g), "labels": torch.randint(2, 7, (B, 16), generator=g),
            "puzzle_ids": torch.randint(0, 3, (B,), generator=g)}


def fresh_carry(model, b):
    return model.reset_halted(model.initial_carry(b["inputs"], b["labels"], b["puzzle_ids"]))


def model_info(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "hrm.cli", "model-info", *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


# ---------------------------------------------------------------------------
# sizes of the published configurations


def test_published_parameter_counts_of_each_family():
    hrm = model_info("--config", "sudoku_extreme")["parameters"]
    trm_mlp = model_info("--config", "trm_sudoku_extreme")["parameters"]
    trm_attention = model_info("--config", "trm_sudoku_extreme", "--set", "model.mixer=attention")["parameters"]
    transformer = model_info("--config", "sudoku_extreme", "--set", "model.arch=transformer")["parameters"]
    assert hrm == 27_275_266
    assert trm_mlp == 5_028_866  # TRM's code at its published config: its token MLP over 16 + 81 positions
    assert trm_attention == 6_828_034
    assert abs(transformer - hrm) / hrm <= 0.02
    # URM's scripts' 4 blocks of 3,412,480 (attention, ConvSwiGLU with its depthwise conv) and the heads
    assert model_info("--config", "urm_sudoku_extreme")["parameters"] == 13_662_210
    assert model_info("--config", "urm_arc_agi_1")["parameters"] == 13_663_234


def test_urm_is_one_stack_looped_over_one_state_with_a_causal_conv_in_its_mlp():
    from hrm.model.layers import ConvSwiGLU

    urm = make("urm", L_layers=2, H_cycles=2, L_cycles=3)
    assert len(urm.net.layers) == 2 and urm.prefix == 1 and not urm.continue_head
    assert "H_init" in urm.state_dict() and "L_init" not in urm.state_dict()  # URM saves one start state
    mlp = ConvSwiGLU(32, 4.0)
    x = torch.randn(2, 10, 32)
    moved = x.clone()
    moved[:, 4] += 1.0
    changed = (mlp(moved) - mlp(x)).abs().amax(dim=(0, 2)) > 0
    assert changed.tolist() == [t in (4, 5) for t in range(10)]  # position t reads t-1 and t only
    b = batch()
    carry, out = urm(fresh_carry(urm, b))
    assert out["logits"].shape == (6, 16, 7) and torch.equal(carry.z_L, fresh_carry(urm, b).z_L)  # z_L unused
    with pytest.raises(ConfigError, match="urm' is published with attention and RoPE"):
        ModelConfig(arch="urm", mixer="mlp")


def test_trm_is_one_network_of_L_layers_and_the_transformer_one_stack_of_both():
    trm = make("trm", L_layers=2)
    assert [n for n, _ in trm.named_children()][-3:] == ["net", "lm_head", "q_head"]
    assert len(trm.net.layers) == 2 and trm.q_head.out_features == 2  # TRM keeps both outputs, reads the first
    assert trm.prefix == 16 and make("hrm").prefix == 1 and make("trm", puzzle_positions=1).prefix == 1
    transformer = make("transformer", H_layers=2, L_layers=3)
    assert len(transformer.stack.layers) == 5 and transformer.q_head.out_features == 2
    assert count_parameters(transformer) == count_parameters(make("hrm", H_layers=2, L_layers=3))


# ---------------------------------------------------------------------------
# which calls carry gradient


def _calls(model, module, **kw):
    """(requires_grad, output) of each call of `module` in one training segment, backward run."""
    calls = []
    module.register_forward_hook(lambda m, i, o: calls.append(o))
    b = batch()
    carry = fresh_carry(model, b)
    _, _, logits, q = model.segment(carry.z_H, carry.z_L, b["inputs"], b["puzzle_ids"])
    for o in calls:
        if o.requires_grad:
            o.retain_grad()
    (logits.square().mean() + q.sum()).backward()
    return calls


def test_trm_gradient_flows_through_every_call_of_the_last_recursion_and_none_before():
    T, n = 3, 2
    model = make("trm", L_layers=1, H_cycles=T, L_cycles=n)
    calls = _calls(model, model.net)
    assert len(calls) == T * (n + 1)
    last = n + 1
    assert [o.requires_grad for o in calls] == [False] * (len(calls) - last) + [True] * last
    for o in calls[-last:]:  # the gradient reaches each of them, not just the output
        assert o.grad is not None and o.grad.abs().sum() > 0


def test_one_step_and_last_recursion_are_switches_of_every_recurrent_family():
    trm = make("trm", L_layers=1, H_cycles=3, L_cycles=4, gradient="one_step")
    assert [o.requires_grad for o in _calls(trm, trm.net)] == [False] * 13 + [True] * 2
    hrm = make("hrm", H_layers=1, L_layers=1, H_cycles=2, L_cycles=3, gradient="last_recursion")
    grads = [o.requires_grad for o in _calls(hrm, hrm.L)]
    assert grads == [False] * 3 + [True] * 3
    assert hrm.cfg.gradient_mode == "last_recursion" and make("hrm").cfg.gradient_mode == "one_step"
    assert trm.cfg.gradient_mode == "one_step" and make("trm").cfg.gradient_mode == "last_recursion"


def test_the_transformer_is_one_differentiated_call_per_segment_with_the_input_injected():
    model = make("transformer", H_layers=1, L_layers=1)
    calls = _calls(model, model.stack)
    assert len(calls) == 1 and calls[0].requires_grad
    b = batch()
    carry = fresh_carry(model, b)
    x = model.embed(b["inputs"], model.puzzle_rows(b["puzzle_ids"]))
    z_H, z_L, logits, _ = model.segment(carry.z_H, carry.z_L, b["inputs"], b["puzzle_ids"])
    torch.testing.assert_close(z_H, model.stack(carry.z_H, x, model.rope()))
    assert torch.equal(z_L, carry.z_L)


# ---------------------------------------------------------------------------
# halting


def test_trm_halts_on_its_one_q_output_with_no_q_target_segment():
    model = make("trm", halt_max_steps=4, halt_exploration_prob=0.0).train()
    with torch.no_grad():
        model.q_head.bias.fill_(3.0)  # sigmoid > 0.5: "halt"
    segments = []
    model.net.register_forward_hook(lambda m, i, o: segments.append(1))
    carry, out = model(fresh_carry(model, batch()))
    assert bool(carry.halted.all()) and "q_continue" not in out and "target_q_continue" not in out
    assert len(segments) == model.cfg.H_cycles * (model.cfg.L_cycles + 1)  # one segment, no extra


def test_act_off_runs_every_slot_to_mmax_without_a_q_target():
    model = make("hrm", halt_max_steps=3, act=False).train()
    with torch.no_grad():
        model.q_head.bias.copy_(torch.tensor([10.0, -10.0]))  # the Q head says halt
    carry = fresh_carry(model, batch())
    for step in range(1, 4):
        carry, out = model(carry)
        assert "target_q_continue" not in out
        assert bool(carry.halted.all()) == (step == 3)


def test_mlp_token_mixing_has_no_rope_and_the_flops_follow_the_calls():
    model = make("trm", mixer="mlp", L_layers=1)
    assert model.rotary is None and model.embed_pos is None
    carry, out = model(fresh_carry(model, batch()))
    assert out["logits"].shape == (6, 16, 7)
    cfg = ModelConfig(arch="trm", L_layers=2, H_cycles=3, L_cycles=6)
    assert TRM.layer_calls(cfg) == (3 * 7 * 2, 7 * 2)  # T (n + 1) calls of 2 blocks; the last recursion's
    assert segment_flops(cfg, 81, 11)["q_target"] == 0  # no continue head, no extra segment
    hrm = ModelConfig()
    assert segment_flops(hrm, 81, 11)["q_target"] == segment_flops(hrm, 81, 11)["forward"]


# ---------------------------------------------------------------------------
# config rules


@pytest.mark.parametrize("overrides, piece", [
    (["model.arch=rnn"], "'model.arch' must be one of 'hrm', 'trm', 'urm', 'transformer'"),
    (["model.arch=trm", "model.H_layers=2"], "model.H_layers does not apply to model.arch 'trm'"),
    (["model.arch=transformer", "model.L_cycles=3"], "model.L_cycles does not apply to model.arch 'transformer'"),
    (["model.arch=transformer", "model.gradient=last_recursion"], "model.gradient does not apply"),
    (["model.mixer=conv"], "'model.mixer' must be one of 'attention', 'mlp'"),
    (["train.ema=1.0"], "train.ema must be in (0, 1)"),
])
def test_bad_family_configs_give_one_line(overrides, piece):
    with pytest.raises(ConfigError) as err:
        load_config("quickstart", overrides)
    assert piece in str(err.value) and "\n" not in str(err.value)


def test_a_file_written_for_one_family_can_switch_to_another():
    """quickstart.yaml sets H_layers for HRM; switching it to TRM leaves that key unused."""
    cfg = load_config("quickstart", ["model.arch=trm"])
    assert isinstance(FAMILIES[cfg.model.arch], type) and cfg.model.arch == "trm"
    with pytest.raises(ConfigError, match="H_layers does not apply"):
        load_config("trm_sudoku_extreme", ["model.H_layers=4"])


# ---------------------------------------------------------------------------
# EMA


def test_ema_follows_its_warmed_up_recursion_and_swaps_weights_back():
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2)
    ema = EMA(layer, decay=0.9)
    want = [p.detach().clone() for p in layer.parameters()]
    for t in range(1, 6):
        with torch.no_grad():
            for p in layer.parameters():
                p.add_(1.0)
        ema.update()
        d = min(0.9, (1 + t) / (10 + t))
        want = [d * w + (1 - d) * p.detach() for w, p in zip(want, layer.parameters())]
    for s, w in zip(ema.shadow, want):
        torch.testing.assert_close(s, w)
    live = [p.detach().clone() for p in layer.parameters()]
    with ema.applied():
        assert all(torch.equal(p, s) for p, s in zip(layer.parameters(), ema.shadow))
    assert all(torch.equal(p, v) for p, v in zip(layer.parameters(), live))


def test_trm_and_transformer_train_through_the_one_loop(tmp_path, tiny):
    from hrm.train import train

    for model in ({"arch": "trm", "L_layers": 1, "H_cycles": 2, "L_cycles": 2}, {"arch": "transformer"}):
        cfg = tiny.config(tmp_path / model["arch"], model=model, train={"steps": 4})
        metrics = train(cfg, log=lambda _m: None)
        assert metrics["step"] == 4 and 0.0 <= metrics["token_accuracy"] <= 1.0
