"""Token authentication for a driver: turned on only for a token given in the environment."""

from __future__ import annotations

import os

import pytest


def test_driver_auth_turns_token_mode_on_only_for_a_given_token(monkeypatch, tmp_path):
    from orchestrator.run.ray_session import prepare_driver_auth

    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    assert prepare_driver_auth("10.0.0.1:6379") is False and "RAY_AUTH_MODE" not in os.environ
    token = tmp_path / "token"
    token.write_text("t" * 64)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    assert prepare_driver_auth(None) is False  # a local cluster: Ray decides
    assert prepare_driver_auth("10.0.0.1:6379") is True
    assert os.environ["RAY_AUTH_MODE"] == "token"
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # an explicit mode wins
    assert prepare_driver_auth("10.0.0.1:6379") is False
    monkeypatch.delenv("RAY_AUTH_MODE")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="RAY_AUTH_TOKEN_PATH"):
        prepare_driver_auth("10.0.0.1:6379")


def test_a_local_studys_token_is_created_private_and_a_readable_one_is_flagged(monkeypatch, tmp_path, caplog):
    import logging
    import stat

    from orchestrator.run.ray_session import check_token_file, private_local_token

    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    path = private_local_token()
    assert path == tmp_path / ".ray" / "auth_token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(path.read_text()) == 64
    assert private_local_token() == path and len(path.read_text()) == 64  # kept, not replaced
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        assert check_token_file(path) is False
    assert any("chmod 600" in r.getMessage() and "0644" in r.getMessage() for r in caplog.records)
    path.chmod(0o600)
    assert check_token_file(path) is True
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert private_local_token() is None  # no token auth: no token file
