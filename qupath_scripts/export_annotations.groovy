/*
 * wsdal-wsi: export the pathologist's annotations of every image, for training without QuPath.
 * For QuPath 0.5 and 0.6 (checked against the v0.5.1 and v0.6.0 source).
 *
 * HOW TO RUN
 *   In QuPath: open the project, Automate > Script editor, File > Open... this file,
 *   then Run > Run for project, select all images, Run.
 *   Headless (no window):  QuPath script -p /path/to/project.qpproj export_annotations.groovy
 *
 * HEADLESS RUNS STOP AT THE FIRST UNREACHABLE SLIDE
 *   QuPath's `script -p` (0.5 and 0.6) opens each image's slide outside its per-image error
 *   handling: one image whose slide cannot be opened (moved, renamed, disk not mounted) ends
 *   the whole run with exit code 1, and the images after it are not processed.
 *   Relink the slides first (File > Project > Relink images), or use the GUI's
 *   Run > Run for project, which reports a failing image and goes on with the others.
 *
 * WHAT IT DOES
 *   For each image, writes its annotations (the Points clicks, the Region polygons) as
 *   QuPath GeoJSON to
 *       <project>/wsdal/annotations/<entryID>.geojson
 *   which `wsdal inspect PROJECT` and `wsdal train PROJECT` read on a machine without QuPath.
 *   The file is written to a temporary name first and then moved into place, so an
 *   interrupted run never leaves a half-written export. An image with no annotations still
 *   gets a file (an empty FeatureCollection): "no clicks" is not the same as "not exported".
 *   Objects made by wsdal-wsi itself (their name starts with "WS-DAL") are not exported,
 *   except those you answered, with their id: a WS-DAL detection whose class you changed
 *   (to a look-alike class: a false positive; to another mitosis class: confirmed) or that
 *   you locked (confirmed), and a "WS-DAL check" or "WS-DAL review" point whose class you
 *   changed to a mitosis or look-alike class. `wsdal train` takes them as trusted labels.
 *   Nothing in the project is changed.
 */

import java.nio.file.Files
import java.nio.file.StandardCopyOption

// The folder and marker rules shared with the Python side (wsdal_wsi/qupath/project.py, model.py)
def EXCHANGE_DIR = "wsdal"
def ANNOTATIONS_DIR = "annotations"
def TOOL_PREFIX = "WS-DAL"
def DETECTION_CLASS = "Mitosis"
def QUESTION_CLASSES = ["WS-DAL check", "WS-DAL review"]

def entry = getProjectEntry()
if (entry == null)
    throw new IllegalStateException("Run this script on a project (Run > Run for project)")

def dir = buildFilePath(PROJECT_BASE_DIR, EXCHANGE_DIR, ANNOTATIONS_DIR)
mkdirs(dir)

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

def objects = getAnnotationObjects().findAll { !isTool(it) || isAnswered(it) }
objects.addAll(getDetectionObjects().findAll { isAnswered(it) })

def target = new File(dir, entry.getID() + ".geojson")
def tmp = new File(dir, "." + entry.getID() + ".geojson.tmp")
exportObjectsToGeoJson(objects, tmp.getAbsolutePath(), "FEATURE_COLLECTION")
try {
    Files.move(tmp.toPath(), target.toPath(), StandardCopyOption.REPLACE_EXISTING,
            StandardCopyOption.ATOMIC_MOVE)
} catch (java.nio.file.AtomicMoveNotSupportedException ignored) {
    Files.move(tmp.toPath(), target.toPath(), StandardCopyOption.REPLACE_EXISTING)
}
def answers = objects.count { isTool(it) }
println "wsdal: exported ${objects.size()} objects (${answers} answers to WS-DAL objects) of '${entry.getImageName()}' to ${target}"
