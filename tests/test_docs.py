"""The README and every page of docs/ cannot rot: each ```python block marked
``<!-- docs-test: run -->`` runs as written (one namespace per page, in order), every other
```python block compiles, and every command line in a ```bash block parses with the flags its
tool really has."""

import contextlib
import functools
import importlib.util
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from maskshift.cli import compare, edit, evaluate, sequence, train

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(<!-- docs-test: run -->\s*)?```(\w*)\n(.*?)```", re.S)
PARSERS = {"maskshift.train": train.build_parser, "maskshift.evaluate": evaluate.build_parser,
           "maskshift.compare": compare.build_parser, "maskshift.edit": edit.build_parser,
           "maskshift.sequence": sequence.build_parser}


def blocks(page: Path, lang: str):
    return [(bool(run), code) for run, kind, code in BLOCK.findall(page.read_text())
            if kind == lang]


def commands(code: str) -> list[list[str]]:
    """Each command line of a bash block (continuations joined, comments and pipes dropped)."""
    out = []
    for line in code.replace("\\\n", " ").splitlines():
        line = line.split(" #")[0].strip()
        if line and not line.startswith("#"):
            for part in line.split("&&"):
                out.append(shlex.split(part.strip()))
    return out


@functools.cache
def script_help(target: tuple[str, ...]) -> str:
    """``--help`` of a script (loaded in this process: its ``main(["--help"])`` prints the help
    and exits before any work; a fresh interpreter per script took most of this test's time) or
    of a ``-m`` module (a subprocess)."""
    if target[0] != "-m":
        spec = importlib.util.spec_from_file_location(f"_docs_{Path(target[0]).stem}",
                                                      ROOT / target[0])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exc:
            module.main(["--help"])
        assert exc.value.code == 0
        return out.getvalue()
    proc = subprocess.run([sys.executable, *target, "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-1000:]
    return proc.stdout


def check_command(argv: list[str]) -> None:
    installs = (["pip", "install"], ["apt-get", "install"])
    if argv[:2] in installs or argv[:3] == ["python", "-m", "pytest"]:
        return
    assert argv[0] == "python", f"unknown command in docs: {argv}"
    if argv[1] == "-m" and argv[2] in PARSERS:
        parser = PARSERS[argv[2]]()
        args = parser.parse_args(argv[3:])  # exits 2 on an unknown flag or a bad value
        if argv[2] == "maskshift.train":
            train.check_combinations(args, parser)
        return
    target = tuple(argv[1:3]) if argv[1] == "-m" else (argv[1],)
    assert argv[1] == "-m" or (ROOT / argv[1]).exists(), f"{argv[1]} does not exist"
    rest = argv[3:] if argv[1] == "-m" else argv[2:]
    helptext = script_help(target)
    for flag in (a.split("=")[0] for a in rest if a.startswith("--")):
        assert flag in helptext, f"{' '.join(target)} has no flag {flag}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_line_parses(page):
    for _, code in blocks(page, "bash"):
        for argv in commands(code):
            check_command(argv)


# the pages whose blocks train editors end to end (tens of seconds each): the slow suite's
SLOW_PAGES = {"objectives.md", "byom.md"}


@pytest.mark.parametrize("page", [  # the README: tests below
    pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW_PAGES else p for p in PAGES[1:]],
    ids=lambda p: p.name)
def test_python_blocks_run_or_compile(page, tmp_path, monkeypatch, capsys, digits_model,
                                      toxic_model):
    monkeypatch.chdir(tmp_path)  # anything a block writes lands in a temporary directory
    namespace: dict = {"__name__": "__docs__"}
    for i, (run, code) in enumerate(blocks(page, "python")):
        compiled = compile(code, f"{page.name}:python-block-{i}", "exec")
        if run:
            exec(compiled, namespace)
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.slow  # trains an editor end to end (~20 s)
def test_the_readme_tour_runs(tmp_path, monkeypatch, capsys, digits_model):
    monkeypatch.chdir(tmp_path)
    code = [c for run, c in blocks(ROOT / "README.md", "python") if "gradient_step" in c]
    assert len(code) == 1 and all(run for run, _ in blocks(ROOT / "README.md", "python"))
    namespace: dict = {}
    exec(compile(code[0], "README.md:tour", "exec"), namespace)
    assert "reward" in capsys.readouterr().out
    assert namespace["results"]["after"]["forget_acc"] <= 0.02  # the controller forgets class 7
    assert (tmp_path / "runs" / "tour-gradient" / "results.json").exists()


@pytest.mark.long
def test_byom_brings_its_own_model(tmp_path, monkeypatch, capsys):
    """docs/byom.md's example as written (a killed run of your own task resuming:
    tests/test_editors.py, test_your_own_task_trains_resumes_and_refuses_another_task)."""
    monkeypatch.chdir(tmp_path)
    code = [c for run, c in blocks(ROOT / "docs" / "byom.md", "python")
            if "train_and_evaluate(cfg, out, task=task)" in c]
    assert len(code) == 1, "docs/byom.md holds one complete example"
    namespace: dict = {}
    exec(compile(code[0], "byom.md:example", "exec"), namespace)
    assert "forget 0.9" in capsys.readouterr().out
    res, out = namespace["results"], Path(namespace["out"])
    assert res["after"]["forget_acc"] < res["before"]["forget_acc"]
    for name in ("results.json", "edited.json", "ckpt/meta.json", "learning_curve.png"):
        assert (out / name).exists()
    assert res["config"]["task_fingerprint"] and res["dataset"] == "custom"


@pytest.mark.long
@pytest.mark.parametrize("name", ["cnn", "tf"])
def test_byom_edits_a_convolution_and_an_attention_projection(name, tmp_path, monkeypatch,
                                                              capsys):
    """docs/byom.md's own CNN (a convolution edited) and own transformer (an attention
    projection edited), as written, each a whole train_and_evaluate run."""
    monkeypatch.chdir(tmp_path)
    code = [c for _, c in blocks(ROOT / "docs" / "byom.md", "python")
            if f"train_and_evaluate({name}_cfg, {name}_out, task={name}_task)" in c]
    assert len(code) == 1
    namespace: dict = {}
    exec(compile(code[0], f"byom.md:{name}", "exec"), namespace)
    task, res = namespace[f"{name}_task"], namespace[f"{name}_results"]
    assert task.matrix_shapes == {"cnn": ((72, 16),), "tf": ((16, 16),)}[name]
    assert res["after"]["forget_acc"] < res["before"]["forget_acc"] - 0.2
    assert (Path(namespace[f"{name}_out"]) / "results.json").exists()


def test_the_signature_in_byom_is_the_real_one():
    import inspect

    from maskshift import task_from_model

    parts, star = [], False
    for p in inspect.signature(task_from_model).parameters.values():
        if p.kind is p.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        default = "" if p.default is p.empty else "=" + repr(p.default).replace("'", '"')
        parts.append(p.name + default)
    text = [c for _, c in blocks(ROOT / "docs" / "byom.md", "text")][0]
    assert " ".join(text.split()) == f"maskshift.task_from_model({', '.join(parts)})"


def test_the_cli_reference_matches_the_parsers():
    from maskshift.cli.reference import reference

    assert (ROOT / "docs" / "cli.md").read_text() == reference(), \
        "regenerate it: python -m maskshift.cli > docs/cli.md"
