"""The one place where tests meet missing ../shared data: a skip on a developer's machine, a failure in CI."""

from __future__ import annotations

import pytest
from support.paths import require


@pytest.mark.parametrize("ci", ["true", "True", "1"])
def test_missing_shared_data_fails_where_ci_runs_the_tests(tmp_path, monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="absent"):
        require(tmp_path / "absent")


@pytest.mark.parametrize("ci", [None, "", "false"])
def test_missing_shared_data_skips_elsewhere(tmp_path, monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match="absent"):
        require(tmp_path / "absent")
    assert require(tmp_path) == tmp_path  # present: given back
