"""The README's "Testing with chaosproxy" examples, run as they are: its conftest.py and
test file as a new user's project (pytest in a subprocess, against the demo app), its
script with plain Python."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"

pytestmark = pytest.mark.timeout(300)


def readme_files() -> dict[str, str]:
    """The section's python blocks whose first line names a file (``# conftest.py``)."""
    text = README.read_text(encoding="utf-8")
    start = text.index("## Testing with chaosproxy")
    end = text.index("\n## ", start + 1)
    files = {}
    for block in re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S):
        first, _, rest = block.partition("\n")
        name = re.fullmatch(r"# (\w+\.py)", first.strip())
        if name:
            files[name.group(1)] = rest
    return files


def test_the_section_has_the_examples() -> None:
    assert set(readme_files()) == {"conftest.py", "test_weather.py", "chaos_script.py"}


def test_readme_test_suite_passes_against_the_demo_app(pytester: pytest.Pytester) -> None:
    files = readme_files()
    pytester.makeconftest(files["conftest.py"])
    pytester.makepyfile(test_weather=files["test_weather.py"])
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=240)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*chaosproxy: faults injected per test*",
            "test_weather.py::test_two_failures_are_retried_with_growing_backoff: 2 faults in 3 requests *",
            "test_weather.py::test_breaker_opens_and_the_cache_answers: 5 faults in 6 requests *",
            "test_weather.py::test_slow_upstream_still_answers: 1 fault in 1 request (scenario slow, seed 3)",
        ]
    )


def test_readme_script_runs(pytester: pytest.Pytester) -> None:
    script = pytester.makepyfile(chaos_script=readme_files()["chaos_script.py"])
    result = pytester.runpython(script)
    assert result.ret == 0, result.stderr.str()
    found = re.search(r"(\d+) of 30 failed; (\d+) injected", result.stdout.str())
    assert found and found.group(1) == found.group(2) != "0", result.stdout.str()
    result.stdout.fnmatch_lines(["*GET http://127.0.0.1:*/v1/forecast/berlin -> *"])
