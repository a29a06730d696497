"""The Groovy scripts cannot run here (no QuPath); these tests keep them from drifting
away from the Python side: the same exchange folders, file names and WS-DAL marker rule."""

import re
from pathlib import Path

import pytest

from wsdal_wsi.qupath.model import DETECTION_CLASS, QUESTION_CLASSES, TOOL_NAME_PREFIX
from wsdal_wsi.qupath.project import ANNOTATIONS_DIR, EXCHANGE_DIR, RESULTS_DIR

SCRIPTS = Path(__file__).resolve().parents[2] / "qupath_scripts"
EXPORT = SCRIPTS / "export_annotations.groovy"
IMPORT = SCRIPTS / "import_results.groovy"


def _constant(text: str, name: str) -> str:
    m = re.search(rf'^def {name} = "([^"]*)"$', text, re.M)
    assert m, f"{name} not defined"
    return m.group(1)


def _code(text: str) -> str:
    """The script without comments and string literals (for bracket balance)."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


@pytest.mark.parametrize("script", [EXPORT, IMPORT], ids=lambda p: p.name)
def test_script_opens_with_how_to_run(script):
    text = script.read_text(encoding="utf-8")
    assert text.startswith("/*")
    header = text[: text.index("*/")]
    for words in ("QuPath 0.5 and 0.6", "HOW TO RUN", "Run > Run for project", "QuPath script -p"):
        assert words in header, f"{script.name}: header lacks {words!r}"
    code = _code(text)
    for a, b in ("()", "{}", "[]"):
        assert code.count(a) == code.count(b), f"{script.name}: unbalanced {a}{b}"


@pytest.mark.parametrize("script", [EXPORT, IMPORT], ids=lambda p: p.name)
def test_script_header_says_headless_runs_stop_at_an_unreachable_slide(script):
    """QuPath's ``script -p`` reads each entry's image outside its try (QuPath.java,
    0.5.1 and 0.6.0): the first slide that does not open ends the run."""
    text = script.read_text(encoding="utf-8")
    header = " ".join(text[: text.index("*/")].replace("*", " ").split())
    for words in (
        "HEADLESS RUNS STOP AT THE FIRST UNREACHABLE SLIDE",
        "the images after it are not processed",
        "File > Project > Relink images",
        "Run > Run for project, which reports a failing image and goes on with the others",
    ):
        assert words in header, f"{script.name}: header lacks {words!r}"


@pytest.mark.parametrize("script", [EXPORT, IMPORT], ids=lambda p: p.name)
def test_script_uses_the_python_names(script):
    text = script.read_text(encoding="utf-8")
    assert _constant(text, "EXCHANGE_DIR") == EXCHANGE_DIR
    assert _constant(text, "TOOL_PREFIX") == TOOL_NAME_PREFIX
    # the marker rule: a name starting with the prefix, nothing else
    assert re.search(r"\.startsWith\(TOOL_PREFIX\)", text)
    assert 'entry.getID() + ".geojson"' in text


def test_export_writes_where_python_reads():
    text = EXPORT.read_text(encoding="utf-8")
    assert _constant(text, "ANNOTATIONS_DIR") == ANNOTATIONS_DIR
    assert "buildFilePath(PROJECT_BASE_DIR, EXCHANGE_DIR, ANNOTATIONS_DIR)" in text
    assert f"<project>/{EXCHANGE_DIR}/{ANNOTATIONS_DIR}/<entryID>.geojson" in text
    # tool objects are left out of the export except the answered ones (detections too);
    # writing goes through a temporary file
    assert "getAnnotationObjects().findAll { !isTool(it) || isAnswered(it) }" in text
    assert "getDetectionObjects().findAll { isAnswered(it) }" in text
    assert "Files.move(tmp.toPath(), target.toPath()" in text
    assert 'exportObjectsToGeoJson(objects, tmp.getAbsolutePath(), "FEATURE_COLLECTION")' in text


def test_import_reads_where_python_writes():
    text = IMPORT.read_text(encoding="utf-8")
    assert _constant(text, "RESULTS_DIR") == RESULTS_DIR
    call = 'buildFilePath(PROJECT_BASE_DIR, EXCHANGE_DIR, RESULTS_DIR, entry.getID() + ".geojson")'
    assert call in text
    assert f"<project>/{EXCHANGE_DIR}/{RESULTS_DIR}/<entryID>.geojson" in text
    # only earlier tool objects the pathologist did not answer are removed; only tool
    # objects are added, never one with the id of an answered object
    assert "hierarchy.removeObjects(removed, true)" in text
    assert "findAll { !it.isRootObject() && isTool(it) }" in text
    assert "def removed = previous.findAll { !isAnswered(it) }" in text
    assert "findAll { isTool(it) && !(it.getID() in keptIds) }" in text


def _closure(text, name):
    start = text.index(f"def {name} = {{")
    depth, i = 0, text.index("{", start)
    while True:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start : i + 1]
        i += 1


def test_both_scripts_share_pythons_answered_rule():
    export, imp = EXPORT.read_text(encoding="utf-8"), IMPORT.read_text(encoding="utf-8")
    assert _closure(export, "isAnswered") == _closure(imp, "isAnswered")
    for text in (export, imp):
        assert _constant(text, "DETECTION_CLASS") == DETECTION_CLASS
        listed = re.search(r"def QUESTION_CLASSES = \[(.*)\]", text).group(1)
        assert tuple(re.findall(r'"([^"]+)"', listed)) == QUESTION_CLASSES
        rule = _closure(text, "isAnswered")
        for needle in ("obj.isDetection()", "cls != DETECTION_CLASS || obj.isLocked()",
                       "!(cls in QUESTION_CLASSES)", "getROI().isPoint()"):  # fmt: skip
            assert needle in rule, needle
