import contextlib
import io
import re

from tests.conftest import ROOT


def test_readme_episode_example_runs_and_prints_what_it_says():
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    lines = out.getvalue().splitlines()
    expected = [m.group(1).strip() for m in re.finditer(r"^# (.*)$", code, re.M)]
    assert lines[0] == expected[0] and lines[1] == expected[1]
    assert lines[-1] == "1.0 True 1"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] in (ROOT / "README.md").read_text()
