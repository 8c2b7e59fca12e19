"""import-deepstream-app over every deepstream-app sample: manifests that validate, and a round trip key for key.

Every key of the original app config (and of each GIE file it references that is present) is read by real GLib
with deepstream-app's getter, and so is the place dsfleet renders it (``AppImport.placements``); all in one
batched GLib subprocess. Known, documented differences: a MultiURI ``type=3`` source with ``num-sources=K``
becomes K URI sources (``type=2``, as deepstream-app expands it itself), and ``config-file`` is the file's base
name (dsfleet writes every file into /workspace/configs).
"""

from __future__ import annotations

import posixpath
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from dsfleet.reconciler.importers.appfiles import read_gie_near
from dsfleet.reconciler.importers.deepstreamapp import AppImport, import_app
from dsfleet.reconciler.importers.keyfilereader import parse_keyfile
from dsfleet.reconciler.importers.nvinfer import import_keyfile
from dsfleet.reconciler.importers.yamlconfigs import is_yaml_config, keyfile_name, yaml_to_keyfile
from dsfleet.schemas.deepstream import NVINFER_CLASS_ATTRS_KEYS, NVINFER_PROPERTY_KEYS, ValueKind, spec_for
from tests.support.glibcheck import GlibChecker, getter_for

REPO = Path(__file__).resolve().parents[2]
EXPANDED = {"type", "num-sources"}


def app_samples(samples_dir: Path) -> list[Path]:
    return sorted(p for p in samples_dir.glob("*.txt") if "[primary-gie]" in p.read_text(errors="replace"))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dsfleet.reconciler.cli", "import-deepstream-app", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=120, check=False)  # fmt: skip


def _gie_getters(keyfile: Any) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for group in keyfile.groups:
        table = NVINFER_PROPERTY_KEYS if group.name == "property" else NVINFER_CLASS_ATTRS_KEYS
        out[group.name] = {}
        for key in group.effective():
            spec = spec_for(table, key)
            out[group.name][key] = getter_for(spec.kind if spec is not None else ValueKind.STRING)
    return out


def test_every_deepstream_app_sample_imports_validates_and_round_trips(
    samples_dir: Path, glib: GlibChecker, tmp_path: Path
) -> None:
    samples = app_samples(samples_dir)
    assert len(samples) >= 3  # the source30-style SDK app, the TAO app, the YOLO app
    requests: list[tuple[str, dict[str, dict[str, str]]]] = []
    checks: list[
        tuple[int, str, str, int, str, str, str]
    ] = []  # (orig req, group, key, rendered req, g, k, why)
    for n, sample in enumerate(samples):
        _sample_checks(sample, tmp_path / f"case{n}", requests, checks)
    _verify(glib, requests, checks)
    assert len(checks) > 150


def test_every_yaml_deepstream_app_sample_imports_validates_and_round_trips(
    samples_dir: Path, glib: GlibChecker, tmp_path: Path
) -> None:
    """The YAML app configs (DS 6.2+) of the samples, with the sources CSV each names (not among the samples:
    written here, four URI sources): every key, as the key file it stands for, in what dsfleet renders."""
    copies = tmp_path / "samples"
    shutil.copytree(samples_dir, copies)
    samples = sorted(p for p in copies.glob("*.yml") if "primary-gie:" in p.read_text())
    assert len(samples) >= 2  # the SDK's source4 app, the TAO PeopleNet app
    requests: list[tuple[str, dict[str, dict[str, str]]]] = []
    checks: list[tuple[int, str, str, int, str, str, str]] = []
    for n, sample in enumerate(samples):
        csv = sample.read_text().split("csv-file-path:", 1)[1].split()[0]
        prefix = sample.name.rsplit("__", 1)[0]
        (copies / f"{prefix}__{csv}").write_text(SOURCES_CSV)
        _sample_checks(sample, tmp_path / f"case{n}", requests, checks)
    _verify(glib, requests, checks)
    assert len(checks) > 100


SOURCES_CSV = """enable,type,uri,num-sources,gpu-id,cudadec-memtype
1,3,file:///opt/nvidia/deepstream/deepstream/samples/streams/sample_1080p_h264.mp4,2,0,0
1,4,rtsp://127.0.0.1:8554/cam1,1,0,0
1,2,file:///opt/nvidia/deepstream/deepstream/samples/streams/sample_1080p_h265.mp4,1,0,0
"""


