"""The lm-evaluation-harness integration: the ``attractor-suite`` model, the local LAMBADA task, the CLI wrapper.

Every LM family (through ``LM_MODELS``) is built at a 2-layer tiny size with random weights on a small synthetic
corpus, saved as a checkpoint the way ``lm.trainer.train`` saves one, and scored through lm-eval's request
objects; the scores are checked against log-softmax of the model's own logits. Skipped without ``lm_eval``
(``pip install -e '.[eval]'``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import LM_WORDS, write_synthetic_works

lm_eval = pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance  # noqa: E402

from recursive_models.checkpoint import save_checkpoint  # noqa: E402
from recursive_models.lm import lambada_task  # noqa: E402
from recursive_models.lm.data import load_tokenizer, prepare_corpus  # noqa: E402
from recursive_models.lm.lm_eval_model import AttractorSuiteLM, LMEvalArgError  # noqa: E402
from recursive_models.lm.registry import LM_MODELS, build_lm  # noqa: E402

SEQ_LEN = 32
WORDS = LM_WORDS
OFFLINE = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A prepared folder of six synthetic 'works' (two held out), vocabulary 300."""
    root = tmp_path_factory.mktemp("lmevalcorpus")
    write_synthetic_works(root / "txt", 200)
    return prepare_corpus("files", paths=[root / "txt"], vocab_size=300, val_fraction=0.34,
                          cache_dir=root / "cache", progress=False)  # fmt: skip


def _save(model: torch.nn.Module, family: str, corpus: Path, run: Path) -> Path:
    """A checkpoint with the meta layout of ``lm.trainer.train`` (without its tokenizer copy)."""
    data = {"folder": str(corpus), "source": "files", "vocab_size": model.config.vocab_size}
    meta = {"kind": "lm", "model": model.config.to_dict(), "size": "tiny", "data": data, "seed": 0}
    return save_checkpoint(run, 0, model.state_dict(), meta)


@pytest.fixture(scope="module")
def checkpoints(corpus: Path, tmp_path_factory) -> dict[str, Path]:
    """One random-weight checkpoint per registered family (2 layers, seq_len 32).

    ``init="lecun"`` (random everywhere): the authors' scaled-zero init starts every block as the identity, so an
    untrained model would predict little more than a bigram of random embeddings, mostly byte tokens. Parcae is
    its ``diagonal`` variant: the authors' Parcae draws a fresh random initial state at every forward ("like-init",
    in evaluation too), so two calls never give the same logits and the exact comparisons below cannot hold.
    """
    torch.set_num_threads(1)
    out = {}
    for i, family in enumerate(sorted(LM_MODELS)):
        torch.manual_seed(i)
        extra = {"variant": "diagonal"} if family == "parcae" else {}
        model = build_lm(family, "tiny", vocab_size=300, seq_len=SEQ_LEN, n_layers=2, init="lecun", **extra)
        out[family] = _save(model, family, corpus, tmp_path_factory.mktemp(f"run-{family}"))
    return out


def _req(kind: str, *args) -> Instance:
    return Instance(request_type=kind, doc={}, arguments=tuple(args), idx=0)


def _logp(model, ids: list[int], iters=None) -> torch.Tensor:
    """log-softmax of the model's logits on one unpadded sequence: (T, V)."""
    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor([ids]), iters=iters)["logits"][0].float(), -1)


def _reference(lm: AttractorSuiteLM, context: str, continuation: str, iters=None) -> tuple[float, bool]:
    """The definition: encode together, split at the context's length, left-truncate, score the continuation."""
    tok = lm.tokenizer
    if context == "":
        ctx, cont = [lm.eot_id], tok.encode(continuation).ids
    else:
        n_ctx = len(tok.encode(context.rstrip()).ids)
        whole = tok.encode(context + continuation).ids
        ctx, cont = whole[:n_ctx], whole[n_ctx:]
    inp = (ctx + cont)[-(SEQ_LEN + 1) :][:-1]
    lp = _logp(lm.model, inp, iters)[len(inp) - len(cont) :]
    target = torch.tensor(cont)
    return float(lp.gather(-1, target[:, None]).sum()), bool((lp.argmax(-1) == target).all())


LONG = " ".join(WORDS * 3)  # about 50 tokens: more than SEQ_LEN


