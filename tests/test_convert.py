"""Tests of `recursive_models.convert` (reference TRM/HRM checkpoints -> ours) and of fidelity to the references.

Run: ``python -m pytest tests/test_convert.py -q``. The tests against the reference code run when checkouts are
given, and skip otherwise::

    git clone https://github.com/SamsungSAILMontreal/TinyRecursiveModels /tmp/refs/TRM
    git clone https://github.com/sapientinc/HRM /tmp/refs/HRM
    export ATTRACTOR_REFERENCE_TRM=/tmp/refs/TRM ATTRACTOR_REFERENCE_HRM=/tmp/refs/HRM
    python -m pytest tests/test_convert.py -q

They build the reference model with its own code and random weights (small config, CPU, fp32; HRM's flash-attn
call goes to an SDPA stand-in, see `recursive_models.reference`), save it as their ``pretrain.py`` does (the
``_orig_mod.model.inner.`` names of ``torch.compile(ACTLossHead(model)).state_dict()``, plus ``all_config.yaml``),
convert it with the CLI and check that logits, Q logits, halting decisions, Q targets and gradients equal ours
within 1e-4 over several supervision steps (eval and training mode, the carry going through their ACT wrapper
and ours). Their shipped arch configs (``trm.yaml``, with ``mlp_t``, ``hrm_v1.yaml``) must convert to exactly our
``trm 7m`` / ``hrm 27m`` size builders on Sudoku-Extreme. Verified against
SamsungSAILMontreal/TinyRecursiveModels e7b68717f0a6c4cbb4ce6fbef787b14f42083bd9 (2025-10-08) and
sapientinc/HRM 42410daaaf6ac8b266536d105a6e2362ffe40929 (2025-09-09): the outputs are bitwise equal.

The other tests need no reference: a synthetic reference state dict (our model under the reference's tensor
names, whose spelling is pinned by hand below) converts back exactly, bad checkpoints fail naming the problem,
and the CLI exits 2 with ``error: ...``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from recursive_models import build_model, load_checkpoint
from recursive_models.convert import (
    REFERENCE_ARCHS,
    ConversionError,
    convert_state,
    key_map,
    main,
    reference_arch,
    to_reference_state_dict,
)
from recursive_models.layers import Block, InputEncoder, rms_norm
from recursive_models.losses import act_loss

REF_ROOTS = {  # TRM_REFERENCE is what tests/test_reference_loader.py reads
    "trm": os.environ.get("ATTRACTOR_REFERENCE_TRM") or os.environ.get("TRM_REFERENCE"),
    "hrm": os.environ.get("ATTRACTOR_REFERENCE_HRM"),
}
B = 4  # batch (the reference's sparse puzzle embedding is sized for exactly this batch in training)


def _config(name: str, **kw):
    # The tiny sizes on 6x6 Sudoku (vocab 8, 36 cells); three puzzle identifiers so the embedding is indexed.
    return build_model(name, "tiny", task="sudoku6", num_puzzle_identifiers=3, **kw).config


def _batches(n: int, seed: int = 1) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "inputs": torch.randint(0, 8, (B, 36), generator=g),
            "labels": torch.randint(1, 8, (B, 36), generator=g),
            "puzzle_identifiers": torch.randint(0, 3, (B,), generator=g),
        }
        for _ in range(n)
    ]


def _write_run(folder: Path, state: dict, arch: dict, step: int = 120) -> Path:
    """A reference run folder: ``step_N`` (torch.save of the state dict) and ``all_config.yaml``."""
    folder.mkdir(parents=True, exist_ok=True)
    ckpt = folder / f"step_{step}"
    torch.save(state, ckpt)
    run = {
        "arch": {**arch, "loss": {"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"}},
        "data_paths": [str(folder / "no-such-dataset")],
        "global_batch_size": B,
        "lr": 1e-4,
    }
    (folder / "all_config.yaml").write_text(yaml.dump(run))
    return ckpt


def _random_model(name: str, seed: int = 0, **kw):
    torch.manual_seed(seed)
    model = build_model(name, "tiny", task="sudoku6", num_puzzle_identifiers=3, **kw)
    with torch.no_grad():
        for p in model.parameters():  # the Q head and puzzle embedding start constant; make every tensor informative
            p.normal_(0, 0.2)
    return model


# ---- the reference's tensor names, written out from their model code -------------------------------------
def test_reference_tensor_names_are_spelled_as_theirs() -> None:
    # TRM: TinyRecursiveReasoningModel_ACTV1_Inner (CastedEmbedding.embedding_weight, CastedSparseEmbedding.weights,
    # CastedLinear weight/bias, H_init/L_init buffers, L_level.layers.i.{self_attn,mlp}); learned positions.
    trm = build_model("trm", "tiny", task="sudoku6", layers=1, pos_encodings="learned")
    got = set(to_reference_state_dict(trm))
    p = "_orig_mod.model.inner."
    assert got == {
        p + k
        for k in (
            "H_init",
            "L_init",
            "embed_tokens.embedding_weight",
            "lm_head.weight",
            "q_head.weight",
            "q_head.bias",
            "puzzle_emb.weights",
            "embed_pos.embedding_weight",
            "L_level.layers.0.self_attn.qkv_proj.weight",
            "L_level.layers.0.self_attn.o_proj.weight",
            "L_level.layers.0.mlp.gate_up_proj.weight",
            "L_level.layers.0.mlp.down_proj.weight",
        )
    }
    # TRM's MLP-T block and HRM's two modules.
    mlp = build_model("trm", "tiny", task="sudoku6", layers=1, mixer="mlp")
    assert "L_level.layers.0.mlp_t.gate_up_proj.weight" in key_map("trm", mlp.config)
    assert "L_level.layers.0.mlp_t.down_proj.weight" in key_map("trm", mlp.config)
    hrm = build_model("hrm", "tiny", task="sudoku6")
    names = key_map("hrm", hrm.config)
    assert names["H_level.layers.0.self_attn.qkv_proj.weight"] == "h_module.blocks.0.mixer.qkv.weight"
    assert names["L_level.layers.0.mlp.down_proj.weight"] == "l_module.blocks.0.mlp.down.weight"
    assert names["H_init"] == "zh_init" and key_map("trm", trm.config)["H_init"] == "y_init"


# ---- synthetic round trips ----------------------------------------------------------------------------------
CASES = {
    "trm": ("trm", {}),
    "trm-mlp_t": ("trm", {"mixer": "mlp", "pos_encodings": "none", "puzzle_emb_len": 16, "puzzle_emb_ndim": 64}),
    "trm-learned": ("trm", {"pos_encodings": "learned"}),
    "hrm": ("hrm", {}),
    "hrm-learned": ("hrm", {"pos_encodings": "learned"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_synthetic_reference_checkpoint_round_trips(case: str, tmp_path: Path) -> None:
    name, kw = CASES[case]
    model = _random_model(name, **kw)
    arch = reference_arch(model.config, forward_dtype="bfloat16")
    for i, prefix in enumerate(("_orig_mod.model.inner.", "model.inner.", "")):
        state = to_reference_state_dict(model, prefix)
        # The reference keeps its initial states in forward_dtype (bf16 here): the up-cast must be exact.
        state[prefix + "H_init"] = state[prefix + "H_init"].bfloat16()
        ckpt = _write_run(tmp_path / f"run{i}", state, arch)
        out = tmp_path / f"out{i}"
        assert main(["--from", name, str(ckpt), str(out), "--seq-len", "36"]) == 0
        back, meta = load_checkpoint(out)
        assert back.config == model.config.__class__(**{**model.config.__dict__, "size": "converted"})
        expect = model.state_dict()
        init = "y_init" if name == "trm" else "zh_init"
        expect[init] = expect[init].bfloat16().float()
        got = back.state_dict()
        assert set(got) == set(expect)
        assert all(torch.equal(got[k], expect[k]) for k in expect)
        assert meta["step"] == 120 and meta["task"]["name"] == "sudoku6"
        assert meta["converted_from"]["state_dict_prefix"] == prefix


def test_sequence_length_from_the_runs_dataset_folder(tmp_path: Path, capsys) -> None:
    # HRM's config names its dataset `data_path`; when that folder is here, its dataset.json gives the length
    # and is checked against the weights.
    model = _random_model("hrm")
    data = tmp_path / "data"
    (data / "test").mkdir(parents=True)
    meta = {"seq_len": 36, "vocab_size": 8, "num_puzzle_identifiers": 3}
    (data / "test" / "dataset.json").write_text(json.dumps(meta))
    ckpt = tmp_path / "step_9"
    torch.save(to_reference_state_dict(model), ckpt)
    arch = {
        **reference_arch(model.config),
        "loss": {"name": "losses@ACTLossHead", "loss_type": "softmax_cross_entropy"},
    }
    (tmp_path / "all_config.yaml").write_text(yaml.dump({"arch": arch, "data_path": str(data)}))
    assert main(["--from", "hrm", str(ckpt), str(tmp_path / "out")]) == 0
    back, meta_out = load_checkpoint(tmp_path / "out")
    assert back.config.seq_len == 36 and meta_out["task"]["data_dir"] == str(data)
    assert meta_out["config"]["model"]["loss_type"] == "softmax"
    (data / "test" / "dataset.json").write_text(json.dumps({**meta, "vocab_size": 9}))
    assert main(["--from", "hrm", str(ckpt), str(tmp_path / "out2")]) == 2
    assert "dataset.json has vocab_size=9, the checkpoint 8" in capsys.readouterr().err


def test_converted_checkpoint_is_accepted_by_the_leaderboard(tmp_path: Path, capsys) -> None:
    from leaderboard.validate import open_submission

    model = _random_model("trm", h_cycles=1, l_cycles=2)  # small: only the plumbing is under test
    arch = reference_arch(model.config)
    ckpt = tmp_path / "step_5"
    torch.save(to_reference_state_dict(model), ckpt)
    out = tmp_path / "converted"
    sets = [f"--set={k}={v}" for k, v in arch.items() if k not in ("name", "puzzle_emb_ndim")]
    assert main(["--from", "trm", str(ckpt), str(out), "--task", "sudoku6", *sets]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model"] == "trm" and summary["seq_len"] == 36 and summary["task"] == "sudoku6"
    sub = open_submission(out)
    net = sub.build()
    batch = _batches(1)[0]
    model.eval()
    _, a = model(model.initial_carry(batch), batch)
    _, b = net(net.initial_carry(batch), batch)
    assert torch.equal(a["logits"], b["logits"])


# ---- bad checkpoints ----------------------------------------------------------------------------------------
class _NotATensor:
    pass


def _bad(kind: str, tmp_path: Path):
    """A valid TRM reference run, then one edit; returns the CLI's exit code and stderr."""
    model = _random_model("trm")
    state = to_reference_state_dict(model)
    arch = reference_arch(model.config)
    args: list[str] = []
    p = "_orig_mod.model.inner."
    if kind == "missing":
        del state[p + "q_head.bias"]
    elif kind == "shape":
        state[p + "lm_head.weight"] = state[p + "lm_head.weight"][:5]
    elif kind == "unexpected":
        state[p + "L_level.layers.0.extra.weight"] = torch.zeros(3)
    elif kind == "stray":
        state["optimizer.step"] = torch.zeros(())
    elif kind == "nan":
        state[p + "q_head.weight"][0, 0] = float("nan")
    elif kind == "unknown-option":
        arch["rope_scaling"] = 2
    elif kind == "unsupported-option":
        arch["rope_theta"] = 5000.0
    elif kind == "unsupported-arch":
        arch["name"] = "recursive_reasoning.trm_singlez@TinyRecursiveReasoningModel_ACTV1"
    elif kind == "wrong-from":
        args = ["--from", "hrm"]
    elif kind == "layers":
        arch["L_layers"] = 3
    elif kind == "set":
        args = ["--set", "H_cycles"]
    out = tmp_path / "out"
    if kind == "exists":
        out.mkdir()
    ckpt = _write_run(tmp_path / "run", state, arch)
    if kind == "no-config":
        (tmp_path / "run" / "all_config.yaml").unlink()
    if kind == "pickle":
        torch.save({"x": _NotATensor()}, ckpt)
    if kind == "not-a-state-dict":
        torch.save([torch.zeros(1)], ckpt)
    length = [] if kind == "no-length" else ["--seq-len", "35" if kind == "length-disagrees" else "36"]
    if kind == "length-disagrees":
        length += ["--task", "sudoku6"]
    return main(["--from", "trm", str(ckpt), str(out), *length, *args])


