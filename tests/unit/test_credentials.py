"""Credentials come from files or the environment and never show their values."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetrade.runner.credentials import CredentialsError, load_credentials


def test_files_override_environment_and_values_never_print(tmp_path: Path) -> None:
    (tmp_path / "api_key").write_text("file-key\n")
    (tmp_path / "..data").mkdir()  # what a mounted Secret also contains
    env = {"KUBETRADE_BINANCE_PAPER_API_KEY": "env-key", "KUBETRADE_BINANCE_PAPER_API_SECRET": "s3"}
    creds = load_credentials("binance-paper", directory=tmp_path, environ=env)
    assert creds.require("api_key") == "file-key"
    assert creds.require("api_secret") == "s3"
    for text in (str(creds), repr(creds), f"{creds}"):
        assert "file-key" not in text and "s3" not in text
    assert "api_key" in str(creds)


def test_missing_credential_names_every_place_to_put_it() -> None:
    creds = load_credentials("polygon", environ={})
    with pytest.raises(CredentialsError) as err:
        creds.require("api_key")
    message = str(err.value)
    assert "KUBETRADE_POLYGON_API_KEY" in message and "credentialsSecretRef" in message