def _as_keyfile(path: Path, text: str) -> str:
    """The key-file text of a config (a YAML config's as it stands for one)."""
    return yaml_to_keyfile(text, str(path), read_gie_near(path)) if is_yaml_config(path.name) else text


def _verify(glib: GlibChecker, requests: list[Any], checks: list[Any]) -> None:
    files = glib.read(requests)  # one GLib subprocess for every file of every sample
    assert all(f.load_error is None for f in files), [f.load_error for f in files if f.load_error]
    for oi, g, k, ri, rg, rk, why in checks:
        assert files[ri].value(rg, rk) == files[oi].value(g, k), (why, g, k, rg, rk)


def _sample_checks(sample: Path, out: Path, requests: list[Any], checks: list[Any]) -> None:
    """Import ``sample`` through the CLI (with --render) and queue, for every key of the original, a GLib read of
    it and of the place dsfleet renders it."""
    proc = _cli(str(sample), "--out", str(out), "--render")
    assert proc.returncode == 0, proc.stderr
    result = import_app(sample.read_text(), str(sample), read_gie_near(sample))
    rendered = {p.name: p.read_text() for p in (out / "rendered").iterdir()}
    text = _as_keyfile(sample, sample.read_text())
    original = parse_keyfile(text, sample.name)
    rendered_req: dict[str, int] = {}
    getters_for: dict[str, dict[str, dict[str, str]]] = {}
    orig_getters: dict[str, dict[str, str]] = {}
    orig_index = len(requests)
    requests.append(("", {}))  # filled below
    pending: list[tuple[str, str, str, str, str, str]] = []
    for group in original.groups:
        enabled = group.get("enable")
        for key in group.effective():
            kind = result.getters[(group.name, key)]
            orig_getters.setdefault(group.name, {})[key] = getter_for(kind)
            if key == "config-file" and "gie" in group.name:
                raw = group.effective()[key].raw
                assert f"config-file={keyfile_name(raw)}\n" in rendered["deepstream_app_config.txt"]
                continue
            if (group.name, key) in result.paths:
                continue  # resolved: compared as DeepStream opens it by tests/integration/test_deepstream_corpus.py
            place = result.placements.get((group.name, key))
            if place is None and not any(p[0] == group.name for p in result.placements):
                # a disabled group dsfleet does not import
                assert enabled is None or enabled.raw.strip() == "0", (sample.name, group.name, key)
                continue
            if place is None:
                assert key in EXPANDED and group.name.startswith("source"), (sample.name, group.name, key)
                continue
            file, rgroup, rkey = place
            getters_for.setdefault(file, {}).setdefault(rgroup, {})[rkey] = getter_for(kind)
            pending.append((group.name, key, file, rgroup, rkey, sample.name))
    requests[orig_index] = (text, orig_getters)
    for file, getters in getters_for.items():
        rendered_req[file] = len(requests)
        requests.append((rendered[file], getters))
    for g, k, file, rg, rk, why in pending:
        checks.append((orig_index, g, k, rendered_req[file], rg, rk, why))
    _gie_round_trip(result, sample, rendered, requests, checks)


def _gie_round_trip(result: AppImport, sample: Path, rendered: dict[str, str],
                    requests: list[Any], checks: list[Any]) -> None:  # fmt: skip
    """Each referenced GIE file that is present: every key, as typed by nvinfer, in the rendered GIE file (an
    app-level key overrides the file's, as deepstream-app does)."""
    assert result.profile is not None
    read = read_gie_near(sample)
    app = parse_keyfile(_as_keyfile(sample, sample.read_text()), sample.name)
    for group in app.groups:
        ref = group.get("config-file")
        if ref is None or (not group.name.endswith("gie") and not group.name.startswith("secondary-gie")):
            continue
        found = read(ref.raw.strip())
        if found is None:
            continue
        source_text, where = found
        text = _as_keyfile(Path(where), source_text)
        original = parse_keyfile(text, where)
        getters = _gie_getters(original)
        name = keyfile_name(ref.raw.strip())
        mine = parse_keyfile(rendered[name], name)
        oi = len(requests)
        requests.append((text, getters))
        ri = len(requests)
        requests.append((rendered[name], _gie_getters(mine)))
        overridden = {
            k for k in group.effective() if result.placements.get((group.name, k), ("",))[0] == name
        }
        for g, keys in getters.items():
            for k in keys:
                if g == "property" and (k in overridden or k == "is-classifier"):
                    continue  # the app-level value was checked against the rendered file above
                spec = spec_for(NVINFER_PROPERTY_KEYS, k) if g == "property" else None
                if spec is not None and spec.is_path:
                    continue  # resolved against the file's directory (the corpus test compares them)
                if import_keyfile(source_text, where).gie and k not in (
                    mine.group(g).effective() if mine.group(g) else {}
                ):
                    continue  # dropped as deprecated/legacy (checked by test_import_samples)
                checks.append((oi, g, k, ri, g, k, f"{sample.name} → {name}"))