@pytest.mark.parametrize("family", sorted(LM_MODELS))
def test_loglikelihood_equals_logits(family: str, checkpoints) -> None:
    lm = AttractorSuiteLM(checkpoint=checkpoints[family], batch_size=3)
    pairs = [("", "The king"), ("The king and the", " queen"), ("Thou art ", "fair."), (LONG, " hath doth"),
             ("Speak", " thee"), ("The lord", "")]  # fmt: skip
    got = lm.loglikelihood([_req("loglikelihood", c, x) for c, x in pairs], disable_tqdm=True)
    for (c, x), (logp, greedy) in zip(pairs, got, strict=True):
        if x == "":
            assert (logp, greedy) == (0.0, True)
            continue
        ref_logp, ref_greedy = _reference(lm, c, x)
        assert logp == pytest.approx(ref_logp, rel=1e-5, abs=1e-4), (c, x)
        assert logp < 0 and greedy == ref_greedy
    # the model's own greedy token is scored as greedy: the first context whose argmax token survives a
    # decode/encode round trip (random weights often predict a lone byte of a UTF-8 character, which does not)
    for ctx in ("The king and the", "Thou art", "Speak", "The lord", "And", "My", "What", "O", "I will"):
        ids = lm.tokenizer.encode(ctx).ids
        best = int(_logp(lm.model, ids)[-1].argmax())
        word = lm.tokenizer.decode([best])
        if lm._encode_pair(ctx, word) == (ids, [best]):
            break
    else:
        pytest.fail(f"{family}: no context's greedy token round-trips through the tokenizer")
    assert lm.loglikelihood([_req("loglikelihood", ctx, word)], disable_tqdm=True)[0][1] is True


def test_trailing_space_moves_to_the_continuation(checkpoints) -> None:
    lm = AttractorSuiteLM(checkpoint=checkpoints["gpt"])
    a = lm.loglikelihood([_req("loglikelihood", "The king and the ", "queen")], disable_tqdm=True)
    b = lm.loglikelihood([_req("loglikelihood", "The king and the", " queen")], disable_tqdm=True)
    assert a == b
    assert lm._encode_pair("The king and the ", "queen")[1] == lm.tokenizer.encode(" queen").ids


@pytest.mark.parametrize("family", sorted(LM_MODELS))
def test_rolling_scores_every_token_once(family: str, checkpoints) -> None:
    lm = AttractorSuiteLM(checkpoint=checkpoints[family], batch_size=2)
    text = " ".join(WORDS * 7)
    toks = lm.tokenizer.encode(text).ids
    n = len(toks)
    assert n > 3 * SEQ_LEN
    # reference: blocks of SEQ_LEN predicted tokens; block [b0, e) is predicted by the SEQ_LEN tokens before e
    seq = [lm.eot_id, *toks]  # seq[k + 1] == toks[k]
    total, scored = 0.0, []
    for b0 in range(0, n, SEQ_LEN):
        e = min(b0 + SEQ_LEN, n)
        start = max(0, e - SEQ_LEN)
        lp = _logp(lm.model, seq[start:e])  # row j predicts seq[start + j + 1] == toks[start + j]
        for k in range(b0, e):
            total += float(lp[k - start, toks[k]])
            scored.append(k)
    assert scored == list(range(n))
    short = " ".join(WORDS[:5])
    short_ids = [lm.eot_id, *lm.tokenizer.encode(short).ids]
    short_ref = float(_logp(lm.model, short_ids[:-1]).gather(-1, torch.tensor(short_ids[1:])[:, None]).sum())
    got = lm.loglikelihood_rolling([_req("loglikelihood_rolling", text), _req("loglikelihood_rolling", short)],
                                   disable_tqdm=True)  # fmt: skip
    assert got[0] == pytest.approx(total, rel=1e-5)
    assert got[1] == pytest.approx(short_ref, rel=1e-5)


def _greedy(model, ids: list[int], steps: int, eot: int) -> list[int]:
    """Reference greedy decoding: ``steps`` argmax tokens, stopping after ``<|endoftext|>``."""
    out = []
    for _ in range(steps):
        out.append(int(_logp(model, (ids + out)[-SEQ_LEN:])[-1].argmax()))
        if out[-1] == eot:
            break
    return out


