"""Configuration: where credentials come from, and that they never show."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from massive_feeds.config import PLANS, Secret, load_settings
from massive_feeds.errors import ConfigurationError, MissingCredentialsError


def write_props(path: Path, **values: str) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o600)
    return path


def test_defaults_point_at_the_real_service() -> None:
    s = load_settings()
    assert s.rest_url == "https://api.massive.com"
    assert s.ws_url == "wss://socket.massive.com"
    assert s.s3_endpoint == "https://files.massive.com"
    assert s.s3_bucket == "flatfiles"
    assert s.plan == PLANS["free"]


def test_explicit_argument_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASSIVE_API_KEY", "from-env")
    assert load_settings(api_key="explicit").api_key.reveal() == "explicit"


def test_environment_beats_properties_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_props(tmp_path / "api_keys.properties", MASSIVE_API_KEY="from-file")
    monkeypatch.setenv("MASSIVE_API_KEY", "from-env")
    assert load_settings().api_key.reveal() == "from-env"


def test_local_properties_file_beats_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = write_props(tmp_path / "user.properties", MASSIVE_API_KEY="from-user", MASSIVE_S3_BUCKET="userbucket")
    monkeypatch.setenv("MASSIVE_FEEDS_CONFIG", str(user))
    write_props(tmp_path / "api_keys.properties", MASSIVE_API_KEY="from-local")
    s = load_settings()
    assert s.api_key.reveal() == "from-local"
    assert s.s3_bucket == "userbucket"  # values the local file does not set still come from the user file


def test_properties_file_ignores_comments_and_placeholder_blanks(tmp_path: Path) -> None:
    (tmp_path / "api_keys.properties").write_text("# comment\n! also comment\n\nMASSIVE_API_KEY = k1 \nMASSIVE_S3_BUCKET=\n")
    (tmp_path / "api_keys.properties").chmod(0o600)
    s = load_settings()
    assert s.api_key.reveal() == "k1"
    assert s.s3_bucket == "flatfiles"


def test_missing_key_says_where_to_put_it() -> None:
    with pytest.raises(MissingCredentialsError) as err:
        load_settings().require_api_key()
    text = str(err.value)
    assert "No API key found" in text
    assert "MASSIVE_API_KEY" in text and "api_keys.properties" in text


def test_missing_s3_credentials_are_named() -> None:
    with pytest.raises(MissingCredentialsError, match="MASSIVE_S3_ACCESS_KEY_ID"):
        load_settings(api_key="k").require_s3_credentials()


def test_secrets_never_show_in_repr_or_str() -> None:
    secret_value = "s3cr3t-value-123"
    s = load_settings(api_key=secret_value, s3_access_key_id=secret_value, s3_secret_access_key=secret_value)
    assert secret_value not in repr(s)
    assert secret_value not in str(s)
    assert repr(Secret(secret_value)) == "Secret('****')"


def test_world_readable_properties_file_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_props(tmp_path / "api_keys.properties", MASSIVE_API_KEY="abc")
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING):
        load_settings()
    assert "readable by other users" in caplog.text
    assert "abc" not in caplog.text


def test_private_properties_file_does_not_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_props(tmp_path / "api_keys.properties", MASSIVE_API_KEY="abc")
    with caplog.at_level(logging.WARNING):
        load_settings()
    assert "readable" not in caplog.text


def test_plan_profiles_carry_documented_numbers() -> None:
    free, basic = PLANS["free"], PLANS["basic"]
    assert (free.rest_per_minute, free.rest_per_day, free.ws_max_streams, free.ws_messages_per_minute) == (10, 100, 10, 100)
    assert free.flatfile_bytes_per_month == 10 * 10**9
    assert (basic.rest_per_minute, basic.rest_per_day) == (5, None)
    assert PLANS["unlimited"].rest_per_minute is None


def test_custom_plan_values_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASSIVE_PLAN", "custom")
    monkeypatch.setenv("MASSIVE_PLAN_REST_PER_DAY", "500")
    monkeypatch.setenv("MASSIVE_PLAN_REST_PER_MINUTE", "unlimited")
    plan = load_settings().plan
    assert plan.rest_per_day == 500 and plan.rest_per_minute is None


def test_unknown_plan_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASSIVE_PLAN", "platinum")
    with pytest.raises(ConfigurationError, match="platinum"):
        load_settings()


def test_unknown_setting_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="colour"):
        load_settings(colour="red")


# --- one home for datasets ----------------------------------------------------------------------------
def test_datasets_default_to_the_homes_folder_whatever_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MASSIVE_DATASETS_DIR", raising=False)
    monkeypatch.setenv("MASSIVE_FEEDS_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert load_settings().datasets_dir == tmp_path / "home" / "datasets"  # before: data/datasets, relative
    assert load_settings(home=tmp_path / "elsewhere").datasets_dir == tmp_path / "elsewhere" / "datasets"
    monkeypatch.setenv("MASSIVE_DATASETS_DIR", str(tmp_path / "mine"))
    assert load_settings().datasets_dir == tmp_path / "mine"  # overridable as before
    assert load_settings(home=tmp_path / "elsewhere").datasets_dir == tmp_path / "mine"


_SAVE_THEN_LOAD = """
import sys, pandas as pd
from massive_feeds import save_dataset
bars = pd.DataFrame({"timestamp": pd.date_range("2024-03-05 14:30", periods=3, freq="1min", tz="UTC"),
                     "symbol": "AAPL", "open": 1.0, "high": 1.0, "low": 1.0, "close": [1.0, 2.0, 3.0],
                     "volume": 1.0})
