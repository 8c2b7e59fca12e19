"""The agent's pure file-writer core: placeholder filling and file plans (no I/O)."""

from __future__ import annotations

import json
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsfleet.agent.configfiles import (
    MODE_PLAIN,
    MODE_SECRET,
    FileKind,
    FilePlan,
    file_kind,
    fill_placeholders,
    instance_refs,
    plan_files,
    userinfo,
)
from dsfleet.agent.errors import ConfigError, SecretError
from dsfleet.agent.secrets import Credential, MemorySecretStore
from dsfleet.schemas.labels import instance_labels
from dsfleet.schemas.nodeconfigs import (
    ContainerSpec,
    InstanceConfig,
    RenderedFile,
    RestartPolicySpec,
    build_instance,
)
from dsfleet.schemas.placeholders import secret_placeholder

CANARY = "canary-S3cret-91ab"
SPECIAL = "p@ss:w/rd%!"

SOURCE_LIST = json.dumps(
    {
        "sources": [
            {"camera_id": "1", "address": "rtsp://${secret:gate-1}@127.0.0.1:8554/gate-1/main"},
            {"camera_id": "2", "address": "rtsp://${secret:gate-2}@127.0.0.1:8554/gate-2/main"},
        ]
    },
    indent=4,
)
APP_CONFIG = (
    "[source0]\nenable=1\ntype=4\nuri=rtsp://${secret:gate-1}@127.0.0.1:8554/gate-1/main\n\n"
    "[source1]\nenable=1\ntype=4\nuri=rtsp://${secret:gate-2}@127.0.0.1:8554/gate-2/main\n"
)
NVINFER = "[property]\ngpu-id=0\nbatch-size=2\n"


def _store(**creds: Credential) -> MemorySecretStore:
    return MemorySecretStore({k.replace("_", "-"): v for k, v in creds.items()})


STORE = _store(gate_1=Credential("admin", SPECIAL), gate_2=Credential("viewer", CANARY))


def _instance(files: tuple[RenderedFile, ...], name: str = "ccm-gate") -> InstanceConfig:
    container = ContainerSpec(
        image="nvcr.io/nvidia/deepstream:7.0-triton-multiarch",
        engineVolume=f"{name}_engine",
        labels=instance_labels(name),
        restartPolicy=RestartPolicySpec(name="unless-stopped"),
    )
    return build_instance(name, "ccm", False, (), container, files)


INSTANCE = _instance(
    (
        RenderedFile(path="source_list.json", content=SOURCE_LIST, secrets=("gate-1", "gate-2")),
        RenderedFile(path="mot_primary.txt", content=NVINFER),
    )
)


def _apply(existing: dict[str, bytes], modes: dict[str, int], plan: FilePlan) -> None:
    for w in plan.writes:
        existing[w.path] = w.content
        modes[w.path] = w.mode
    for path in plan.removals:
        del existing[path]
        del modes[path]


# --- filling -----------------------------------------------------------------------------------------------


def test_special_characters_in_a_password_are_percent_encoded() -> None:
    out = fill_placeholders("rtsp://${secret:gate-1}@10.0.0.5/main", ["gate-1"], STORE, kind=FileKind.TEXT)
    assert out == "rtsp://admin:p%40ss%3Aw%2Frd%25%21@10.0.0.5/main"
    parts = urlsplit(out)
    assert parts.hostname == "10.0.0.5"
    assert unquote(parts.username or "") == "admin"
    assert unquote(parts.password or "") == SPECIAL


def test_json_stays_valid_and_carries_the_decoded_credentials() -> None:
    out = fill_placeholders(SOURCE_LIST, ["gate-1", "gate-2"], STORE, kind="json")
    sources = json.loads(out)["sources"]
    urls = [urlsplit(s["address"]) for s in sources]
    assert [unquote(u.password or "") for u in urls] == [SPECIAL, CANARY]
    assert [u.username for u in urls] == ["admin", "viewer"]
    assert "${secret:" not in out