def test_generate_until_greedy_and_stops(checkpoints) -> None:
    # generation is family-agnostic (it only calls the model); GPT's random weights produce ASCII tokens, while
    # the random Attractor repeats one lone UTF-8 byte, which leaves no stop string to test with
    lm = AttractorSuiteLM(checkpoint=checkpoints["gpt"], batch_size=2)
    ctx = "The king and the queen"
    ids = lm.tokenizer.encode(ctx).ids
    ref = _greedy(lm.model, ids, 40, lm.eot_id)  # 40 steps: past seq_len, so the window slides
    free = lm.generate_until([_req("generate_until", ctx, {"until": ["@@never@@"], "max_gen_toks": 40})], True)[0]
    assert free == lm.tokenizer.decode([t for t in ref if t != lm.eot_id]) and free
    # a stop string: the first later generated token that decodes to printable ASCII (random weights make
    # byte tokens, some of them halves of UTF-8 characters; a model that repeats one of those has none)
    pieces = [lm.tokenizer.decode([t]) for t in ref[1:]]
    stop = next((p for p in pieces if p.isascii() and p.strip() and p.isprintable()), None)
    assert stop is not None, f"no ASCII token among {pieces}"
    reqs = [_req("generate_until", ctx, {"until": [stop], "max_gen_toks": 40}),
            _req("generate_until", ctx, {"until": "@@never@@", "max_gen_toks": 3, "do_sample": False}),
            _req("generate_until", "Thou", {"until": [stop], "max_gen_toks": 5})]  # fmt: skip
    stopped, short, other = lm.generate_until(reqs, disable_tqdm=True)
    assert stopped == free.split(stop)[0] and len(stopped) < len(free)
    assert short == lm.tokenizer.decode(ref[:3])
    assert stop not in other
    with pytest.raises(LMEvalArgError, match="greedily"):
        lm.generate_until([_req("generate_until", ctx, {"do_sample": True, "temperature": 0.7})])


@pytest.mark.parametrize("family", ["attractor", "parcae"])
def test_iters_reaches_the_model(family: str, checkpoints) -> None:
    req = [_req("loglikelihood", "The king and the", " queen doth speak")]
    lm0 = AttractorSuiteLM(checkpoint=checkpoints[family], iters=0)
    default = AttractorSuiteLM(checkpoint=checkpoints[family]).loglikelihood(req, True)[0][0]
    at0 = lm0.loglikelihood(req, True)[0][0]
    assert at0 == pytest.approx(_reference(lm0, "The king and the", " queen doth speak", iters=0)[0], rel=1e-5)
    assert abs(at0 - default) > 1e-3
    at2 = AttractorSuiteLM.create_from_arg_string(f"checkpoint={checkpoints[family]},iters=2").loglikelihood(req)
    assert at2[0][0] == pytest.approx(_reference(lm0, "The king and the", " queen doth speak", iters=2)[0], rel=1e-5)


def test_bad_model_args(checkpoints, tmp_path: Path) -> None:
    ck = checkpoints["gpt"]
    cases = [({"checkpoint": ck, "itres": 2}, "unknown model arg.*itres.*known: checkpoint"),
             ({}, "needs checkpoint="),
             ({"checkpoint": tmp_path / "nope"}, "does not exist"),
             ({"checkpoint": tmp_path}, "neither a checkpoint folder"),
             ({"checkpoint": ck, "iters": -1}, "iters must be an integer >= 0"),
             ({"checkpoint": ck, "iters": "many"}, "iters must be"),
             ({"checkpoint": ck, "batch_size": 0}, "batch_size must be a positive integer"),
             ({"checkpoint": ck, "batch_size": "auto"}, "batch_size must be a positive integer"),
             ({"checkpoint": ck, "device": "gpu0"}, "not a torch device"),
             ({"checkpoint": ck, "tokenizer": tmp_path / "none.json"}, "no such file")]  # fmt: skip
    for kwargs, message in cases:
        with pytest.raises(LMEvalArgError, match=message):
            AttractorSuiteLM(**kwargs)
    with pytest.raises(LMEvalArgError, match="iters must be"):
        AttractorSuiteLM.create_from_arg_string(f"checkpoint={ck},iters=-3")
    # the same errors come through lm-eval's own model lookup, which still knows its built-in models
    from lm_eval.api.registry import get_model

    with pytest.raises(LMEvalArgError, match="unknown model arg"):
        get_model("attractor-suite").create_from_arg_string(f"checkpoint={ck},T=3")
    assert get_model("dummy").__name__ == "DummyLM"
    if not torch.cuda.is_available():  # lm-eval's CLI passes device=cuda:0 by default; fall back as its HF model
        assert AttractorSuiteLM(checkpoint=ck, device="cuda:0").device == torch.device("cpu")


