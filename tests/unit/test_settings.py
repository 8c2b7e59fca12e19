"""dsfleet.plumbing.settings.load_settings: file < environment < flags, errors that name the place, [kafka] pass-through."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsfleet.plumbing.settings import DEFAULT_DB_URL, KafkaSettings, Settings, SettingsError, load_settings
from dsfleet.schemas.errors import PermanentError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(text)
    return path


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings == Settings()
    assert settings.coordinator.db == DEFAULT_DB_URL
    assert settings.kafka.topic_prefix == ""


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = write(
        tmp_path, "[coordinator]\ndb = 'sqlite:///file.db'\nmax_depth = 8\n[kafka]\ntopic_prefix = 'f-'\n"
    )
    assert load_settings(path, environ={}).coordinator.db == "sqlite:///file.db"
    env = {
        "DSFLEET_COORDINATOR_DB": "sqlite:///env.db",
        "DSFLEET_KAFKA__TOPIC_PREFIX": "e-",
        "DSFLEET_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
        "DSFLEET_AGENT_NODE_NAME": "gpu-node-1",
        "DSFLEET_AGENT__HEARTBEAT_SECONDS": "2.5",
        "DSFLEET_SECRET_CAM_GATE_PASSWORD": "not-a-setting",
        "DSFLEET_DEBUG": "1",
    }
    settings = load_settings(path, environ=env)
    assert settings.coordinator.db == "sqlite:///env.db"
    assert settings.coordinator.max_depth == 8
    assert settings.kafka.topic_prefix == "e-"
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.agent.node_name == "gpu-node-1"
    assert settings.agent.heartbeat_seconds == 2.5
    flags = load_settings(
        path, environ=env, overrides={"coordinator": {"db": "sqlite:///flag.db", "max_depth": None}}
    )
    assert flags.coordinator.db == "sqlite:///flag.db"
    assert flags.coordinator.max_depth == 8  # None = flag not given


def test_dsfleet_config_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[agent]\nnode_name = 'n7'\n")
    assert load_settings(environ={"DSFLEET_CONFIG": str(path)}).agent.node_name == "n7"
    with pytest.raises(SettingsError, match="no such settings file"):
        load_settings(environ={"DSFLEET_CONFIG": str(tmp_path / "missing.toml")})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[coordinatr]\n",
            "settings.toml:1:1: error: unknown section [coordinatr]; did you mean [coordinator]?",
        ),
        ("[nonsense]\n", "settings.toml:1:1: error: unknown section [nonsense]"),
        (
            "\n[agent]\nnode_nam = 'x'\n",
            "settings.toml:3:1: error: [agent] unknown key 'node_nam'; did you mean node_name?",
        ),
        ("db = 'x'\n", "settings.toml:1:1: error: key 'db' outside a section"),
        (
            "[kafka]\npartitions = 0\n",
            "settings.toml:2:1: error: [kafka] partitions: must be a positive integer",
        ),
        (
            "[coordinator]\ndebounce_ms = 70000\n",
            "settings.toml:2:1: error: [coordinator] debounce_ms: must be at most 60000",
        ),
        (
            "[coordinator]\nsync = 'sometimes'\n",
            "settings.toml:2:1: error: [coordinator] sync: Input should be 'auto' or 'manual'",
        ),
    ],
)
def test_errors_name_the_file_the_line_and_the_nearest_name(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SettingsError) as err:
        load_settings(path, environ={})
    assert str(err.value) == message.replace("settings.toml", str(path))
    assert isinstance(err.value, PermanentError)


def test_invalid_toml_says_error_once_with_the_position(tmp_path: Path) -> None:
    path = write(tmp_path, "[coordinator]\ndb = \n")
    with pytest.raises(SettingsError) as err:
        load_settings(path, environ={})
    assert str(err.value).startswith(f"{path}:2:")
    assert str(err.value).count("error:") == 1


def test_an_invalid_value_is_never_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, "[api]\ntoken = 12345678\n")
    with pytest.raises(SettingsError) as err:
        load_settings(path, environ={})
    assert "12345678" not in str(err.value) and "[api] token: must be a string" in str(err.value)
    with pytest.raises(SettingsError) as err:
        load_settings(path, environ={"DSFLEET_KAFKA__PARTITIONS": "s3cret-ish"})
    assert "s3cret-ish" not in str(err.value)


def test_an_invalid_environment_value_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SettingsError) as err:
        load_settings(environ={"DSFLEET_COORDINATOR_MAX_DEPTH": "deep"})
    assert (
        str(err.value)
        == "environment: error: DSFLEET_COORDINATOR_MAX_DEPTH: [coordinator] max_depth: must be a positive integer"
    )


def test_kafka_passes_librdkafka_keys_through_and_reads_the_password_file(tmp_path: Path) -> None:
    (tmp_path / "sasl.pw").write_text("pa55word\n")
    path = write(
        tmp_path,
        "[kafka]\nbootstrap_servers = 'b1:9093,b2:9093'\nsecurity.protocol = 'SASL_SSL'\n"
        "'sasl.mechanism' = 'SCRAM-SHA-512'\nsasl.username = 'dsfleet'\nenable.idempotence = true\n"
        f"ssl.ca.location = '/etc/ssl/ca.pem'\nsasl_password_file = '{tmp_path / 'sasl.pw'}'\n",
    )
    kafka = load_settings(path, environ={}).kafka
    assert kafka.client_config() == {
        "bootstrap.servers": "b1:9093,b2:9093",
        "enable.idempotence": "true",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.password": "pa55word",
        "sasl.username": "dsfleet",
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": "/etc/ssl/ca.pem",
    }
    assert "pa55word" not in repr(kafka)


def test_kafka_client_config_needs_a_broker_and_a_readable_password_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="bootstrap_servers is not set"):
        KafkaSettings().client_config()
    with pytest.raises(SettingsError, match="sasl_password_file: cannot read"):
        KafkaSettings(bootstrap_servers="b:1", sasl_password_file=tmp_path / "nope").client_config()
    with pytest.raises(ValueError, match="librdkafka keys contain a dot"):
        KafkaSettings.model_validate({"bootstrap_server": "x"})


def test_list_settings_take_commas_in_both_environment_forms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``a,b`` in a nested (``__``) variable as in a flat one, JSON lists still read; scalars untouched."""
    monkeypatch.chdir(tmp_path)
    settings = load_settings(
        environ={
            "DSFLEET_COORDINATOR__OPERATOR_KEYS": "ed25519:AAAA, ed25519:BBBB",
            "DSFLEET_AGENT__TRUSTED_KEYS": '["ed25519:CCCC"]',
            "DSFLEET_AGENT__ADMISSION__IMAGES": "registry.local/*,nvcr.io/nvidia/deepstream:*",
            "DSFLEET_API__ALLOWED_HOSTS": "fleet.example",
            "DSFLEET_AGENT__RESYNC_SECONDS": "7",
            "DSFLEET_AGENT_LOG_REQUEST_KEYS": "ed25519:DDDD,ed25519:EEEE",
        }
    )
    assert settings.coordinator.operator_keys == ("ed25519:AAAA", "ed25519:BBBB")
    assert settings.agent.trusted_keys == ("ed25519:CCCC",)
    assert settings.agent.admission.images == ("registry.local/*", "nvcr.io/nvidia/deepstream:*")
    assert settings.api.allowed_hosts == ("fleet.example",)
    assert settings.agent.resync_seconds == 7.0
    assert settings.agent.log_request_keys == ("ed25519:DDDD", "ed25519:EEEE")
