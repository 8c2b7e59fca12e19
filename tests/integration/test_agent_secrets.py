"""The agent's local secret store on a real state directory: files, permissions, environment overrides."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dsfleet.agent.errors import SecretError
from dsfleet.agent.secrets import Credential, LocalSecretStore, env_names, resolve_secrets

CANARY = "canary-Fil3Pass-5c2d"


def put(state: Path, ref: str, key: str, value: str | bytes, mode: int = 0o600) -> Path:
    directory = state / "secrets" / ref
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / key
    path.write_bytes(value.encode() if isinstance(value, str) else value)
    os.chmod(path, mode)
    return path


def fields(cred: Credential) -> tuple[str | None, str | None]:
    return cred.username, cred.password


def test_env_names_upper_case_the_ref_and_map_dashes() -> None:
    assert env_names("cam-gate") == ("DSFLEET_SECRET_CAM_GATE_USERNAME", "DSFLEET_SECRET_CAM_GATE_PASSWORD")


def test_files_are_read_as_stored(tmp_path: Path) -> None:
    put(tmp_path, "gate-1", "username", "admin")
    put(tmp_path, "gate-1", "password", " p@ss:w/rd%! ")
    assert fields(LocalSecretStore(tmp_path, {}).get("gate-1")) == ("admin", " p@ss:w/rd%! ")


@pytest.mark.parametrize(
    ("stored", "read"),
    [("pw\n", "pw"), ("pw\r\n", "pw"), ("pw\n\n", "pw\n"), ("pw \n", "pw "), ("\n", ""), ("pw", "pw")],
)
def test_exactly_one_trailing_newline_is_dropped(tmp_path: Path, stored: str, read: str) -> None:
    put(tmp_path, "gate-1", "username", "admin\n")
    put(tmp_path, "gate-1", "password", stored)
    assert fields(LocalSecretStore(tmp_path, {}).get("gate-1")) == ("admin", read)


def test_a_username_alone_has_no_password(tmp_path: Path) -> None:
    put(tmp_path, "gate-1", "username", "admin")
    assert fields(LocalSecretStore(tmp_path, {}).get("gate-1")) == ("admin", None)


def test_env_alone_is_enough(tmp_path: Path) -> None:
    env = {"DSFLEET_SECRET_CAM_GATE_USERNAME": "u", "DSFLEET_SECRET_CAM_GATE_PASSWORD": "p\n"}
    assert fields(LocalSecretStore(tmp_path, env).get("cam-gate")) == ("u", "p\n")  # env is verbatim


def test_env_overrides_files_key_by_key(tmp_path: Path) -> None:
    put(tmp_path, "gate-1", "username", "file-user")
    put(tmp_path, "gate-1", "password", "file-pass")
    store = LocalSecretStore(tmp_path, {"DSFLEET_SECRET_GATE_1_PASSWORD": "env-pass"})
    assert fields(store.get("gate-1")) == ("file-user", "env-pass")
    store = LocalSecretStore(tmp_path, {"DSFLEET_SECRET_GATE_1_USERNAME": "env-user"})
    assert fields(store.get("gate-1")) == ("env-user", "file-pass")


def test_an_env_override_means_the_file_is_not_even_read(tmp_path: Path) -> None:
    put(tmp_path, "gate-1", "username", "admin")
    put(tmp_path, "gate-1", "password", CANARY, mode=0o644)
    store = LocalSecretStore(tmp_path, {"DSFLEET_SECRET_GATE_1_PASSWORD": "env-pass"})
    assert fields(store.get("gate-1")) == ("admin", "env-pass")


def test_the_process_environment_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSFLEET_SECRET_LOBBY_2_USERNAME", "from-env")
    assert fields(LocalSecretStore(tmp_path).get("lobby-2")) == ("from-env", None)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660])
def test_a_group_or_world_accessible_secret_file_is_refused(tmp_path: Path, mode: int) -> None:
    put(tmp_path, "gate-1", "username", "admin")
    path = put(tmp_path, "gate-1", "password", CANARY, mode=mode)
    with pytest.raises(SecretError) as info:
        LocalSecretStore(tmp_path, {}).get("gate-1")
    message = str(info.value)
    assert f"{path} has mode {mode:04o}" in message
    assert f"chmod 600 {path}" in message
    assert CANARY not in message


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_owner_only_modes_are_accepted(tmp_path: Path, mode: int) -> None:
    put(tmp_path, "gate-1", "username", "admin", mode=mode)
    assert LocalSecretStore(tmp_path, {}).get("gate-1").username == "admin"


def test_a_symlink_to_a_protected_file_is_followed(tmp_path: Path) -> None:
    real = tmp_path / "vault" / "pw"
    real.parent.mkdir()
    real.write_text("linked-pass")
    os.chmod(real, 0o400)
    put(tmp_path, "gate-1", "username", "admin")
    (tmp_path / "secrets" / "gate-1" / "password").symlink_to(real)
    assert fields(LocalSecretStore(tmp_path, {}).get("gate-1")) == ("admin", "linked-pass")


def test_missing_secret_names_the_files_and_variables(tmp_path: Path) -> None:
    with pytest.raises(SecretError) as info:
        LocalSecretStore(tmp_path, {}).get("cam-gate")
    message = str(info.value)
    assert "secret 'cam-gate' not found" in message
    assert str(tmp_path / "secrets" / "cam-gate" / "username") in message
    assert "DSFLEET_SECRET_CAM_GATE_USERNAME" in message and "DSFLEET_SECRET_CAM_GATE_PASSWORD" in message


def test_a_password_alone_is_a_secret_a_camera_url_cannot_use(tmp_path: Path) -> None:
    """A value kept whole in a secret (a broker connection string) needs no user name; a URL's user-info does."""
    from dsfleet.agent.configfiles import fill_placeholders

    put(tmp_path, "iot", "password", CANARY)
    store = LocalSecretStore(tmp_path, {})
    assert fields(store.get("iot")) == (None, CANARY)
    assert fill_placeholders("conn-str=${secret:iot:password}\n", ["iot"], store, kind="keyfile") == (
        f"conn-str={CANARY}\n"
    )
    with pytest.raises(SecretError, match="'iot' has no user name") as info:
        fill_placeholders("uri=rtsp://${secret:iot}@h/x\n", ["iot"], store, kind="keyfile")
    assert CANARY not in str(info.value)


