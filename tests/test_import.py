"""`hrm import`: checkpoints in the reference code's own layout become ours.

The reference layouts below are written down from the published code (sapientinc/HRM and
SamsungSAILMontreal/TinyRecursiveModels: models/hrm/hrm_act_v1.py, models/recursive_reasoning/
trm.py, models/layers.py, pretrain.py), not derived from our importer's map: key names, shapes,
the bf16 init buffers, the `_orig_mod.model.inner.` prefix torch.compile and the ACT wrapper
put on every key, the bare state dict in an extension-less `step_<N>` file, and the sorted
all_config.yaml beside it.
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import pytest
import torch
import yaml

from hrm.checkpoint import load_checkpoint, read_manifest
from hrm.cli import main
from hrm.config import from_dict
from hrm.model import build_model

PREFIX = "_orig_mod.model.inner."


def ref_swiglu(expansion: float, width: int) -> int:
    """models/layers.py: SwiGLU's inner width, round(expansion * width * 2/3) up to a multiple of 256."""
    inter = round(expansion * width * 2 / 3)
    return -(-inter // 256) * 256


def ref_block(prefix: str, hidden: int, expansion: float, tokens: int | None) -> dict[str, tuple[int, ...]]:
    """One reference block: attention (or TRM's mlp_t over the `tokens` positions) and the SwiGLU."""
    inter = ref_swiglu(expansion, hidden)
    keys = {f"{prefix}.mlp.gate_up_proj.weight": (2 * inter, hidden), f"{prefix}.mlp.down_proj.weight": (hidden, inter)}
    if tokens is None:
        keys |= {f"{prefix}.self_attn.qkv_proj.weight": (3 * hidden, hidden),
                 f"{prefix}.self_attn.o_proj.weight": (hidden, hidden)}
    else:
        t_inter = ref_swiglu(expansion, tokens)
        keys |= {f"{prefix}.mlp_t.gate_up_proj.weight": (2 * t_inter, tokens),
                 f"{prefix}.mlp_t.down_proj.weight": (tokens, t_inter)}
    return keys


def ref_layout(family: str, arch: dict, vocab: int, seq_len: int, table_rows: int) -> dict[str, tuple[int, ...]]:
    """The reference's state-dict keys and shapes (before the prefix) for an `arch` section."""
    h, e = arch["hidden_size"], arch["expansion"]
    ndim = arch["puzzle_emb_ndim"]
    positions = arch.get("puzzle_emb_len", 16) if family == "trm" else math.ceil(ndim / h)
    keys = {"embed_tokens.embedding_weight": (vocab, h), "lm_head.weight": (vocab, h), "q_head.weight": (2, h),
            "q_head.bias": (2,), "puzzle_emb.weights": (table_rows, ndim)}
    if family == "urm":  # URM (models/urm/urm.py): one stack `layers`, ConvSwiGLU's depthwise conv, init_hidden
        inter = ref_swiglu(e, h)
        keys["init_hidden"] = (h,)
        for i in range(arch["num_layers"]):
            keys |= ref_block(f"layers.{i}", h, e, None)
            keys |= {f"layers.{i}.mlp.dwconv.weight": (inter, 1, 2), f"layers.{i}.mlp.dwconv.bias": (inter,)}
        return keys
    keys |= {"H_init": (h,), "L_init": (h,)}
    if arch["pos_encodings"] == "learned":
        keys["embed_pos.embedding_weight"] = (seq_len + positions, h)
    if family == "hrm":
        for level in ("H", "L"):
            for i in range(arch[f"{level}_layers"]):
                keys |= ref_block(f"{level}_level.layers.{i}", h, e, None)
    else:
        for i in range(arch["L_layers"]):
            keys |= ref_block(f"L_level.layers.{i}", h, e, seq_len + positions if arch["mlp_t"] else None)
    return keys


def ours_for(family: str, key: str) -> str:
    """Our key for a reference key, spelled out independently of the importer's tables."""
    fixed = {"embed_tokens.embedding_weight": "embed_tokens.weight", "puzzle_emb.weights": "puzzle_emb.table",
             "embed_pos.embedding_weight": "embed_pos.weight", "init_hidden": "H_init"}
    if key in fixed:
        return fixed[key]
    if ".layers." not in key and not key.startswith("layers."):
        return key
    level, _, rest = ("", "", key.removeprefix("layers.")) if key.startswith("layers.") else key.partition(".layers.")
    stack = {"hrm": {"H_level": "H", "L_level": "L"}, "trm": {"L_level": "net"}, "urm": {"": "net"}}[family][level]
    rest = (rest.replace("self_attn.qkv_proj", "attn.qkv").replace("self_attn.o_proj", "attn.out")
            .replace("mlp.dwconv", "mlp.conv")
            .replace("mlp_t.gate_up_proj", "attn.mlp.gate_up").replace("mlp_t.down_proj", "attn.mlp.down")
            .replace("mlp.gate_up_proj", "mlp.gate_up").replace("mlp.down_proj", "mlp.down"))
    return f"{stack}.layers.{rest}"


# The published Sudoku-Extreme settings (HRM config/arch/hrm_v1.yaml; TRM's README commands).
HRM_ARCH = {"name": "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1",
            "loss": {"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"},
            "halt_exploration_prob": 0.1, "halt_max_steps": 16, "H_cycles": 2, "L_cycles": 2, "H_layers": 4,
            "L_layers": 4, "hidden_size": 512, "num_heads": 8, "expansion": 4, "puzzle_emb_ndim": 512,
            "pos_encodings": "rope"}
TRM_ARCH = {"name": "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1",
            "loss": {"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"},
            "halt_exploration_prob": 0.1, "halt_max_steps": 16, "H_cycles": 3, "L_cycles": 6, "H_layers": 0,
            "L_layers": 2, "hidden_size": 512, "num_heads": 8, "expansion": 4, "puzzle_emb_ndim": 512,
            "pos_encodings": "rope", "puzzle_emb_len": 16, "mlp_t": False, "no_ACT_continue": True,
            "forward_dtype": "bfloat16"}
# URM's scripts for Sudoku (config/arch/urm.yaml overridden: loops 16, H 2, L 6, 4 layers).
URM_ARCH = {"name": "urm.urm@URM", "loss": {"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"},
            "loops": 16, "num_layers": 4, "hidden_size": 512, "num_heads": 8, "expansion": 4, "H_cycles": 2,
            "L_cycles": 6, "loop_deltas": [0, 8], "puzzle_emb_ndim": 512, "pos_encodings": "rope"}
RUN = {"global_batch_size": 768, "epochs": 50000, "lr": 1e-4, "lr_min_ratio": 1.0, "lr_warmup_steps": 2000,
       "weight_decay": 1.0, "beta1": 0.9, "beta2": 0.95, "puzzle_emb_lr": 1e-4, "puzzle_emb_weight_decay": 1.0,
       "seed": 0, "checkpoint_every_eval": True, "eval_interval": 5000, "project_name": "Sudoku-extreme-1k-aug-1000 ACT-torch"}


def write_release(folder: Path, family: str, arch: dict, *, data: str = "data/sudoku-extreme-1k-aug-1000",
                  vocab: int = 11, seq_len: int = 81, table_rows: int = 1, step: int = 26040,
                  seed: int = 0) -> tuple[Path, dict[str, torch.Tensor]]:
    """A reference checkpoint folder: step_<N> (a bare state dict, prefixed keys) and all_config.yaml."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in ref_layout(family, arch, vocab, seq_len, table_rows).items():
        t = torch.randn(shape, generator=gen) * 0.05
        bf16 = key in ("H_init", "L_init", "init_hidden") or "dwconv" in key
        state[key] = t.bfloat16() if bf16 else t  # bf16 buffers (and URM's conv), as the references keep them
    folder.mkdir(parents=True)
    prefixed = {PREFIX + k: v for k, v in state.items()}
    if family == "urm":  # URM: step_<N>.pt, a dict with the optimizer and RNG states beside the weights
        torch.save({"step": step, "model_state_dict": prefixed, "optimizer_states": [{"state": {}}],
                    "rng_state": torch.get_rng_state()}, folder / f"step_{step}.pt")
        (folder / "config.yaml").write_text(yaml.dump({**RUN, "arch": arch, "data_path": data, "ema": True}))
        return folder / f"step_{step}.pt", state
    torch.save(prefixed, folder / f"step_{step}")
    ref_cfg = {**RUN, "arch": arch, ("data_paths" if family == "trm" else "data_path"): [data] if family == "trm" else data,
               "ema": family == "trm", "ema_rate": 0.999}
    (folder / "all_config.yaml").write_text(yaml.dump(ref_cfg, sort_keys=True))
    return folder / f"step_{step}", state


def logits_of(model, seq_len: int, vocab: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    inputs = torch.randint(1, vocab, (2, seq_len), generator=gen)
    model.eval()
    with torch.no_grad():
        carry = model.reset_halted(model.initial_carry(inputs, inputs, torch.zeros(2, dtype=torch.long)))
        carry, out = model(carry)
        carry, out2 = model(carry)
    return torch.cat([out["logits"], out2["logits"]]), torch.stack([out2["q_halt"]])


def run_cli(*argv: str, capsys) -> tuple[int, str, str]:
    code = main(list(argv))
    got = capsys.readouterr()
    return code, got.out, got.err


@pytest.mark.parametrize("family,arch,params", [
    ("hrm", HRM_ARCH, 27275266),
    ("trm", TRM_ARCH, 6828034),
    ("trm", {**TRM_ARCH, "mlp_t": True}, 5028866),
    ("urm", URM_ARCH, 13662210),
], ids=["hrm", "trm-attention", "trm-mlp", "urm"])
def test_a_reference_checkpoint_imports_and_gives_the_same_logits(family, arch, params, tmp_path, capsys):
    weights, state = write_release(tmp_path / "release", family, arch)
    out = tmp_path / "ours"
    code, stdout, err = run_cli("import", family, str(tmp_path / "release"), "--out", str(out), capsys=capsys)
    assert code == 0, err
    said = json.loads(stdout)
    fmt = "urm-step-dict" if family == "urm" else "bare-state-dict"
    assert said["family"] == family and said["format"] == fmt and said["puzzle_table"] == "kept"

    manifest = read_manifest(str(out))
    import hashlib
    assert manifest["imported"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert manifest["step"] == 26040

    payload = load_checkpoint(out)
    cfg = from_dict(payload["config"])
    m = cfg.model
    assert (m.arch, m.H_cycles, m.L_cycles, m.hidden_size, m.halt_max_steps) == (
        family, arch["H_cycles"], arch["L_cycles"], arch["hidden_size"], arch.get("halt_max_steps", arch.get("loops")))
    assert m.L_layers == arch.get("L_layers", arch.get("num_layers"))
    if family == "urm":
        assert m.puzzle_positions == 1 and m.gradient_mode == "last_recursion"
    elif family == "trm":
        assert m.mixer == ("mlp" if arch["mlp_t"] else "attention") and m.puzzle_positions == 16
        assert cfg.train.ema == 0.999
    else:
        assert m.H_layers == arch["H_layers"] and m.puzzle_positions == 1

    imported = build_model(cfg, payload["task"])
    imported.load_state_dict(payload["model"])
    assert sum(p.numel() for p in imported.parameters()) == params  # the reference code's own count

    by_hand = build_model(cfg, payload["task"])
    by_hand.load_state_dict({ours_for(family, k): v.float() for k, v in state.items()})
    a_logits, a_q = logits_of(imported, 81, 11)
    b_logits, b_q = logits_of(by_hand, 81, 11)
    assert torch.equal(a_logits, b_logits) and torch.equal(a_q, b_q)
    assert a_logits.abs().sum() > 0


TINY = {**HRM_ARCH, "hidden_size": 64, "num_heads": 2, "H_layers": 1, "L_layers": 1, "puzzle_emb_ndim": 64}


def test_an_arc_puzzle_table_of_another_size_is_refused_unless_mean(tmp_path, capsys):
    release = tmp_path / "arc"
    write_release(release, "hrm", TINY, data="data/arc-aug-1000", vocab=12, seq_len=900, table_rows=500)
    ours = ["--config", "arc_agi_1", "--set", "data.num_aug=2"]  # 2398 identifiers
    code, _, err = run_cli("import", "hrm", str(release), "--out", str(tmp_path / "keep"), *ours, capsys=capsys)
    assert code == 2 and "500 rows" in err and "2398" in err and "--puzzle-table mean" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "keep").exists()

    code, stdout, err = run_cli("import", "hrm", str(release), "--out", str(tmp_path / "mean"), *ours,
                                "--puzzle-table", "mean", capsys=capsys)
    assert code == 0, err
    assert json.loads(stdout)["puzzle_table"] == "mean of 500 rows"
    table = load_checkpoint(tmp_path / "mean")["model"]["puzzle_emb.table"]
    want = torch.load(release / "step_26040", weights_only=True)[PREFIX + "puzzle_emb.weights"].mean(0)
    assert table.shape == (2398, 64) and torch.allclose(table, want.expand_as(table))


def test_an_imported_checkpoint_evaluates_and_starts_a_run(tmp_path, capsys):
    write_release(tmp_path / "release", "hrm", TINY)
    ckpt = tmp_path / "ours"
    quick = ["--set", "data.num_train=16", "--set", "data.num_test=8", "--set", "data.num_aug=0",
             "--set", f"data.root={tmp_path / 'data'}"]
    assert run_cli("import", "hrm", str(tmp_path / "release"), "--out", str(ckpt), *quick, capsys=capsys)[0] == 0
    code, stdout, err = run_cli("eval", "--checkpoint", str(ckpt), "--mmax", "2", "--limit", "8", capsys=capsys)
    assert code == 0, err
    assert 0.0 <= json.loads(stdout.strip().splitlines()[-1])["token_accuracy"] <= 1.0

    cfg = yaml.safe_load((ckpt / "config.yaml").read_text())
    cfg["train"].update(epochs=None, steps=2, eval_interval=2, global_batch_size=4, out_dir=str(tmp_path / "run"),
                        tensorboard=False)
    (tmp_path / "ft.yaml").write_text(yaml.dump(cfg))
    code, stdout, err = run_cli("train", "--config", str(tmp_path / "ft.yaml"), "--resume-from", str(ckpt),
                                capsys=capsys)
    assert code == 0, err
    assert "starting from the weights of" in stdout + err and json.loads(stdout.strip().splitlines()[-1])["step"] == 2


class Marker:
    """Unpickling this would create a file: a load that runs code from the file would show."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@pytest.mark.parametrize("case", ["unknown family", "not a state dict", "pickle needing code", "wrong family",
                                  "no config beside", "out not empty"])
