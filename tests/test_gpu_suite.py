"""The GPU suite (benchmarks/gpu_suite.py, issue 19) cannot rot: its dry run on CPU, its budgets and its wheels.

    python -m pytest tests/test_gpu_suite.py -q

The dry run is every part at toy sizes in child processes (about 45 s on one busy core); the GPU run itself is a
script, timed nowhere here.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_suite  # noqa: E402 -- benchmarks/ is a folder of scripts

# what the GPU machine hands back from $OUT: at most 8 files, names of letters, digits and ._-
MAX_FILES = 8


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the suite puts the checkout on its own sys.path
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.e2e
def test_dry_run_writes_every_part_and_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "gpu"
    p = _run("--dry-run", "--device", "cpu", "--threads", "1", "--out", str(out))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    files = sorted(f.name for f in out.iterdir())
    assert len(files) <= MAX_FILES, files
    assert all(f.replace(".", "").replace("_", "").replace("-", "").isalnum() for f in files), files
    for part in gpu_suite.PARTS:
        data = json.loads((out / part.filename).read_text())
        assert data["dry_run"] is True
        if part.name == "reference" and not gpu_suite.reference_checkouts():
            assert data["status"] == "skipped" and "no reference checkout" in data["status_reason"]
            continue
        assert data["status"] == "ok", (part.name, data.get("error"), data.get("traceback"))
        assert data.get("errors", 0) == 0, (part.name, json.dumps(data["results"])[:3000])
        assert data["wall_s"] <= data["budget_s"] + gpu_suite.GRACE_S
    summary = (out / "summary.md").read_text()
    assert "git commit:" in summary and "torch" in summary
    for part in gpu_suite.PARTS:
        assert f"| {part.number} {part.name} |" in summary
    # the parts measured what they say (one look at each)
    step = json.loads((out / "part3_step_bench.json").read_text())["results"]["rows"]
    assert {r["compiled"] for r in step.values()} == {False, True}
    assert all(r["samples_per_s"] > 0 for r in step.values())
    assert all("solver" in r for name, r in step.items() if name.startswith("attractor"))
    train = json.loads((out / "part4_training.json").read_text())["results"]
    for exp, _ in gpu_suite.TRAIN_RUNS:
        assert train[exp]["projected_paper_run_hours"] > 0 and train[exp]["loss_curve"], train[exp]
    lm = json.loads((out / "part5_lm.json").read_text())["results"]
    assert set(lm["throughput"]["rows"]) == set(gpu_suite.LM_FAMILIES)


def test_a_part_stops_at_its_budget_and_keeps_its_json(tmp_path: Path) -> None:
    # 3 s is less than the solvers part needs: it stops before its first measurement, says so, and the suite ends
    p = _run("--dry-run", "--device", "cpu", "--parts", "solvers", "--budget", "solvers=3", "--out", str(tmp_path))
    assert p.returncode == 0, p.stderr[-2000:]
    data = json.loads((tmp_path / "part2_solvers.json").read_text())
    assert data["status"] in ("budget", "killed"), data
    assert "| 2 solvers | " in (tmp_path / "summary.md").read_text()


def test_budgets_fit_one_ten_minute_command() -> None:
    # The parts' budgets (part 6 with a reference checkout), the kill grace of each and the wheel install (~20 s)
    # within 10 minutes, with room.
    total = (
        sum(p.budget_s for p in gpu_suite.PARTS)
        + gpu_suite.REFERENCE_BUDGET_S
        - gpu_suite.PART_BY_NAME["reference"].budget_s
    )
    assert total + len(gpu_suite.PARTS) * gpu_suite.GRACE_S + 20 < 10 * 60 - 30, total
    assert {p.number for p in gpu_suite.PARTS} == set(range(1, 7))


def test_bad_arguments_give_one_line_errors(tmp_path: Path) -> None:
    for args, msg in (
        (["--out", str(tmp_path), "--budget", "nope=3"], "--budget takes NAME=SECONDS"),
        (["--out", str(tmp_path), "--budget", "lm=-1"], "must be a positive number"),
        (["--dry-run"], "--out is required"),
    ):
        p = _run(*args, timeout=60)
        assert p.returncode == 2 and msg in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_cuda_request_without_cuda_is_a_clear_error(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    p = _run("--out", str(tmp_path), timeout=60)
    assert p.returncode == 2 and "CUDA is not available" in p.stderr and "Traceback" not in p.stderr


def test_shipped_wheels_satisfy_the_project_requirements() -> None:
    # Every pinned wheel meets pyproject's range for it (or its dependants' ranges); one version each.
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["bench"]]
    by_name = {r.name.lower(): r for r in reqs}
    for name, pinned in gpu_suite.WHEELS.items():
        if name in by_name:
            assert by_name[name].specifier.contains(pinned), (name, pinned, str(by_name[name]))
        try:  # where this machine has the package, it is the version the suite was tested with
            assert version(name) == pinned, (name, version(name), pinned)
        except PackageNotFoundError:
            pass


def test_wheel_folder_is_ignored_by_git() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", ".whl/x.whl"], cwd=ROOT, capture_output=True, timeout=30
    ).returncode
    if ignored == 128:
        pytest.skip("not a git checkout")
    assert ignored == 0, "/.whl/ must be in .gitignore: downloaded wheels are never committed"


def _python312() -> str | None:
    """A Python 3.12 interpreter on this machine (the GPU image's version), if there is one."""
    cands = [os.environ.get("PYTHON312"), shutil.which("python3.12")]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    cands += sorted(str(p) for p in pyenv_root.glob("versions/3.12*/bin/python3.12"))
    for c in filter(None, cands):
        try:  # a pyenv shim exists even where the version is not selected: ask it
            p = subprocess.run([c, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, timeout=30)
        except OSError:
            continue
        if p.returncode == 0 and p.stdout.strip() == b"(3, 12)":
            return c
    return None


def test_sources_compile_under_python_312() -> None:
    # The GPU image runs Python 3.12, where this machine's torch has no build: every source file must compile there
    # with warnings as errors (3.12 made invalid escapes a SyntaxWarning), and every standard-library module the
    # code imports must still exist (3.12 removed distutils, imp, asyncore, ...).
    py = _python312()
    if py is None:
        pytest.skip("no Python 3.12 interpreter here (set PYTHON312)")
    files = [p for d in ("puzzles", "equilibrium", "recursive_models", "leaderboard", "benchmarks", "tests")
             for p in sorted((ROOT / d).rglob("*.py"))]  # fmt: skip
    stdlib = set()
    for f in files:
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            stdlib |= {n.split(".")[0] for n in names if n.split(".")[0] in sys.stdlib_module_names}
    check = (
        "import importlib.util, json, pathlib, sys, warnings\n"
        "warnings.simplefilter('error')\n"
        "args = json.loads(sys.stdin.read())\n"
        "for f in args['files']:\n"
        "    compile(pathlib.Path(f).read_text(encoding='utf-8'), f, 'exec', dont_inherit=True)\n"
        "missing = [m for m in args['stdlib'] if importlib.util.find_spec(m) is None]\n"
        "assert not missing, f'standard-library modules missing in 3.12: {missing}'\n"
        "print(len(args['files']))\n"
    )
    args = json.dumps({"files": [str(f) for f in files], "stdlib": sorted(stdlib)})
    p = subprocess.run([py, "-c", check], input=args, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    assert int(p.stdout) == len(files)