def test_an_empty_username_is_an_error(tmp_path: Path) -> None:
    put(tmp_path, "gate-1", "username", "\n")
    with pytest.raises(SecretError, match="the user name is empty"):
        LocalSecretStore(tmp_path, {}).get("gate-1")


def test_a_directory_in_place_of_a_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "secrets" / "gate-1" / "username").mkdir(parents=True)
    with pytest.raises(SecretError, match="is not a regular file"):
        LocalSecretStore(tmp_path, {}).get("gate-1")


def test_non_utf8_secret_is_refused_without_echoing_bytes(tmp_path: Path) -> None:
    put(tmp_path, "gate-1", "username", b"adm\xffin")
    with pytest.raises(SecretError, match="is not valid UTF-8") as info:
        LocalSecretStore(tmp_path, {}).get("gate-1")
    assert "xff" not in str(info.value)


@pytest.mark.parametrize("ref", ["../etc", "A", "a/b", "-a", ""])
def test_refs_that_are_not_dns_labels_are_refused(tmp_path: Path, ref: str) -> None:
    with pytest.raises(SecretError, match="not a valid secret ref"):
        LocalSecretStore(tmp_path, {}).get(ref)


def test_resolve_reports_every_problem_at_once(tmp_path: Path) -> None:
    put(tmp_path, "gate-1", "username", "admin")
    put(tmp_path, "gate-2", "username", "admin")
    put(tmp_path, "gate-2", "password", CANARY, mode=0o644)
    with pytest.raises(SecretError) as info:
        resolve_secrets(["gate-3", "gate-2", "gate-1"], LocalSecretStore(tmp_path, {}))
    assert info.value.refs == ("gate-2", "gate-3")
    assert len(str(info.value).splitlines()) == 2
    assert CANARY not in str(info.value)
    snapshot = resolve_secrets(["gate-1"], LocalSecretStore(tmp_path, {}))
    assert fields(snapshot.get("gate-1")) == ("admin", None)