save_dataset(bars, "from_a")
"""
_LOAD = """
from massive_feeds.vectorbt import MassiveData
print(MassiveData.from_dataset("from_a").get("Close").tolist())
"""


def test_a_dataset_saved_in_one_folder_loads_in_another_and_the_cli_prints_where(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "MASSIVE_DATASETS_DIR"}
    env.update(MASSIVE_FEEDS_HOME=str(tmp_path / "home"), MASSIVE_SANDBOX="1")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    subprocess.run([sys.executable, "-c", _SAVE_THEN_LOAD], cwd=tmp_path / "a", env=env, check=True, timeout=120)
    loaded = subprocess.run([sys.executable, "-c", _LOAD], cwd=tmp_path / "b", env=env, capture_output=True,
                            text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[1.0, 2.0, 3.0]"
    listed = subprocess.run([sys.executable, "-m", "massive_feeds", "datasets"], cwd=tmp_path / "b", env=env,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0] == (f"datasets folder: {tmp_path / 'home' / 'datasets'} "
                                             "(MASSIVE_DATASETS_DIR changes it)")
    assert "from_a" in listed.stdout


def test_sandbox_start_pins_the_built_in_sandbox_clock(tmp_path: Path) -> None:
    from datetime import datetime, timezone

    from massive_feeds.runtime import Runtime

    env = {"MASSIVE_SANDBOX_START": "2026-12-04T15:30:00", "MASSIVE_FEEDS_HOME": str(tmp_path)}
    settings = load_settings(environ=env)
    assert settings.sandbox_start == datetime(2026, 12, 4, 15, 30, tzinfo=timezone.utc)  # naive: UTC
    assert load_settings(environ={**env, "MASSIVE_SANDBOX_START": "2026-12-04T10:30-05:00"}).sandbox_start == \
        settings.sandbox_start
    with pytest.raises(ConfigurationError, match="MASSIVE_SANDBOX_START must be an ISO date-time"):
        load_settings(environ={**env, "MASSIVE_SANDBOX_START": "yesterday"})
    with Runtime() as rt:
        rt.settings(settings)  # keyless: starts the built-in sandbox
        assert rt.sandbox.clock.start == datetime(2026, 12, 4, 15, 30, tzinfo=timezone.utc)
