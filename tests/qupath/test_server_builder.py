"""serverBuilder entries as QuPath 0.5.1 / 0.6.0 write them (ImageServers, GsonTools)."""

import pytest

from wsdal_wsi.qupath.server_builder import parse_server_builder

from .conftest import BIOFORMATS, OPENSLIDE, qpproj_image, wrap_image

URI = "file:/data/scans/slide.czi"


def _builder(*, args=(), provider=BIOFORMATS, uri=URI, size=(512, 512)):
    return qpproj_image(1, "slide", uri, provider=provider, args=args, size=size)


def test_plain_uri_builder_keeps_the_frame():
    info = parse_server_builder(_builder(provider=OPENSLIDE)["serverBuilder"])
    assert info.uri == URI and info.provider == OPENSLIDE
    assert (info.width, info.height, info.series, info.problem) == (512, 512, None, None)
    assert info.openslide_crops
    assert not parse_server_builder(
        _builder(args=["--no-crop"], provider=OPENSLIDE)["serverBuilder"]
    ).openslide_crops
    assert parse_server_builder(None).uri is None


@pytest.mark.parametrize(
    "args, uri, series, refused",
    [
        (["--series", "0"], URI, "0", False),  # Bio-Formats' builder for a one-scene file
        (["--series", "2"], URI, "2", True),
        (["-s", "1"], URI, "1", True),
        (["--series=3"], URI, "3", True),
        (["--name", "Scene #2"], URI, "name=Scene #2", True),
        ([], URI + "#1", "1", True),  # the v0.2 forms, read only without args
        ([], URI + "?series=4", "4", True),
        ([], URI + "?name=Scene", "name=Scene", True),
        (["--series", "0"], URI + "#3", "0", False),  # args win; the fragment is ignored
        (["--series", "-1"], URI, "-1", False),  # picocli's "not set"
    ],
)
def test_scenes_of_multi_scene_files(args, uri, series, refused):
    info = parse_server_builder(_builder(args=args, uri=uri)["serverBuilder"])
    assert info.series == series
    assert info.uri == uri
    if refused:
        assert "multi-scene file" in info.problem and "OpenSlide" in info.problem
        assert series.removeprefix("name=") in info.problem
    else:
        assert info.problem is None


@pytest.mark.parametrize(
    "builder_type, fields, words",
    [
        ("rotated", {"rotation": "ROTATE_180"}, "rotated (ROTATE_180)"),
        ("rotated", {"rotation": "ROTATE_90"}, "rotated (ROTATE_90)"),
        (
            "affine",
            {
                "transform": {
                    "m00": 1.0,
                    "m10": 0.0,
                    "m01": 0.0,
                    "m11": 1.0,
                    "m02": 50.0,
                    "m12": 0.0,
                }
            },
            "affine transform",
        ),
        (
            "cropped",
            {"region": {"x": 100, "y": 200, "width": 50, "height": 50, "z": 0, "t": 0}},
            "cropped part of the image (from level-0 (100, 200))",
        ),
        ("realtransform", {}, "builderType 'realtransform'"),
    ],
)
def test_wrappers_that_move_pixels_are_refused(builder_type, fields, words):
    image = wrap_image(_builder(), builder_type, **fields)
    info = parse_server_builder(image["serverBuilder"])
    assert info.uri == URI  # the slide is still found, for the message
    assert words in info.problem
    assert "not the slide file's level-0 (x, y)" in info.problem


@pytest.mark.parametrize(
    "builder_type, fields",
    [
        ("rotated", {"rotation": "ROTATE_NONE"}),
        (
            "affine",
            {"transform": {"m00": 1.0, "m10": 0.0, "m01": 0.0, "m11": 1.0, "m02": 0.0, "m12": 0.0}},
        ),
        ("pyramidize", {}),
        ("swapRedBlue", {"order": "BGR"}),
        ("color_deconvolved", {"stains": {}, "channels": [0]}),
        ("z_projected", {"projection": "MAX", "runningOffset": 0}),  # QuPath 0.6
        ("sliced", {"zStart": 0, "zEnd": 1, "zStep": 1, "tStart": 0, "tEnd": 1, "tStep": 1}),
    ],
)
def test_wrappers_that_keep_pixels_are_looked_through(builder_type, fields):
    image = wrap_image(_builder(args=["--series", "0"]), builder_type, **fields)
    info = parse_server_builder(image["serverBuilder"])
    assert info.uri == URI and info.problem is None and info.series == "0"
    assert (info.width, info.height) == (512, 512)


def test_the_first_wrapper_found_explains_and_scenes_inside_wrappers_count():
    rotated_scene = wrap_image(_builder(args=["--series", "1"]), "pyramidize")
    assert "scene 1" in parse_server_builder(rotated_scene["serverBuilder"]).problem
    both = wrap_image(_builder(args=["--series", "1"]), "rotated", rotation="ROTATE_270")
    assert "rotated (ROTATE_270)" in parse_server_builder(both["serverBuilder"]).problem


def test_z_concatenated_reads_its_first_file_and_old_builders_without_type():
    first = _builder()["serverBuilder"]
    other = _builder(uri="file:/data/scans/other.czi")["serverBuilder"]
    info = parse_server_builder({"builderType": "z_concatenated", "builders": [first, other]})
    assert info.uri == URI and info.problem is None
    # QuPath guesses a missing builderType from the fields (JsonImageServerBuilder)
    untyped = {"builder": {"uri": URI, "args": []}, "rotation": "ROTATE_90"}
    assert "rotated (ROTATE_90)" in parse_server_builder(untyped).problem


def test_sparse_image_has_no_slide_of_its_own():
    sparse = {"builderType": "sparse", "regions": [], "path": "x", "metadata": {"width": 9}}
    info = parse_server_builder(sparse)
    assert info.uri is None and "sparse image" in info.problem


# ---------------------------------------------------------------- once the slide is open

MRXS_PROPS = {
    "openslide.vendor": "mirax",
    "openslide.bounds-x": "1000",
    "openslide.bounds-y": "2000",
    "openslide.bounds-width": "400",
    "openslide.bounds-height": "300",
}


def test_openslide_bounds_move_the_origin():
    """QuPath's OpenSlide reader crops to openslide.bounds-* unless --no-crop."""
    cropped = parse_server_builder(_builder(provider=OPENSLIDE, size=(400, 300))["serverBuilder"])
    problem = cropped.slide_problem(MRXS_PROPS, (5000, 6000))
    assert "level-0 (1000, 2000)" in problem and "--no-crop" in problem
    whole = parse_server_builder(
        _builder(provider=OPENSLIDE, args=["--no-crop"], size=(5000, 6000))["serverBuilder"]
    )
    assert whole.slide_problem(MRXS_PROPS, (5000, 6000)) is None
    # bounds at the origin: the same frame, QuPath's size is the bounds' size
    at_origin = {**MRXS_PROPS, "openslide.bounds-x": "0", "openslide.bounds-y": "0"}
    assert cropped.slide_problem(at_origin, (5000, 6000)) is None


def test_a_size_that_differs_means_another_image():
    info = parse_server_builder(_builder(args=["--series", "0"], size=(600, 500))["serverBuilder"])
    problem = info.slide_problem({}, (512, 512))
    assert "scene 0 of the file as 600 x 500 px" in problem and "512 x 512 px" in problem
    assert info.slide_problem({}, (600, 500)) is None
    unknown_size = parse_server_builder({"builderType": "uri", "uri": URI})
    assert unknown_size.slide_problem({}, (1, 1)) is None