def test_multiple_refs_and_repeated_placeholders_are_all_filled() -> None:
    text = "a=${secret:gate-1} b=${secret:gate-2} c=${secret:gate-1}"
    out = fill_placeholders(text, ["gate-1", "gate-2"], STORE)
    assert out == f"a=admin:p%40ss%3Aw%2Frd%25%21 b=viewer:{CANARY} c=admin:p%40ss%3Aw%2Frd%25%21"


def test_a_username_without_password_gives_user_at() -> None:
    store = _store(cam=Credential("operator"))
    assert fill_placeholders("rtsp://${secret:cam}@h/x", ["cam"], store) == "rtsp://operator@h/x"


def test_an_empty_password_is_kept_as_an_empty_password() -> None:
    assert userinfo(Credential("u", "")) == "u:"


def test_a_username_with_reserved_characters_is_encoded_too() -> None:
    assert userinfo(Credential("dom\\user@x", "a b")) == "dom%5Cuser%40x:a%20b"


def test_content_without_placeholders_is_unchanged() -> None:
    assert fill_placeholders(NVINFER, [], MemorySecretStore(), kind="keyfile") == NVINFER


def test_missing_secrets_are_all_named_and_no_value_is_in_the_message() -> None:
    store = _store(gate_2=Credential("viewer", CANARY))
    text = "${secret:gate-1} ${secret:gate-2} ${secret:gate-3}"
    with pytest.raises(SecretError) as info:
        fill_placeholders(text, ["gate-1", "gate-2", "gate-3"], store)
    message = str(info.value)
    assert "'gate-1'" in message and "'gate-3'" in message
    assert "gate-2" not in message
    assert CANARY not in message and "viewer" not in message
    assert info.value.refs == ("gate-1", "gate-3")


def test_a_placeholder_of_an_undeclared_ref_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"undeclared secret.*'gate-2'"):
        fill_placeholders("${secret:gate-1} ${secret:gate-2}", ["gate-1"], STORE)


def test_credential_repr_hides_its_values() -> None:
    cred = Credential("admin", CANARY)
    assert "admin" not in repr(cred) and CANARY not in repr(cred) and CANARY not in str(cred)
    assert CANARY not in repr(STORE)


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("source_list.json", FileKind.JSON),
        ("app_conf.JSON", FileKind.JSON),
        ("deepstream_app_config.txt", FileKind.KEYFILE),
        ("tracker.ini", FileKind.KEYFILE),
        ("config_tracker.yml", FileKind.TEXT),
        ("labels", FileKind.TEXT),
    ],
)
def test_file_kind_by_name(path: str, kind: FileKind) -> None:
    assert file_kind(path) is kind


# any text at all as user name / password: JSON stays valid, key-file values stay on one line without escapes,
# and decoding the URL gives the credential back
_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)


@settings(max_examples=200, deadline=None)
@given(username=_TEXT.filter(bool), password=st.none() | _TEXT)
def test_any_credential_keeps_json_valid_and_round_trips(username: str, password: str | None) -> None:
    store = _store(gate_1=Credential(username, password), gate_2=Credential("v", "w"))
    out = fill_placeholders(SOURCE_LIST, ["gate-1", "gate-2"], store, kind="json")
    url = urlsplit(json.loads(out)["sources"][0]["address"])
    assert url.hostname == "127.0.0.1" and url.port == 8554
    assert unquote(url.username or "") == username
    assert (None if url.password is None else unquote(url.password)) == password


@settings(max_examples=200, deadline=None)
@given(username=_TEXT.filter(bool), password=st.none() | _TEXT)
def test_any_credential_keeps_a_key_file_line_intact(username: str, password: str | None) -> None:
    store = _store(gate_1=Credential(username, password), gate_2=Credential("v", "w"))
    out = fill_placeholders(APP_CONFIG, ["gate-1", "gate-2"], store, kind="keyfile")
    assert out.count("\n") == APP_CONFIG.count("\n")
    uri = next(line for line in out.splitlines() if line.startswith("uri=rtsp://") and "gate-1" in line)
    value = uri.removeprefix("uri=")
    assert "\\" not in value and ";" not in value and "#" not in value
    assert set(value.split("@")[0].removeprefix("rtsp://")) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%:"
    )


