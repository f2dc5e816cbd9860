"""Settings: read from an environment mapping once, every problem named in one message."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagedrop.config import ENV_NAMES, load_settings
from imagedrop.errors import ConfigError


class TestDefaults:
    """With nothing configured, the embedded default."""

    def test_embedded_default(self):
        s = load_settings({})
        assert not s.storage.is_cos
        assert s.storage.data_dir == Path("imagedrop-data")
        assert s.ledger.database_url == "sqlite:///imagedrop-data/imagedrop.sqlite3"
        assert s.provider.kind == "local"

    def test_openai_key_selects_openai(self):
        s = load_settings({"OPENAI_API_KEY": "sk-x"})
        assert s.provider.kind == "openai" and s.provider.openai_api_key == "sk-x"

    def test_provider_can_be_forced_local(self):
        assert load_settings({"OPENAI_API_KEY": "sk-x",
                              "IMAGEDROP_PROVIDER": "local"}).provider.kind == "local"

    def test_database_follows_data_dir(self):
        s = load_settings({"IMAGEDROP_DATA_DIR": "/srv/id"})
        assert s.ledger.database_url == "sqlite:////srv/id/imagedrop.sqlite3"

    def test_empty_values_count_as_unset(self):
        assert load_settings({"IMAGEDROP_PORT": " ", "COS_ENDPOINT": ""}).server.port == 8080

    def test_lists_and_rules(self):
        s = load_settings({"IMAGEDROP_API_KEYS": "a, b,,c",
                           "IMAGEDROP_CALLBACK_REWRITES": "wxo-server:4321=127.0.0.1:14321",
                           "IMAGEDROP_CALLBACK_SCHEDULE": "0,1.5,10"})
        assert s.server.api_keys == ("a", "b", "c")
        assert s.callbacks.rewrites == (("wxo-server:4321", "127.0.0.1:14321"),)
        assert s.callbacks.schedule == (0, 1.5, 10)

    def test_signing_secrets_collected_by_name(self):
        s = load_settings({"IMAGEDROP_HOOK_SECRET_MAIN": "whsec_abc", "OTHER": "plain"})
        assert s.secrets == {"IMAGEDROP_HOOK_SECRET_MAIN": "whsec_abc"}
        assert "whsec_abc" not in repr(s)

    def test_every_name_is_unique_and_documented(self):
        example = (Path(__file__).parents[2] / ".env.example").read_text()
        for name in ENV_NAMES:
            assert f"{name}=" in example, name


class TestProblems:
    """Bad settings stop start-up with one message naming each."""

    def test_every_bad_variable_named(self):
        with pytest.raises(ConfigError) as err:
            load_settings({"IMAGEDROP_PORT": "eighty", "IMAGEDROP_PROVIDER": "dalle",
                           "IMAGEDROP_CONCURRENCY": "0", "IMAGEDROP_CALLBACK_REWRITES": "nope"})
        text = str(err.value)
        for name in ("IMAGEDROP_PORT", "IMAGEDROP_PROVIDER", "IMAGEDROP_CONCURRENCY",
                     "IMAGEDROP_CALLBACK_REWRITES"):
            assert name in text

    def test_bad_rewrite_port_is_a_start_up_error(self):
        with pytest.raises(ConfigError, match="IMAGEDROP_CALLBACK_REWRITES"):
            load_settings({"IMAGEDROP_CALLBACK_REWRITES": "wxo-server:abc=127.0.0.1:14321"})

    def test_cos_needs_credentials_and_bucket(self):
        with pytest.raises(ConfigError) as err:
            load_settings({"COS_ENDPOINT": "https://s3.example"})
        assert "COS_ACCESS_KEY_ID" in str(err.value) and "COS_BUCKET" in str(err.value)

    def test_half_hmac_pair(self):
        with pytest.raises(ConfigError, match="set both HMAC keys"):
            load_settings({"COS_ENDPOINT": "https://s3.example", "COS_BUCKET": "b",
                           "COS_ACCESS_KEY_ID": "id"})

    def test_iam_key_is_enough(self):
        s = load_settings({"COS_ENDPOINT": "https://s3.example", "COS_BUCKET": "b",
                           "COS_API_KEY": "iam", "COS_INSTANCE_CRN": "crn:v1:x"})
        assert s.storage.is_cos and s.storage.cos_api_key == "iam"

    def test_forced_openai_needs_key(self):
        with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
            load_settings({"IMAGEDROP_PROVIDER": "openai"})

    def test_unknown_database_scheme(self):
        with pytest.raises(ConfigError, match="IMAGEDROP_DATABASE_URL"):
            load_settings({"IMAGEDROP_DATABASE_URL": "mysql://x"})

    def test_secret_values_never_in_the_message(self):
        with pytest.raises(ConfigError) as err:
            load_settings({"COS_ENDPOINT": "https://s3.example", "COS_BUCKET": "b",
                           "COS_SECRET_ACCESS_KEY": "SUPERSECRET"})
        assert "SUPERSECRET" not in str(err.value)


def test_secret_values_cover_every_configured_secret():
    from imagedrop.config import load_settings

    settings = load_settings({
        "COS_ENDPOINT": "http://user:pw-in-url@cos.example.com", "COS_BUCKET": "b",
        "COS_ACCESS_KEY_ID": "AKIDEXAMPLE", "COS_SECRET_ACCESS_KEY": "secret-key-1",
        "OPENAI_API_KEY": "sk-test-1", "IMAGEDROP_API_KEYS": "key-one,key-two",
        "IMAGEDROP_INTAKE_TOKEN": "intake-tok", "IMAGEDROP_HOOK_SECRET_A": "whsec_AAAA",
        "IMAGEDROP_DATABASE_URL": "postgresql://u:db-pass@h/db"})
    values = set(settings.secret_values())
    assert {"pw-in-url", "AKIDEXAMPLE", "secret-key-1", "sk-test-1", "key-one", "key-two",
            "intake-tok", "whsec_AAAA", "db-pass"} <= values