def test_bad_input_gets_one_line_and_writes_nothing(case, tmp_path, capsys):
    release = tmp_path / "release"
    weights, _ = write_release(release, "hrm", TINY)
    out, family, want = tmp_path / "ours", "hrm", ""
    marker = tmp_path / "code-ran"
    if case == "unknown family":
        family, want = "urn", "invalid choice: 'urn'"
    elif case == "not a state dict":
        torch.save([1, 2, 3], weights)
        want = "not a state dict"
    elif case == "pickle needing code":
        weights.write_bytes(pickle.dumps({PREFIX + "H_init": Marker(str(marker))}))
        want = "weights_only"
    elif case == "wrong family":
        family, want = "trm", "a hrm checkpoint (by its keys), not trm: use `hrm import hrm`"
    elif case == "no config beside":
        (release / "all_config.yaml").unlink()
        want = "no all_config.yaml"
    else:
        out.mkdir()
        (out / "keep.txt").write_text("mine")
        want = "exists and is not empty"
    if case == "unknown family":
        with pytest.raises(SystemExit) as exc:
            main(["import", family, str(release), "--out", str(out)])
        code, err = exc.value.code, capsys.readouterr().err
    else:
        code, _, err = run_cli("import", family, str(release), "--out", str(out), capsys=capsys)
    assert code == 2 and want in err and len(err.strip().splitlines()) == 1, err
    assert not marker.exists()  # nothing from the file ran
    assert (not out.exists()) if case != "out not empty" else [p.name for p in out.iterdir()] == ["keep.txt"]