def test_credentials_in_source_uris_move_to_secret_files(samples_dir: Path, tmp_path: Path) -> None:
    app = tmp_path / "app.txt"
    yolo = (samples_dir / "DeepStream-Yolo__deepstream_app_config.txt").read_text()
    app.write_text(yolo.replace(
        "uri=file:///opt/nvidia/deepstream/deepstream/samples/streams/sample_1080p_h264.mp4",
        "uri=rtsp://admin:s3cr%40t@127.0.0.1:8554/cam").replace("type=3", "type=4"))  # fmt: skip
    (tmp_path / "config_infer_primary.txt").write_text(
        (samples_dir / "DeepStream-Yolo__config_infer_primary.txt").read_text()
    )
    out = tmp_path / "out"
    proc = _cli(str(app), "--out", str(out), "--secrets-out", str(tmp_path / "sec"), "--render")
    assert proc.returncode == 0, proc.stderr
    secret = next((tmp_path / "sec").iterdir())
    assert (secret / "password").read_text() == "s3cr@t" and (secret / "password").stat().st_mode & 0o077 == 0
    everything = "".join(p.read_text() for p in out.rglob("*") if p.is_file()) + proc.stdout + proc.stderr
    assert "s3cr" not in everything
    assert "${secret:" in (out / "rendered" / "deepstream_app_config.txt").read_text()
    again = _cli(str(app), "--out", str(out))
    assert again.returncode == 2 and "--force" in again.stderr


SOURCE_LIST = """[source-list]
num-source-bins=2
list=rtsp://127.0.0.1:8554/gate;file:///media/dock.mp4
sensor-id-list=UniqueSensorId1;UniqueSensorId2
sensor-name-list=Gate;Dock
use-nvmultiurisrcbin=0
max-batch-size=10
http-ip=localhost
http-port=9000
stream-name-display=1

[source-attr-all]
enable=1
type=3
num-sources=1
gpu-id=0
cudadec-memtype=0
latency=100
rtsp-reconnect-interval-sec=10
select-rtp-protocol=4

[source1]
latency=200

"""


def _with_source_list(samples_dir: Path, tmp_path: Path, groups: str) -> Path:
    """The YOLO sample with its [source0] replaced by ``groups`` (and its GIE file beside it)."""
    yolo = (samples_dir / "DeepStream-Yolo__deepstream_app_config.txt").read_text()
    start = yolo.index("[source0]")
    end = yolo.index("\n[", start) + 1
    app = tmp_path / "app.txt"
    app.write_text(yolo[:start] + groups + yolo[end:])
    (tmp_path / "config_infer_primary.txt").write_text(
        (samples_dir / "DeepStream-Yolo__config_infer_primary.txt").read_text()
    )
    return app


def test_a_source_list_imports_as_cameras_and_round_trips(
    samples_dir: Path, glib: GlibChecker, tmp_path: Path
) -> None:
    app = _with_source_list(samples_dir, tmp_path, SOURCE_LIST)
    out = tmp_path / "out"
    proc = _cli(str(app), "--out", str(out), "--render")
    assert proc.returncode == 0, proc.stderr
    assert "[source1] overrides a listed source" in proc.stderr and "[source-list]" not in proc.stderr
    cameras = (out / "cameras.yaml").read_text()
    assert "cameraId: UniqueSensorId1" in cameras and "url: file:///media/dock.mp4" in cameras
    result = import_app(app.read_text(), str(app), read_gie_near(app))
    rendered = (out / "rendered" / "deepstream_app_config.txt").read_text()
    assert "[source0]" not in rendered
    original = parse_keyfile(app.read_text(), app.name)
    want: dict[str, dict[str, str]] = {}
    got: dict[str, dict[str, str]] = {}
    pairs = []
    for name in ("source-list", "source-attr-all", "source1"):
        group = original.group(name)
        assert group is not None
        for key in group.effective():
            kind = result.getters[(name, key)]
            _file, rgroup, rkey = result.placements[(name, key)]
            want.setdefault(name, {})[key] = getter_for(kind)
            got.setdefault(rgroup, {})[rkey] = getter_for(kind)
            pairs.append((name, key, rgroup, rkey))
    files = glib.read([(app.read_text(), want), (rendered, got)])
    assert all(f.load_error is None for f in files)
    for g, k, rg, rk in pairs:
        assert files[1].value(rg, rk) == files[0].value(g, k), (g, k)
    assert len(pairs) == 18


