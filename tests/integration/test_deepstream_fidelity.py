"""Each cause of issue 23, as a GLib round trip: a real config (or a variant of one) imported, rendered, and its
effective configuration compared with the original's under real GLib (tests/support/effective.py), plus what
the import itself says. The variants live in a copy of the corpus, beside the files they name."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.dscorpus import CORPUS, Outcome, entries, run_corpus
from tests.support.glibcheck import GlibChecker

REPO = Path(__file__).resolve().parents[2]
SDK = "hiennguyen9874/deepstream-sources"
SOURCE4 = "samples/configs/deepstream-app/source4_1080p_dec_infer-resnet_tracker_sgie_tiled_display_int8.txt"
SOURCE30 = "samples/configs/deepstream-app/source30_1080p_dec_infer-resnet_tiled_display_int8.txt"
USB = "samples/configs/deepstream-app/source1_usb_dec_infer_resnet_int8.txt"
PRE_SGIE = "samples/configs/deepstream-app/source4_1080p_dec_preprocess_infer-resnet_preprocess_sgie_tiled_display_int8.txt"
YOLO = "marcoslucianops/DeepStream-Yolo"
AZURE = "toolboc/Intelligent-Video-Analytics-with-NVIDIA-Jetson-and-Microsoft-Azure"


def _variants(glib: GlibChecker, tmp: Path, variants: list[tuple[str, str, str, str]],
              files: tuple[tuple[str, str, str], ...] = ()) -> list[Outcome]:  # fmt: skip
    """(repo, base path, new path, text): write each variant beside its base in a copy of the corpus (and the
    extra ``files``: repo, path, text) and run them (and nothing else) through import, render and the effective
    comparison."""
    root = tmp / "corpus"
    shutil.copytree(CORPUS, root)
    for repo, path, text in files:
        (root / repo.replace("/", "__") / path).write_text(text)
    base = {(e.repo, e.path): e for e in entries()}
    rows = ["kind\trepo\tpath\tcommit\tlicence\torigin"]
    for repo, path, new, text in variants:
        e = base[(repo, path)]
        (root / repo.replace("/", "__") / new).write_text(text)
        rows.append("\t".join(("app", repo, new, e.commit, e.licence, e.origin)))
    for e in entries():
        if e.kind != "app":  # the files the variants name, at their places
            rows.append("\t".join((e.kind, e.repo, e.path, e.commit, e.licence, e.origin)))
    (root / "SOURCES.tsv").write_text("\n".join(rows) + "\n")
    return [o for o in run_corpus(entries(root), glib) if o.entry.kind == "app"]


def _text(repo: str, path: str) -> str:
    return (CORPUS / repo.replace("/", "__") / path).read_text()


def _equal(outcome: Outcome) -> None:
    assert outcome.imported and outcome.validated and outcome.rendered, (outcome.refusal, outcome.errors)
    assert outcome.equal, outcome.differences
    assert not outcome.dangling, outcome.dangling


def test_cause_1_an_app_level_labelfile_does_not_replace_the_nvinfer_files(
    glib: GlibChecker, tmp_path: Path
) -> None:
    text = _text(SDK, SOURCE4).replace("[primary-gie]\n", "[primary-gie]\nlabelfile-path=osd_labels.txt\n", 1)
    labels = (SDK, "samples/configs/deepstream-app/osd_labels.txt", "car\nbike\nperson\nsign\n")
    (outcome,) = _variants(glib, tmp_path, [(SDK, SOURCE4, "samples/configs/deepstream-app/labels_app.txt", text)],
                           (labels,))  # fmt: skip
    _equal(outcome)  # the element's labelfile-path is the nvinfer file's; the group's stays the group's


def test_cause_2_valid_values_deepstream_accepts_are_accepted(glib: GlibChecker, tmp_path: Path) -> None:
    yolo = _text(YOLO, "deepstream_app_config.txt").replace(
        "[tiled-display]\nenable=1", "[tiled-display]\nenable=2"
    )
    sdk = _text(SDK, SOURCE30).replace("uri=file://../../streams/", "uri=file:/opt/nvidia/deepstream/deepstream/"
                                       "samples/streams/", 1)  # fmt: skip
    assert "enable=2" in yolo and "uri=file:/opt" in sdk
    outcomes = _variants(glib, tmp_path, [(YOLO, "deepstream_app_config.txt", "tiled2.txt", yolo),
                                    (SDK, SOURCE30, "samples/configs/deepstream-app/one_slash.txt", sdk)])  # fmt: skip
    for outcome in outcomes:
        _equal(outcome)
    broker = {o.entry.label: o for o in run_corpus([e for e in entries() if e.repo == AZURE], glib)}
    azure = broker[f"{AZURE}:services/DEEPSTREAM/configs/DSConfig-YoloV3.txt"]
    _equal(azure)  # a type-6 sink on the Azure IoT Edge module adapter: no msg-broker-conn-str


def test_cause_3_a_secondary_pre_process_renders_its_file(glib: GlibChecker, tmp_path: Path) -> None:
    (outcome,) = [o for o in run_corpus([e for e in entries() if e.repo == SDK], glib)
                  if o.entry.path == PRE_SGIE]  # fmt: skip
    _equal(outcome)


def test_cause_4_a_bad_gie_file_is_refused_with_its_line_and_reason(
    glib: GlibChecker, tmp_path: Path
) -> None:
    app = tmp_path / "app.txt"
    app.write_text(_text(YOLO, "deepstream_app_config.txt"))
    gie = _text(YOLO, "config_infer_primary.txt").replace("network-type=0", "network-type=9")
    assert "network-type=9" in gie
    (tmp_path / "config_infer_primary.txt").write_text(gie)
    proc = subprocess.run([sys.executable, "-m", "dsfleet.reconciler.cli", "import-deepstream-app", str(app),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO, timeout=120,
                          check=False)  # fmt: skip
    assert proc.returncode == 2
    line = gie.splitlines().index("network-type=9") + 1
    assert re.search(rf"config_infer_primary\.txt:{line}:14: error: network-type in \[property\]: must be one of",
                     proc.stderr), proc.stderr  # fmt: skip
    assert re.search(
        r"app\.txt:\d+:1: note: \[primary-gie\] config-file names .*config_infer_primary\.txt", proc.stderr
    )
    nvinfer = subprocess.run([sys.executable, "-m", "dsfleet.reconciler.cli", "import-nvinfer",
                              str(tmp_path / "config_infer_primary.txt")], capture_output=True, text=True, cwd=REPO,
                             timeout=120, check=False)  # fmt: skip
    assert f":{line}:14: error: network-type in [property]" in nvinfer.stderr  # the same words either way


def test_cause_5_deepstream_defaults_stay_defaults(glib: GlibChecker, tmp_path: Path) -> None:
    text = _text(SDK, SOURCE4)
    text = re.sub(r"\[application\]\n(?:[^\[]*\n)", "", text, count=1)
    text = re.sub(r"\nbatched-push-timeout=\d+", "", text).replace("live-source=0\n", "")
    text = text.replace(
        "type=3\nuri=file://../../streams/sample_1080p_h264.mp4", "type=4\nuri=rtsp://127.0.0.1:8554/a"
    )
    assert "[application]" not in text and "batched-push-timeout" not in text and "type=4" in text
    (outcome,) = _variants(
        glib, tmp_path, [(SDK, SOURCE4, "samples/configs/deepstream-app/defaults.txt", text)]
    )
    _equal(outcome)  # no perf measurement, timeout -1, live-source 0: as deepstream-app runs it


def test_cause_6_a_host_directory_imports_with_its_files_and_a_mount(
    glib: GlibChecker, tmp_path: Path
) -> None:
    """DeepStream-Yolo as users run it: from its own directory. Without --origin that directory is mounted at the
    same path; the labels are imported; the engine name and models are absolute."""
    here = tmp_path / "DeepStream-Yolo"
    shutil.copytree(CORPUS / YOLO.replace("/", "__"), here)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "dsfleet.reconciler.cli", "import-deepstream-app",
                           str(here / "deepstream_app_config.txt"), "--out", str(out), "--render"],
                          capture_output=True, text=True, cwd=REPO, timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    instances = (out / "instances.yaml").read_text()
    assert f"source: {here}" in instances and f"target: {here}" in instances
    profiles = (out / "profiles.yaml").read_text()
    assert "labels.txt: |-\n" in profiles  # a literal block (no final newline, like the file), as readable
    rendered = {p.name: p.read_text() for p in (out / "rendered").iterdir()}
    assert rendered["labels.txt"] == (here / "labels.txt").read_text()
    assert f"model-engine-file={here}/model_b1_gpu0_fp32.engine" in rendered["config_infer_primary.txt"]
    validate = subprocess.run([sys.executable, "-m", "dsfleet.reconciler.cli", "validate", str(out)],
                              capture_output=True, text=True, cwd=REPO, timeout=120, check=False)  # fmt: skip
    assert "relative-path" not in validate.stderr and validate.returncode == 0, validate.stderr


def test_cause_7_usb_and_csi_cameras_round_trip(glib: GlibChecker, tmp_path: Path) -> None:
    usb = _text(SDK, USB)
    csi = usb.replace("type=1", "type=5").replace("camera-v4l2-dev-node=0", "camera-csi-sensor-id=0")
    listed = re.sub(r"\[source0\]\n(?:[^\[]*\n)", "[source-list]\nlist=usb:0;csi:1\n\n[source-attr-all]\nenable=1\n"
                    "camera-width=640\ncamera-height=480\n\n", usb, count=1).replace("batch-size=1", "batch-size=2")  # fmt: skip
    assert "type=5" in csi and "camera-csi-sensor-id=0" in csi and "list=usb:0;csi:1" in listed
    outcomes = _variants(glib, tmp_path, [(SDK, USB, "samples/configs/deepstream-app/usb.txt", usb),
                                    (SDK, USB, "samples/configs/deepstream-app/csi.txt", csi),
                                    (SDK, USB, "samples/configs/deepstream-app/listed.txt", listed)])  # fmt: skip
    for outcome in outcomes:
        _equal(outcome)