def test_tokenizer_lookup(corpus: Path, checkpoints, tmp_path: Path) -> None:
    ck = shutil.copytree(checkpoints["gpt"], tmp_path / "ck")
    meta = json.loads((ck / "meta.json").read_text())
    meta["data"]["folder"] = str(tmp_path / "moved-away")
    (ck / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(LMEvalArgError, match="pass tokenizer=PATH"):
        AttractorSuiteLM(checkpoint=ck)
    assert AttractorSuiteLM(checkpoint=ck, tokenizer=corpus).tokenizer_source == str(corpus)
    shutil.copy(corpus / "tokenizer.json", ck / "tokenizer.json")  # what lm.trainer.train writes
    lm = AttractorSuiteLM(checkpoint=ck)
    assert lm.tokenizer_source == str(ck / "tokenizer.json")
    assert lm.tok_encode("The king") == load_tokenizer(corpus).encode("The king").ids


def test_trainer_checkpoint_is_self_contained(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_module

    from recursive_models.lm.config import register_lm_configs
    from recursive_models.lm.trainer import train

    root = tmp_path / "txt"
    root.mkdir()
    for i in range(3):
        (root / f"w{i}.txt").write_text("\n".join(" ".join(WORDS[i:] + WORDS[:i]) for _ in range(40)) + "\n")
    register_lm_configs()
    with initialize_config_module("recursive_models.lm.conf", version_base="1.3"):
        cfg = compose("config", overrides=[
            "model=gpt", "+model.overrides.n_layers=1", "data.source=files", f"data.paths=[{root}]",
            "data.vocab_size=280", "data.val_fraction=0.34", f"data.cache_dir={tmp_path / 'cache'}",
            f"trainer.out_dir={tmp_path / 'run'}", "trainer.steps=2", "trainer.batch_size=2", "trainer.seq_len=16",
            "trainer.eval_batches=1", "trainer.eval_batch_size=2", "trainer.progress=false", "trainer.threads=1",
            "trainer.device=cpu"])  # fmt: skip
    ckpt = Path(train(cfg)["checkpoint"])
    shutil.rmtree(tmp_path / "cache")  # the corpus is gone; the checkpoint still scores
    lm = AttractorSuiteLM(checkpoint=tmp_path / "run")
    assert lm.tokenizer_source == str(ckpt / "tokenizer.json")
    assert np.isfinite(lm.loglikelihood([_req("loglikelihood", "The king", " queen")], True)[0][0])


# ------------------------------------------------------------------------------------------ local task


def test_lambada_builder_is_deterministic(corpus: Path, tmp_path: Path) -> None:
    a = lambada_task.write_task(corpus, tmp_path / "a", count=20, seed=3)
    b = lambada_task.write_task(corpus, tmp_path / "b", count=20, seed=3)
    c = lambada_task.write_task(corpus, tmp_path / "c", count=20, seed=4)
    assert a["sha256"] == b["sha256"] != c["sha256"] and a["examples"] == 20
    docs = lambada_task.validation_documents(corpus)
    rows = [json.loads(ln) for ln in Path(a["jsonl"]).read_text().splitlines()]
    assert [(r["doc"], r["line"]) for r in rows] == sorted((r["doc"], r["line"]) for r in rows)
    for r in rows:
        context, _, word = r["text"].rpartition(" ")
        assert word == r["target"] and word.isalpha() and len(word) >= 3
        line = docs[r["doc"]].split("\n")[r["line"]]
        assert line.rstrip(".").endswith(" " + word) and context.split("\n")[-1] in line
    everything = lambada_task.write_task(corpus, tmp_path / "d", count=10**6)
    assert everything["examples"] > 20
    assert lambada_task.passage_end("ACT I.", 4, 3) is None
    assert lambada_task.passage_end("[Exit the king.]", 1, 3) is None
    assert lambada_task.passage_end("Thou art the fair queen!", 4, 3) == ("Thou art the fair", "queen")
    with pytest.raises(lambada_task.LambadaTaskError, match="count >= 1"):
        lambada_task.write_task(corpus, tmp_path / "e", count=0)
    assert lambada_task.main(["--corpus", str(tmp_path / "missing"), "--out", str(tmp_path / "f")]) == 2


def test_simple_evaluate_on_local_task(corpus: Path, checkpoints, tmp_path: Path, monkeypatch) -> None:
    for k, v in OFFLINE.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    task = lambada_task.write_task(corpus, tmp_path / "task", count=30)
    from lm_eval.tasks import TaskManager

    out = lm_eval.simple_evaluate(model="attractor-suite", model_args=f"checkpoint={checkpoints['attractor']},iters=0",
                                  tasks=["shakespeare_lambada"], limit=6, batch_size=4, bootstrap_iters=0,
                                  task_manager=TaskManager(include_path=str(tmp_path / "task"),
                                                           include_defaults=False))  # fmt: skip
    res = out["results"]["shakespeare_lambada"]
    assert 0.0 <= res["acc,none"] <= 1.0 and np.isfinite(res["perplexity,none"]) and res["perplexity,none"] > 1
    assert out["n-samples"]["shakespeare_lambada"]["effective"] == 6
    assert out["configs"]["shakespeare_lambada"]["metadata"]["sha256"] == task["sha256"]
    # perplexity is exp(-mean log p(target)) over the scored examples, as lambada's
    rows = [json.loads(ln) for ln in Path(task["jsonl"]).read_text().splitlines()][:6]
    lm = AttractorSuiteLM(checkpoint=checkpoints["attractor"], iters=0)
    lls = [_reference(lm, r["text"].rpartition(" ")[0], " " + r["target"], iters=0)[0] for r in rows]
    assert res["perplexity,none"] == pytest.approx(float(np.exp(-np.mean(lls))), rel=1e-4)


@pytest.mark.slow  # ~30 s per command: lm-eval's CLI indexes all of its built-in tasks first
def test_cli_wrapper(corpus: Path, checkpoints, tmp_path: Path) -> None:
    lambada_task.write_task(corpus, tmp_path / "task", count=10)
    env = {**os.environ, **OFFLINE, "HF_DATASETS_CACHE": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "recursive_models.lm.eval_harness", "--model", "attractor-suite",
            "--include_path", str(tmp_path / "task"), "--tasks", "shakespeare_lambada", "--limit", "3"]  # fmt: skip
    run = subprocess.run([*base, "--model_args", f"checkpoint={checkpoints['gpt']}", "--output_path",
                          str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=240)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    (result,) = (tmp_path / "out").rglob("results_*.json")
    res = json.loads(result.read_text())["results"]["shakespeare_lambada"]
    assert 0.0 <= res["acc,none"] <= 1.0
    bad = subprocess.run([*base, "--model_args", f"checkpoint={checkpoints['gpt']},iters=-1"], capture_output=True,
                         text=True, env=env, timeout=240)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: iters must be")


def test_benchmark_script_resumes(corpus: Path, checkpoints, tmp_path: Path, monkeypatch) -> None:
    import importlib.util

    for k, v in OFFLINE.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    path = Path(__file__).parents[1] / "benchmarks" / "lm_eval_lambada.py"
    spec = importlib.util.spec_from_file_location("lm_eval_lambada", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "r.json"
    argv = ["--checkpoints", str(checkpoints["gpt"]), str(checkpoints["attractor"]), "--task-dir",
            str(tmp_path / "task"), "--corpus", str(corpus), "--out", str(out), "--limit", "3",
            "--bootstrap-iters", "0", "--iters", "0", "default"]  # fmt: skip
    assert bench.main(argv) == 0
    first = json.loads(out.read_text())
    assert sorted(first["runs"]) == sorted(
        [f"{checkpoints['gpt']}|T=default", f"{checkpoints['attractor']}|T=0", f"{checkpoints['attractor']}|T=default"]
    )  # GPT has no recurrence: scored once
    for r in first["runs"].values():
        assert 0.0 <= r["acc"] <= 1.0 and r["perplexity"] > 1 and r["examples"] == 3
    assert first["reportable"] is False and first["task"]["sha256"] and first["commit"] == bench.git_commit()
    assert bench.main([*argv[:-2], "0", "2", "default"]) == 0  # only T=2 is new
    second = json.loads(out.read_text())
    assert set(second["runs"]) - set(first["runs"]) == {f"{checkpoints['attractor']}|T=2"}
    assert all(second["runs"][k] == v for k, v in first["runs"].items())
    assert all(r["commit"] == bench.git_commit() for r in second["runs"].values())  # each result names its code
    with pytest.raises(SystemExit, match="--iters takes"):
        bench.main([*argv[:-2], "-1"])
    # LABEL=PATH names a run (two runs of one family); a study's checkpoint that is gone is skipped, not fatal
    study = tmp_path / "study"
    (study / "runs").mkdir(parents=True)
    (study / "runs" / "gone-s0.json").write_text(json.dumps({"checkpoint": str(tmp_path / "gone"), "label": "gone"}))
    third = tmp_path / "r3.json"
    assert bench.main(["--checkpoints", f"mine={checkpoints['gpt']}", "--from-compare", str(study), *argv[3:7],
                       "--out", str(third), "--limit", "3", "--bootstrap-iters", "0"]) == 0  # fmt: skip
    (run,) = json.loads(third.read_text())["runs"].values()
    assert run["label"] == "mine" and run["family"] == "gpt"
