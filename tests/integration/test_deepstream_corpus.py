"""The DeepStream corpus (tests/data/deepstream-corpus/SOURCES.tsv): real public configs of NVIDIA's SDK samples
and reference apps and of community projects, imported, validated, rendered and compared by their effective
configuration under real GLib (:mod:`tests.support.effective`); one batched GLib subprocess for all of it.

The expectations are exact: every app config and every GIE file comes back effectively equal, with no relative
path left dangling, except the listed cases, each a real DeepStream refusal or a documented dsfleet limit.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.dscorpus import CORPUS, Outcome, entries, run_corpus
from tests.support.glibcheck import GlibChecker

GCC = re.compile(r"^[^:\s]+:\d+:\d+: error: .+")
REFUSED = {
    # nvinfer refuses it too: "Error. Invalid value for network-type':'4'" (DeepStream 7.0 knows 0-3 and 100)
    "NVIDIA-AI-IOT/deepstream_tao_apps:configs/nvinfer/bodypose3d_tao/config_bodypose_post_process_sgie.yml":
        "config_bodypose_post_process_sgie.yml:21:14: error: network-type in [property]: must be one of",
}  # fmt: skip
NOT_VALIDATED = {
    # a dewarper test without inference: deepstream-app runs it; dsfleet wants a profile (instance-profile-exists)
    "hiennguyen9874/deepstream-sources:samples/configs/deepstream-app/source2_dewarper_test.txt":
        "an instance needs an InferenceProfile",
}  # fmt: skip
LICENCES = ("MIT", "Apache-2.0")


@pytest.fixture(scope="module")
def outcomes(glib: GlibChecker) -> dict[str, Outcome]:
    return {o.entry.label: o for o in run_corpus(entries(), glib)}


def test_the_corpus_lists_where_each_file_comes_from() -> None:
    items = entries()
    assert (
        len([e for e in items if e.kind == "app"]) >= 40 and len([e for e in items if e.kind == "gie"]) >= 120
    )
    for e in items:
        assert e.host.is_file(), e.label
        assert re.fullmatch(r"[0-9a-f]{40}", e.commit), e.label
        assert e.licence.startswith(LICENCES), e.label
        assert e.origin.startswith("/"), e.label
    committed = {p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*") if p.is_file()}
    listed = {f"{e.repo.replace('/', '__')}/{e.path}" for e in items}
    licences = {p for p in committed if p.rsplit("/", 1)[-1].startswith("LICENSE")}
    assert committed - listed <= {"SOURCES.tsv", "LISTED.tsv"} | licences
    for e in entries(listing="LISTED.tsv"):
        assert not e.host.exists(), f"{e.label}: its licence forbids copying; list it only"


def test_every_app_config_comes_back_effectively_equal(outcomes: dict[str, Outcome]) -> None:
    apps = [o for o in outcomes.values() if o.entry.kind == "app"]
    assert len(apps) >= 40
    for o in apps:
        assert o.imported and o.rendered, (o.entry.label, o.refusal, o.errors)
        assert o.equal, (o.entry.label, o.differences)
        assert not o.dangling, (o.entry.label, o.dangling)
        if o.entry.label in NOT_VALIDATED:
            assert not o.validated and NOT_VALIDATED[o.entry.label] in " ".join(o.errors)
        else:
            assert o.validated, (o.entry.label, o.errors)
    stock = [o for o in apps if o.entry.stock]
    assert len(stock) >= 20 and all(o.equal for o in stock)


def test_every_gie_file_comes_back_effectively_equal_or_is_refused_as_deepstream_refuses_it(
    outcomes: dict[str, Outcome],
) -> None:
    gies = [o for o in outcomes.values() if o.entry.kind == "gie"]
    assert len(gies) >= 120
    for o in gies:
        if o.entry.label in REFUSED:
            assert not o.imported and REFUSED[o.entry.label] in o.refusal, o.refusal
            assert GCC.match(o.refusal), o.refusal
            continue
        assert o.imported and o.validated and o.rendered, (o.entry.label, o.refusal, o.errors)
        assert o.equal, (o.entry.label, o.differences)
        assert not o.dangling, (o.entry.label, o.dangling)


def test_the_comparison_sees_a_difference(glib: GlibChecker, tmp_path: Path) -> None:
    """A render that differs from its original in one value is not equal (the check can fail)."""
    from tests.support import effective as eff

    original = "[property]\nbatch-size=4\nnet-scale-factor=0.5\nlabelfile-path=labels.txt\n"
    files = {"/o/a.txt": original, "/o/labels.txt": "car\n", "/r/a.txt": original.replace("0.5", "0.25"),
             "/r/labels.txt": "car\n", "/s/a.txt": original, "/s/labels.txt": "cat\n"}  # fmt: skip
    readers = [eff.Reader(files.get, d) for d in ("/o", "/r", "/s", "/o")]
    for reader, path in zip(readers, ("/o/a.txt", "/r/a.txt", "/s/a.txt", "/o/a.txt"), strict=True):
        eff.plan_gie(reader, path)
    eff.fetch(glib, readers)
    a, b, c, d = (eff.gie_effective(r, p) for r, p in zip(readers, ("/o/a.txt", "/r/a.txt", "/s/a.txt", "/o/a.txt"),
                                                          strict=True))  # fmt: skip
    assert eff.differences(a, d) == []
    assert eff.differences(a, b) == [".property.net-scale-factor: 0.5 != 0.25"]
    assert eff.differences(a, c) == [".property.labelfile-path: ('file', 'car\\n') != ('file', 'cat\\n')"]
