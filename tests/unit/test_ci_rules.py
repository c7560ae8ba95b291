"""Under CI=true a test that cannot have its tool fails instead of skipping, however the
CI provider spells `true`; elsewhere it skips."""

from __future__ import annotations

import pytest
from podlab_unit_helpers import missing

from harness import pytest_plugin


@pytest.mark.parametrize("value", ["true", "True", "TRUE"])
def test_ci_true_fails_in_any_spelling(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        pytest_plugin.unavailable("no Docker daemon")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        missing("no tool")


@pytest.mark.parametrize("value", ["", "false", "0"])
def test_elsewhere_the_test_skips(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception):
        pytest_plugin.unavailable("no Docker daemon")
    with pytest.raises(pytest.skip.Exception):
        missing("no tool")
