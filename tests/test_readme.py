"""The README's marked examples run as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(name: str) -> str:
    text = README.read_text()
    m = re.search(rf"<!-- readme-test: {name} -->\s*```python\n(.*?)```", text, re.S)
    assert m, f"README block {name!r} not found"
    return m.group(1)


def test_bring_your_own_model_example_runs(capsys):
    namespace: dict = {}
    exec(compile(readme_block("byom"), "README.md:byom", "exec"), namespace)
    assert "mean reward" in capsys.readouterr().out
    env, state = namespace["env"], namespace["state"]
    assert env.shapes == ((4, 32),)
    assert state.edit[0].shape == (256, 4, 32)
