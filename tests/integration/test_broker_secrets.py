"""Broker connection strings kept whole in a secret (``msg-broker-conn-str: {secretRef: NAME}``), end to end.

The coordinator side (validate, apply into the SQLite store and its outbox, render from the store) only ever sees
the placeholder ``${secret:NAME:password}``; the agent writes the file with the stored value, 0600, escaped so that
real GLib reads back the exact string. import-deepstream-app moves such strings out of an existing config.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dsfleet.agent.configfiles import fill_placeholders
from dsfleet.agent.secrets import LocalSecretStore
from tests.support.glibcheck import GlibChecker

REPO = Path(__file__).resolve().parents[2]
CANARY = "canary-Br0ker-key-4e1f"
AZURE = f"HostName=hub.azure-devices.net;DeviceId=cam-7;SharedAccessKey={CANARY}+/="
PLACEHOLDER = "${secret:iot-hub:password}"

FLEET = """\
apiVersion: dsfleet/v1
kind: Node
metadata: {name: edge-1}
spec: {gpus: [0], image: nvcr.io/nvidia/deepstream:7.0-triton-multiarch}
---
apiVersion: dsfleet/v1
kind: Camera
metadata: {name: gate}
spec: {cameraId: "1", url: "file:///media/gate.mp4"}
---
apiVersion: dsfleet/v1
kind: InferenceProfile
metadata: {name: det}
spec:
  gies:
    - {name: pgie, role: primary, file: pgie.txt, properties: {onnx-file: /models/det.onnx, batch-size: auto}}
---
apiVersion: dsfleet/v1
kind: DsInstance
metadata: {name: events}
spec:
  node: edge-1
  layout: deepstream-app
  cameras: [gate]
  profile: det
  app:
    streammux: {width: 1280, height: 720}
    sinks:
      - type: 6
        msg-conv-config: msgconv.txt
        msg-broker-proto-lib: /opt/nvidia/deepstream/deepstream/lib/libnvds_azure_proto.so
        msg-broker-conn-str: {secretRef: iot-hub}
        topic: events
