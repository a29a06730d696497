/*
 * wsdal-wsi: bring the tool's detections, hotspot and counts into the project.
 * For QuPath 0.5 and 0.6 (checked against the v0.5.1 and v0.6.0 source).
 *
 * HOW TO RUN
 *   In QuPath: open the project, Automate > Script editor, File > Open... this file,
 *   then Run > Run for project, select the images, Run (QuPath saves each image).
 *   Headless (no window):  QuPath script -p /path/to/project.qpproj -s import_results.groovy
 *   (-s saves the images; without it the changes are lost).
 *
 * HEADLESS RUNS STOP AT THE FIRST UNREACHABLE SLIDE
 *   QuPath's `script -p` (0.5 and 0.6) opens each image's slide outside its per-image error
 *   handling: one image whose slide cannot be opened (moved, renamed, disk not mounted) ends
 *   the whole run with exit code 1, and the images after it are not processed (with -s, the
 *   images before it are saved; QuPath 0.6 then also skips updating project.qpproj).
 *   Relink the slides first (File > Project > Relink images), or use the GUI's
 *   Run > Run for project, which reports a failing image and goes on with the others.
 *
 * WHAT IT DOES
 *   For each image, reads
 *       <project>/wsdal/results/<entryID>.geojson
 *   written by `wsdal predict PROJECT ...`, removes the objects an earlier run of wsdal-wsi
 *   added (their name starts with "WS-DAL") and adds the new ones: point detections of class
 *   Mitosis with the measurement "WS-DAL probability", the hotspot and region annotations
 *   with their counts, and the "WS-DAL check" points of `--review N`. Every other object
 *   (the pathologist's annotations, other detections) is left exactly as it was, so running
 *   it twice never duplicates anything. Images without a results file are left unchanged.
 *
 * YOUR ANSWERS ARE KEPT
 *   To mark a false positive, change the class of the detection (e.g. to Non-mitosis); to
 *   confirm one, lock it (or change it to your own mitosis class); to answer a "WS-DAL
 *   check" or "WS-DAL review" point, change its class to a mitosis or look-alike class.
 *   Those objects are kept on the next import (a new object with the same id is not added),
 *   exported by export_annotations.groovy, and trusted by `wsdal train`.
 */

import java.nio.file.Paths
import qupath.lib.io.PathIO

// The folder and marker rules shared with the Python side (wsdal_wsi/qupath/project.py, model.py)
def EXCHANGE_DIR = "wsdal"
def RESULTS_DIR = "results"
def TOOL_PREFIX = "WS-DAL"
def DETECTION_CLASS = "Mitosis"
def QUESTION_CLASSES = ["WS-DAL check", "WS-DAL review"]

def entry = getProjectEntry()
if (entry == null)
    throw new IllegalStateException("Run this script on a project (Run > Run for project)")

def path = buildFilePath(PROJECT_BASE_DIR, EXCHANGE_DIR, RESULTS_DIR, entry.getID() + ".geojson")
def file = new File(path)
if (!file.isFile()) {
    println "wsdal: no results for '${entry.getImageName()}' (${path}); unchanged"
    return
}

def isTool = { obj -> obj.getName() != null && obj.getName().startsWith(TOOL_PREFIX) }
// The pathologist's answers (wsdal_wsi.qupath.model.is_answered: the same rule)
def isAnswered = { obj ->
    def cls = obj.getPathClass() == null ? null : obj.getPathClass().toString()
    if (!isTool(obj) || cls == null || obj.getROI() == null || !obj.getROI().isPoint())
        return false
    if (obj.isDetection())
        return cls != DETECTION_CLASS || obj.isLocked()
    return obj.isAnnotation() && !(cls in QUESTION_CLASSES) && !cls.startsWith(TOOL_PREFIX)
}

def hierarchy = getCurrentHierarchy()
def previous = hierarchy.getAllObjects(false).findAll { !it.isRootObject() && isTool(it) }
def answered = previous.findAll { isAnswered(it) }
def keptIds = answered.collect { it.getID() } as Set
def incoming = PathIO.readObjects(Paths.get(path)).findAll { isTool(it) && !(it.getID() in keptIds) }
def removed = previous.findAll { !isAnswered(it) }

hierarchy.removeObjects(removed, true)
hierarchy.addObjects(incoming)
fireHierarchyUpdate()
println "wsdal: '${entry.getImageName()}': removed ${removed.size()} earlier WS-DAL objects, kept ${answered.size()} you answered, added ${incoming.size()}"