def test_credentials_in_a_source_list_move_to_secret_files(samples_dir: Path, tmp_path: Path) -> None:
    groups = SOURCE_LIST.replace("rtsp://127.0.0.1", "rtsp://admin:s3cr%40t@127.0.0.1")
    app = _with_source_list(samples_dir, tmp_path, groups)
    out = tmp_path / "out"
    proc = _cli(str(app), "--out", str(out), "--secrets-out", str(tmp_path / "sec"), "--render")
    assert proc.returncode == 0, proc.stderr
    secret = tmp_path / "sec" / "app-src0"
    assert (secret / "password").read_text() == "s3cr@t" and (secret / "username").read_text() == "admin"
    everything = "".join(p.read_text() for p in out.rglob("*") if p.is_file()) + proc.stdout + proc.stderr
    assert "s3cr" not in everything
    assert (
        "list=rtsp://${secret:app-src0}@127.0.0.1:8554/gate;file:///media/dock.mp4\n"
        in (out / "rendered" / "deepstream_app_config.txt").read_text()
    )


def test_app_level_gie_keys_and_pre_process_import_typed_and_round_trip(
    samples_dir: Path, glib: GlibChecker, tmp_path: Path
) -> None:
    prefix = "deepstream-sources__samples__configs__deepstream-app__"
    for gie_file in samples_dir.glob(f"{prefix}config_*.txt"):
        (tmp_path / gie_file.name.removeprefix(prefix)).write_text(gie_file.read_text())
    text = (
        samples_dir / f"{prefix}source4_1080p_dec_infer-resnet_tracker_sgie_tiled_display_int8.txt"
    ).read_text()
    text = text.replace("[primary-gie]\n", "[pre-process]\nenable=1\nconfig-file=config_preprocess.txt\n\n"
                        "[primary-gie]\ninput-tensor-meta=1\nbbox-bg-color3=0;0.5;0;0.25\n", 1)  # fmt: skip
    app = tmp_path / "app.txt"
    app.write_text(text)
    out = tmp_path / "out"
    proc = _cli(str(app), "--out", str(out), "--render")
    assert proc.returncode == 0, proc.stderr
    instances = (out / "instances.yaml").read_text()
    extra = YAML(typ="safe").load(instances)["spec"]["app"].get("extraGroups", {})
    assert "primary-gie" not in extra  # no key of it goes to extraGroups any more
    assert "    gies:\n" in instances and "bbox-bg-color3:" in instances
    result = import_app(text, str(app), read_gie_near(app))
    rendered = {p.name: p.read_text() for p in (out / "rendered").iterdir()}
    original = parse_keyfile(text, app.name)
    want: dict[str, dict[str, str]] = {}
    got: dict[str, dict[str, dict[str, str]]] = {}
    pairs = []
    for name in ("pre-process", "primary-gie", "secondary-gie0"):
        group = original.group(name)
        assert group is not None
        for key in group.effective():
            kind = result.getters[(name, key)]
            want.setdefault(name, {})[key] = getter_for(kind)
            if key == "config-file":
                continue
            if (
                name,
                key,
            ) in result.paths:  # model-engine-file, labelfile-path: resolved against app.txt's directory
                assert result.paths[(name, key)] == posixpath.normpath(f"{app.parent}/{group.get(key).raw}")  # type: ignore[union-attr]
                continue
            file, rgroup, rkey = result.placements[(name, key)]
            got.setdefault(file, {}).setdefault(rgroup, {})[rkey] = getter_for(kind)
            pairs.append((name, key, file, rgroup, rkey))
    order = sorted(got)
    files = glib.read([(text, want), *((rendered[f], got[f]) for f in order)])
    assert all(f.load_error is None for f in files)
    for g, k, file, rg, rk in pairs:
        assert files[1 + order.index(file)].value(rg, rk) == files[0].value(g, k), (g, k)
    assert {("primary-gie", "bbox-border-color0"), ("primary-gie", "nvbuf-memory-type"),
            ("pre-process", "enable"), ("primary-gie", "input-tensor-meta")} <= {p[:2] for p in pairs}  # fmt: skip