"""


def _run(module: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=120, check=False)  # fmt: skip


def _everything(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


@pytest.mark.parametrize(
    "value",
    [AZURE, "  lead and trail  ", "back\\slash;semi=eq#hash", "multi\nline\ttab\rcr", "ünïcödé;é"],
)
def test_a_filled_connection_string_is_read_back_exactly_by_glib(
    value: str, glib: GlibChecker, tmp_path: Path
) -> None:
    secret = tmp_path / "secrets" / "iot-hub"
    secret.mkdir(parents=True)
    (secret / "password").write_text(value)
    os.chmod(secret / "password", 0o600)
    text = f"[sink0]\nenable=1\nmsg-broker-conn-str={PLACEHOLDER}\n"
    filled = fill_placeholders(text, ["iot-hub"], LocalSecretStore(tmp_path, {}), kind="keyfile")
    got = glib.read_one(filled, {"sink0": {"msg-broker-conn-str": "string", "enable": "integer"}})
    assert got.value("sink0", "msg-broker-conn-str") == value and got.value("sink0", "enable") == 1


def test_the_store_and_outbox_hold_the_placeholder_and_the_agent_file_the_value(
    glib: GlibChecker, tmp_path: Path
) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "fleet.yaml").write_text(FLEET)
    db = tmp_path / "state.db"
    applied = _run("dsfleet.reconciler.cli", "apply", manifests, "--db", f"sqlite:///{db}")
    assert applied.returncode == 0, applied.stderr
    rendered = _run(
        "dsfleet.reconciler.cli", "render", "--db", f"sqlite:///{db}", "--node", "edge-1", "-o", "json"
    )
    assert rendered.returncode == 0, rendered.stderr
    assert PLACEHOLDER in rendered.stdout
    config = json.loads(rendered.stdout)
    files = {f["path"]: f for inst in config["instances"] for f in inst["files"]}
    assert files["deepstream_app_config.txt"]["secrets"] == ["iot-hub"]
    assert CANARY.encode() not in db.read_bytes()
    assert CANARY not in applied.stdout + applied.stderr + rendered.stdout + rendered.stderr

    state = tmp_path / "agent"
    secret = state / "secrets" / "iot-hub"
    secret.mkdir(parents=True, mode=0o700)
    (secret / "password").write_text(
        AZURE + "\n"
    )  # one trailing newline is dropped, as for every secret file
    os.chmod(secret / "password", 0o600)
    node_file = tmp_path / "node.json"
    node_file.write_text(rendered.stdout)
    written = _run("dsfleet.agent.cli", "materialize", "--config", node_file, "--state-dir", state)
    assert written.returncode == 0, written.stderr
    assert CANARY not in written.stdout + written.stderr
    app = state / "instances" / "events" / "deepstream_app_config.txt"
    assert stat.S_IMODE(app.stat().st_mode) == 0o600
    got = glib.read_one(app.read_text(), {"sink0": {"msg-broker-conn-str": "string"}})
    assert got.value("sink0", "msg-broker-conn-str") == AZURE
    assert CANARY.encode() not in (state / "desired.json").read_bytes()
    holders = {p.relative_to(state).as_posix() for p in state.rglob("*") if p.is_file()
               and CANARY.encode() in p.read_bytes()}  # fmt: skip
    assert holders == {"secrets/iot-hub/password", "instances/events/deepstream_app_config.txt"}


def test_import_moves_a_connection_string_with_credentials_to_a_secret(
    samples_dir: Path, glib: GlibChecker, tmp_path: Path
) -> None:
    yolo = (samples_dir / "DeepStream-Yolo__deepstream_app_config.txt").read_text()
    sink = (
        "[sink9]\nenable=1\ntype=6\nmsg-conv-config=msgconv.txt\n"
        "msg-broker-proto-lib=/opt/nvidia/deepstream/deepstream/lib/libnvds_azure_proto.so\n"
        f"msg-broker-conn-str={AZURE}\ntopic=events\n\n"
        "[message-consumer0]\nenable=1\nproto-lib=/opt/nvidia/deepstream/deepstream/lib/libnvds_amqp_proto.so\n"
        f"conn-str=broker;5672;user;pass={CANARY}\nsubscribe-topic-list=cmd\n\n"
    )
    app = tmp_path / "app.txt"
    app.write_text(yolo.replace("[streammux]", sink + "[streammux]", 1))
    (tmp_path / "config_infer_primary.txt").write_text(
        (samples_dir / "DeepStream-Yolo__config_infer_primary.txt").read_text()
    )
    out = tmp_path / "out"
    secrets = tmp_path / "agent" / "secrets"
    proc = _run(
        "dsfleet.reconciler.cli",
        "import-deepstream-app",
        app,
        "--out",
        out,
        "--secrets-out",
        secrets,
        "--render",
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "msg-broker-conn-str carried credentials; the whole string moved to secret 'app-sink1'" in proc.stderr
    )
    assert CANARY not in proc.stdout + proc.stderr
    assert CANARY.encode() not in _everything(out)
    assert "msg-broker-conn-str:\n          secretRef: app-sink1" in (out / "instances.yaml").read_text()
    assert sorted(p.name for p in (secrets / "app-sink1").iterdir()) == ["password"]
    assert stat.S_IMODE((secrets / "app-sink1" / "password").stat().st_mode) == 0o600
    rendered = (out / "rendered" / "deepstream_app_config.txt").read_text()
    assert "msg-broker-conn-str=${secret:app-sink1:password}\n" in rendered
    assert "conn-str=${secret:app-message-consumer0:password}\n" in rendered
    filled = fill_placeholders(rendered, ["app-sink1", "app-message-consumer0", "app-src0"],
                               LocalSecretStore(tmp_path / "agent", {}), kind="keyfile")  # fmt: skip
    got = glib.read_one(filled, {"sink1": {"msg-broker-conn-str": "string"},
                                 "message-consumer0": {"conn-str": "string"}})  # fmt: skip
    assert got.value("sink1", "msg-broker-conn-str") == AZURE
    assert got.value("message-consumer0", "conn-str") == f"broker;5672;user;pass={CANARY}"