BAD = {
    "missing": "_orig_mod.model.inner.q_head.bias",
    "shape": "'_orig_mod.model.inner.lm_head.weight' has shape [5, 64]",
    "unexpected": "L_level.layers.0.extra.weight",
    "stray": "optimizer.step",
    "nan": "non-finite",
    "unknown-option": "unknown TRM option(s) ['rope_scaling']",
    "unsupported-option": "unsupported option rope_theta=5000.0",
    "unsupported-arch": "unsupported reference architecture",
    "wrong-from": "use --from trm",
    "layers": "L_layers=3 in the config, but the checkpoint has 2",
    "set": "--set expects KEY=VALUE",
    "exists": "pass --force",
    "no-config": "missing TRM option(s) ['H_cycles', 'L_cycles', 'expansion',",
    "no-length": "pass --seq-len N or --task NAME",
    "length-disagrees": "disagree",
    "pickle": "weights_only=True",
    "not-a-state-dict": "expected a state dict",
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_checkpoint_names_the_problem(kind: str, tmp_path: Path, capsys) -> None:
    assert _bad(kind, tmp_path) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and BAD[kind] in err, err
    assert "Traceback" not in err
    assert sorted(q.name for q in tmp_path.iterdir()) == (["out", "run"] if kind == "exists" else ["run"])


def test_convert_state_raises_conversion_error() -> None:
    with pytest.raises(ConversionError, match=r"embed_tokens\.embedding_weight"):
        convert_state("trm", {"lm_head.weight": torch.zeros(2, 2)}, {})


def test_cli_process_exit_codes(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "recursive_models.convert",
        "--from",
        "trm",
        str(tmp_path / "nope"),
        str(tmp_path / "out"),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: no such checkpoint file"), r.stderr
    r = subprocess.run(cmd[:3] + cmd[5:], capture_output=True, text=True, timeout=120)  # no --from
    assert r.returncode == 2 and "error: the following arguments are required: --from" in r.stderr


# ---- fidelity details that the conversion relies on -----------------------------------------------------------
def test_mlp_t_post_norm_runs_over_the_sequence_axis() -> None:
    torch.manual_seed(0)
    block = Block(16, 2, 2.0, mixer="mlp", seq_positions=12)
    x = torch.randn(3, 12, 16)
    xt = x.transpose(1, 2)  # TRM: rms_norm(h^T + mlp_t(h^T)) on (B, D, S), then transpose back
    h = rms_norm(xt + block.mixer.mlp(xt)).transpose(1, 2)
    want = rms_norm(h + block.mlp(h))
    assert torch.allclose(block(x), want, atol=1e-6)


def test_narrow_puzzle_embedding_is_zero_padded() -> None:
    enc = InputEncoder(8, 4, 6, num_puzzle_identifiers=2, puzzle_emb_len=3, puzzle_emb_ndim=5, pos_encodings="none")
    assert enc.puzzle_emb.weight.shape == (2, 5)
    with torch.no_grad():
        enc.puzzle_emb.weight.fill_(1.0)
    x = enc(torch.zeros(1, 4, dtype=torch.long), torch.tensor([1]))  # (1, 3 + 4, 6)
    pe = x[0, :3].flatten() / enc.scale
    assert torch.equal(pe[:5], torch.ones(5)) and torch.equal(pe[5:], torch.zeros(13))
    with pytest.raises(ValueError, match="puzzle_emb_ndim=19"):
        InputEncoder(8, 4, 6, puzzle_emb_len=3, puzzle_emb_ndim=19)


# ---- against the reference code -------------------------------------------------------------------------------
REF_CASES = {
    "trm": ("trm", "trm", REFERENCE_ARCHS["trm"][0], {}),
    "trm-mlp_t": (
        "trm",
        "trm",
        REFERENCE_ARCHS["trm"][0],
        {"mixer": "mlp", "pos_encodings": "none", "puzzle_emb_len": 16, "puzzle_emb_ndim": 64},
    ),
    "trm-learned-puzzle16": (
        "trm",
        "trm",
        REFERENCE_ARCHS["trm"][0],
        {"pos_encodings": "learned", "puzzle_emb_len": 16, "puzzle_emb_ndim": 64},
    ),
    "hrm": ("hrm", "hrm", REFERENCE_ARCHS["hrm"][0], {}),
    "hrm-learned": ("hrm", "hrm", REFERENCE_ARCHS["hrm"][0], {"pos_encodings": "learned"}),
    "hrm-copy-in-trm-repo": ("hrm", "trm", REFERENCE_ARCHS["hrm"][1], {}),
}


def _reference_or_skip(repo: str, arch: str):
    root = REF_ROOTS[repo]
    if not root or not Path(root, "models").is_dir():
        pytest.skip(f"set ATTRACTOR_REFERENCE_{repo.upper()} to a checkout of the reference {repo.upper()} code")
    pytest.importorskip("pydantic", reason="the reference configs need pydantic")
    from recursive_models.reference import load_reference

    return load_reference(root, arch)


def _max_diff(a: dict, b: dict, keys: tuple[str, ...]) -> float:
    return max((a[k].float() - b[k].float()).abs().max().item() for k in keys)


@pytest.mark.parametrize("case", sorted(REF_CASES))
def test_matches_reference(case: str, tmp_path: Path) -> None:
    from recursive_models.reference import build_reference_model

    name, repo, arch_name, kw = REF_CASES[case]
    ref = _reference_or_skip(repo, arch_name)
    config = _config(name, **kw)
    torch.manual_seed(0)
    act = build_reference_model(ref, config, batch_size=B)  # their init
    with torch.no_grad():  # their Q head starts at (0, -5) and the puzzle embedding at 0: make them informative
        act.inner.q_head.weight.normal_(0, 0.3)
        act.inner.q_head.bias.normal_()
        act.inner.puzzle_emb.weights.normal_()
    head = ref.loss_head_cls(act, loss_type="stablemax_cross_entropy")
    arch = {**reference_arch(config), "name": arch_name}
    # pretrain.py saves torch.compile(head).state_dict(): the compiled wrapper holds the head as `_orig_mod`
    # (spelled out here rather than importing the compiler stack for a name).
    state = {"_orig_mod." + k: v for k, v in head.state_dict().items()}
    ckpt = _write_run(tmp_path / "run", state, arch)
    assert main(["--from", name, str(ckpt), str(tmp_path / "out"), "--task", "sudoku6"]) == 0
    ours, _ = load_checkpoint(tmp_path / "out")
    keys = ("logits", "q_halt_logits", "q_continue_logits")

    # Evaluation: every slot runs halt_max_steps steps.
    batch = _batches(1)[0]
    act.eval()
    ours.eval()
    rc, oc = act.initial_carry(batch), ours.initial_carry(batch)
    for _ in range(config.halt_max_steps):
        with torch.no_grad():
            rc, r = act(rc, batch)
            oc, o = ours(oc, batch)
        assert _max_diff(r, o, keys) <= 1e-4
        assert torch.equal(rc.halted, oc.halted) and torch.equal(rc.steps, oc.steps)
    assert oc.halted.all()

    # Training: a new batch each step (halted slots load it), exploration drawn from the same seed, Q targets
    # (HRM) and the gradients of one optimiser step.
    act.train()
    ours.train()
    batches = _batches(6, seed=2)
    rc, oc = head.initial_carry(batches[0]), ours.initial_carry(batches[0])
    for k, batch in enumerate(batches):
        act.zero_grad(set_to_none=True)
        act.inner.puzzle_emb.local_weights.grad = None  # a buffer: their sparse optimiser's zero_grad clears it
        ours.zero_grad(set_to_none=True)
        torch.manual_seed(100 + k)
        rc, r_loss, _, r, _ = head(carry=rc, batch=batch, return_keys=[*keys, "target_q_continue"])
        ((1 / B) * r_loss).backward()
        torch.manual_seed(100 + k)
        oc, o = ours(oc, batch)
        o_loss, _ = act_loss(o, oc.data["labels"], oc.halted)
        o_loss.backward()
        assert _max_diff(r, o, keys) <= 1e-4, k
        assert torch.equal(rc.halted, oc.halted) and torch.equal(rc.steps, oc.steps), k
        assert ("target_q_continue" in r) == ("target_q_continue" in o) == (name == "hrm")
        if name == "hrm":
            assert _max_diff(r, o, ("target_q_continue",)) <= 1e-4
        assert abs(r_loss.item() / B - o_loss.item()) <= 1e-5
        theirs = dict(act.inner.named_parameters())
        mine = dict(ours.named_parameters())
        for ref_name, our_name in key_map(name, ours.config).items():
            if ref_name == "puzzle_emb.weights":  # their sparse embedding's gradient sits on the batch's rows
                pe = act.inner.puzzle_emb
                g = torch.zeros_like(pe.weights).index_add_(0, pe.local_ids.long(), pe.local_weights.grad)
            elif ref_name in theirs:
                g = theirs[ref_name].grad
            else:  # buffers (initial states)
                assert mine.get(our_name) is None
                continue
            assert (g - mine[our_name].grad).abs().max().item() <= 1e-4, (k, ref_name)


SHIPPED = {  # the reference's shipped arch configs and the size builder that must equal them
    "trm.yaml": ("trm", "trm", "7m", {}),
    "trm.yaml mlp_t": ("trm", "trm", "7m", {"mixer": "mlp", "pos_encodings": "none"}),  # their Sudoku command
    "hrm_v1.yaml": ("hrm", "hrm", "27m", {}),
}


@pytest.mark.parametrize("case", sorted(SHIPPED))
def test_reference_arch_configs_equal_our_sizes(case: str, tmp_path: Path) -> None:
    # Their arch YAML as pretrain.py resolves it, their model built from it (bf16 forward_dtype, as they train),
    # converted: the architecture must be our size builder's on Sudoku-Extreme.
    name, repo, size, overrides = SHIPPED[case]
    arch_name = REFERENCE_ARCHS[name][0]
    ref = _reference_or_skip(repo, arch_name)
    arch = yaml.safe_load((ref.root / "config" / "arch" / case.split()[0]).read_text())
    arch = {k: (arch["hidden_size"] if v == "${.hidden_size}" else v) for k, v in arch.items()}
    if "mlp_t" in case:
        arch.update(mlp_t=True, pos_encodings="none")
    assert arch.pop("name") == arch_name
    data = {"batch_size": 2, "seq_len": 81, "vocab_size": 11, "num_puzzle_identifiers": 1, "causal": False}
    torch.manual_seed(0)
    model = ref.model_cls({**{k: v for k, v in arch.items() if k != "loss"}, **data})
    state = {"_orig_mod.model." + k: v for k, v in model.state_dict().items()}
    ckpt = _write_run(tmp_path / "run", state, {**arch, "name": arch_name})
    assert main(["--from", name, str(ckpt), str(tmp_path / "out"), "--task", "sudoku-extreme"]) == 0
    ours, meta = load_checkpoint(tmp_path / "out")
    want = build_model(name, size, "sudoku-extreme", **overrides).config
    assert ours.config == want.__class__(**{**want.__dict__, "size": "converted"})
    assert meta["converted_from"]["source_dtypes"]["bfloat16"] == 2  # H_init, L_init in their forward_dtype
    init = "y_init" if name == "trm" else "zh_init"
    assert torch.equal(ours.state_dict()[init], model.inner.H_init.float())