# --- plans -------------------------------------------------------------------------------------------------


def test_first_plan_writes_every_file_with_the_right_modes() -> None:
    plan = plan_files(INSTANCE, {}, STORE)
    assert [(w.path, w.mode, w.reason) for w in plan.writes] == [
        ("mot_primary.txt", MODE_PLAIN, "new"),
        ("source_list.json", MODE_SECRET, "new"),
    ]
    assert plan.removals == ()
    assert json.loads(plan.writes[1].content)["sources"][1]["address"].startswith(f"rtsp://viewer:{CANARY}@")


def test_plan_is_idempotent_second_run_writes_nothing() -> None:
    existing: dict[str, bytes] = {}
    modes: dict[str, int] = {}
    _apply(existing, modes, plan_files(INSTANCE, existing, STORE, modes=modes))
    again = plan_files(INSTANCE, existing, STORE, modes=modes)
    assert again.empty and again == FilePlan()
    assert plan_files(INSTANCE, existing, STORE).empty  # without modes as well


def test_only_changed_files_are_rewritten_and_stale_ones_removed() -> None:
    existing: dict[str, bytes] = {}
    modes: dict[str, int] = {}
    _apply(existing, modes, plan_files(INSTANCE, existing, STORE, modes=modes))
    existing["old_config.txt"] = b"stale"
    modes["old_config.txt"] = 0o644
    rotated = _store(gate_1=Credential("admin", "new-password"), gate_2=Credential("viewer", CANARY))
    plan = plan_files(INSTANCE, existing, rotated, modes=modes)
    assert [(w.path, w.reason) for w in plan.writes] == [("source_list.json", "changed")]
    assert plan.removals == ("old_config.txt",)
    assert plan.describe() == ["write source_list.json (0600, changed)", "remove old_config.txt"]


def test_a_secret_file_with_a_loosened_mode_is_rewritten_0600() -> None:
    existing: dict[str, bytes] = {}
    modes: dict[str, int] = {}
    _apply(existing, modes, plan_files(INSTANCE, existing, STORE, modes=modes))
    modes["source_list.json"] = 0o644
    plan = plan_files(INSTANCE, existing, STORE, modes=modes)
    assert [(w.path, w.mode, w.reason) for w in plan.writes] == [("source_list.json", MODE_SECRET, "mode")]


def test_a_plan_never_shows_file_contents() -> None:
    plan = plan_files(INSTANCE, {}, STORE)
    assert CANARY not in repr(plan) and CANARY not in " ".join(plan.describe())


def test_a_plan_with_a_missing_secret_names_the_ref_only() -> None:
    with pytest.raises(SecretError) as info:
        plan_files(INSTANCE, {}, _store(gate_1=Credential("admin", CANARY)))
    assert info.value.refs == ("gate-2",)
    assert CANARY not in str(info.value) and "admin" not in str(info.value)


def test_instance_refs_lists_every_declared_secret_once() -> None:
    assert instance_refs(INSTANCE) == ("gate-1", "gate-2")


@pytest.mark.parametrize("name", ["../escape.txt", "sub/dir.txt", ".hidden", "", "..", "a\\b"])
def test_unsafe_file_names_are_refused(name: str) -> None:
    bad = _instance((RenderedFile(path=name, content="x"),))
    with pytest.raises(ConfigError, match="not a plain file name"):
        plan_files(bad, {}, STORE)


def test_a_file_listed_twice_is_refused() -> None:
    bad = _instance((RenderedFile(path="a.txt", content="x"), RenderedFile(path="a.txt", content="y")))
    with pytest.raises(ConfigError, match="listed twice"):
        plan_files(bad, {}, STORE)


_CONTENT = st.text(alphabet="ab=\n[]${}:secrt-12", max_size=60)


