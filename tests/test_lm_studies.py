"""The seeded LM studies end to end at toy size: ``benchmarks/lm_compare.py`` and ``benchmarks/lm_ablations.py``.

Slow tier (``python -m pytest -m slow tests/test_lm_studies.py``): each study trains a few 2-step runs on a
synthetic corpus in a subprocess, as a user runs them, then checks the per-run files, the mean ± std summary,
that a rerun skips finished runs, that every invocation is named in ``study.json``, and that a folder of another
study (another size) is refused. The shared loop itself (``benchmarks/seeded_study.py``) is tested in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_synthetic_works

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import lm_eval_lambada  # noqa: E402
import seeded_study  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_synthetic_works(tmp_path_factory.mktemp("studycorpus"), 200)


def _toy(corpus: Path, cache: Path) -> list[str]:
    return ["data.source=files", f"data.paths=[{corpus}]", "data.vocab_size=300", "data.val_fraction=0.34",
            f"data.cache_dir={cache}", "trainer.batch_size=2", "trainer.seq_len=16", "trainer.eval_batch_size=2",
            "trainer.eval_batches=1", "trainer.log_interval=1", "trainer.threads=1"]  # fmt: skip


def _run(script: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=900)  # fmt: skip
    assert (r.returncode == 0) == ok, r.stderr[-3000:]
    return r


def test_seeded_loop_resumes_and_records_commands(tmp_path: Path) -> None:
    calls = []

    def run(key: str, seed: int) -> dict:
        calls.append((key, seed))
        return {"key": key, "seed": seed, "value": float(seed)}

    seeded_study.open_study(tmp_path, "s.py", ["--seeds", "0"], size="tiny")
    seeded_study.run_seeded(tmp_path, [0, 1], ["a", "b"], run)
    assert calls == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]  # seed-major
    seeded_study.run_seeded(tmp_path, [0, 1, 2], ["a", "b"], run)
    assert calls[4:] == [("a", 2), ("b", 2)]  # finished runs are skipped
    assert not list((tmp_path / "runs").glob("*.tmp"))
    assert len(seeded_study.load_runs(tmp_path)) == 6
    seeded_study.open_study(tmp_path, "s.py", ["--seeds", "2"], size="tiny")
    seeded_study.open_study(tmp_path, "s.py", ["--seeds", "0"], size="tiny")  # repeated: listed once, last
    assert seeded_study.read_study(tmp_path)["commands"] == ["s.py --seeds 2", "s.py --seeds 0"]
    with pytest.raises(SystemExit, match="size='tiny'"):
        seeded_study.open_study(tmp_path, "s.py", [], size="small")
    ms = seeded_study.mean_std([1.0, None, 3.0])
    assert ms == {"mean": 2.0, "std": pytest.approx(2**0.5), "n": 2}
    assert seeded_study.mean_std([None])["n"] == 0


def test_old_single_command_study_is_read(tmp_path: Path) -> None:
    (tmp_path / "study.json").write_text(json.dumps({"command": "old --x", "size": "tiny"}))
    seeded_study.open_study(tmp_path, "new", ["--y"], size="tiny")
    assert seeded_study.read_study(tmp_path)["commands"] == ["old --x", "new --y"]


@pytest.mark.slow
def test_lm_compare_study(corpus: Path, tmp_path: Path) -> None:
    out, runs = tmp_path / "cmp", tmp_path / "runs"
    base = ["--families", "gpt", "attractor", "--steps", "2", "--iters", "0", "1", "--iters-batches", "1",
            "--runs", str(runs), "--out", str(out), *_toy(corpus, tmp_path / "cache")]  # fmt: skip
    _run("lm_compare.py", "--seeds", "0", "1", *base)
    assert sorted(p.name for p in (out / "runs").iterdir()) == [
        "attractor-s0.json", "attractor-s1.json", "gpt-s0.json", "gpt-s1.json"]  # fmt: skip
    summary = json.loads(Path(f"{out}.json").read_text())
    att = summary["families"]["attractor"]
    assert att["seeds"] == [0, 1] and att["val_ppl"]["n"] == 2 and att["val_ppl"]["std"] >= 0
    assert set(att["iters_sweep"]) == {"0", "1", "default"}
    assert summary["families"]["gpt"]["flops"]["mean"] > 0
    assert Path(f"{out}.md").read_text().count("| attractor |") == 2  # the main table and the T sweep
    assert Path(f"{out}.png").stat().st_size > 0
    r = _run("lm_compare.py", "--seeds", "0", "1", "2", "--families", "gpt", *base[3:])
    assert r.stderr.count("(done)") == 2 and (out / "runs" / "gpt-s2.json").exists()
    assert len(json.loads((out / "study.json").read_text())["commands"]) == 2
    r = _run("lm_compare.py", "--seeds", "0", "--size", "small", *base, ok=False)
    assert "size='tiny'" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_lm_ablations_study(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "abl"
    _run("lm_ablations.py", "--only", "init", "--seeds", "0", "--steps", "2", "--iters-batches", "1",
         "--runs", str(tmp_path / "runs"), "--out", str(out), *_toy(corpus, tmp_path / "cache"))  # fmt: skip
    summary = json.loads(Path(f"{out}.json").read_text())
    assert set(summary["variants"]) == {"default", "init-zero", "init-gaussian"}
    for v in summary["variants"].values():
        assert v["val_ppl"]["n"] == 1 and v["val_ppl"]["mean"] > 1 and v["saved_mib"]["mean"] > 0
    md = Path(f"{out}.md").read_text()
    assert "| init | zero | 1 |" in md and "lm_ablations.py --only init" in md


def test_lambada_results_from_two_processes_merge(tmp_path: Path) -> None:
    """Two scorers sharing one ``--out`` (one per core) keep each other's results.

    The file is re-read and merged under a lock at every write.
    """
    out = tmp_path / "r.json"
    a = {"runs": {}, "commit": "a"}  # what each process read at its start: nothing yet
    b = {"runs": {}, "commit": "b"}
    entry = {"family": "gpt", "label": None, "iters": None, "acc": 0.5}
    a = lm_eval_lambada._record(out, a, "x|T=default", entry)
    b = lm_eval_lambada._record(out, b, "y|T=default", {**entry, "acc": 0.25})
    a = lm_eval_lambada._record(out, a, "z|T=default", {**entry, "acc": 0.0})
    final = json.loads(out.read_text())
    assert sorted(final["runs"]) == ["x|T=default", "y|T=default", "z|T=default"]
    assert final["summary"]["gpt|T=default"]["n"] == 3 and final["summary"]["gpt|T=default"]["mean"] == 0.25
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # no lock or temp file beside the results