@settings(max_examples=100, deadline=None)
@given(
    files=st.dictionaries(st.sampled_from(["a.txt", "b.json", "c.yml", "d.txt"]), _CONTENT, max_size=4),
    existing=st.dictionaries(
        st.sampled_from(["a.txt", "b.json", "x.txt", ".a.txt.tmp"]), st.binary(max_size=8)
    ),
)
def test_applying_a_plan_then_planning_again_gives_an_empty_plan(
    files: dict[str, str], existing: dict[str, bytes]
) -> None:
    inst = _instance(
        tuple(
            RenderedFile(path=p, content=c + secret_placeholder("gate-1"), secrets=("gate-1",))
            if i % 2
            else RenderedFile(path=p, content=c)
            for i, (p, c) in enumerate(sorted(files.items()))
        )
    )
    current = dict(existing)
    modes = dict.fromkeys(existing, 0o640)
    plan = plan_files(inst, current, STORE, modes=modes)
    _apply(current, modes, plan)
    assert set(current) == set(files)
    assert plan_files(inst, current, STORE, modes=modes).empty


# ------------------------------------------------------------------------------------ whole values: ${secret:ref:field}
AZURE = "HostName=hub.azure-devices.net;DeviceId=cam-7;SharedAccessKey=" + CANARY + "=="


def _keyfile_string(raw: str) -> str:
    """What g_key_file_get_string makes of a value's text (the escapes GLib knows; see the GLib check in the
    integration tests)."""
    out, i = [], 0
    while i < len(raw):
        if raw[i] == "\\" and i + 1 < len(raw):
            out.append({"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}[raw[i + 1]])
            i += 2
        else:
            out.append(raw[i])
            i += 1
    return "".join(out)


def test_a_field_placeholder_is_the_whole_value_verbatim() -> None:
    store = _store(hub=Credential(None, AZURE))
    text = "[sink0]\nmsg-broker-conn-str=${secret:hub:password}\n"
    out = fill_placeholders(text, ["hub"], store, kind="keyfile")
    assert out == f"[sink0]\nmsg-broker-conn-str={AZURE}\n"  # ';' and '=' need no escape in a string key
    assert fill_placeholders('{"c": "${secret:hub:password}"}', ["hub"], store, kind="json") == json.dumps(
        {"c": AZURE}
    )


@settings(max_examples=200)
@given(st.text(alphabet=st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), min_size=1))
def test_a_filled_keyfile_value_reads_back_exactly(value: str) -> None:
    out = fill_placeholders("k=${secret:hub:password}\n", ["hub"], _store(hub=Credential(None, value)),
                            kind="keyfile")  # fmt: skip
    raw = out.removeprefix("k=").removesuffix("\n")
    assert "\n" not in raw and _keyfile_string(raw) == value


def test_the_user_info_placeholder_keeps_its_meaning_beside_a_field_placeholder() -> None:
    store = _store(gate_1=Credential("admin", SPECIAL), hub=Credential("dev", AZURE))
    text = "uri=rtsp://${secret:gate-1}@10.0.0.5/main\nconn=${secret:hub:password}\nuser=${secret:hub:username}\n"
    out = fill_placeholders(text, ["gate-1", "hub"], store, kind="keyfile")
    assert out.splitlines() == [f"uri=rtsp://admin:{userinfo(Credential('admin', SPECIAL)).split(':', 1)[1]}"
                                "@10.0.0.5/main", f"conn={AZURE}", "user=dev"]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "cred", "fragment"),
    [
        ("c=${secret:hub:password}\n", Credential("dev"), "'hub' has no password"),
        ("u=rtsp://${secret:hub}@h/x\n", Credential(None, AZURE), "'hub' has no user name"),
        ("c=${secret:hub:password}\n", Credential(None, "a\0b"), "NUL"),
    ],
)
def test_a_secret_lacking_what_a_placeholder_needs_is_an_error(
    text: str, cred: Credential, fragment: str
) -> None:
    with pytest.raises(SecretError, match=fragment) as info:
        fill_placeholders(text, ["hub"], _store(hub=cred), kind="keyfile")
    assert CANARY not in str(info.value) and "a\0b" not in str(info.value)


def test_an_undeclared_field_placeholder_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="undeclared secret"):
        fill_placeholders("c=${secret:hub:password}\n", [], _store(hub=Credential(None, AZURE)))
