import numpy as np
import pytest
from shapely.geometry import LineString, MultiPolygon, Polygon, box

from wsdal_wsi.errors import ConfigError
from wsdal_wsi.qupath.model import (
    AreaAnnotation,
    ClassSettings,
    ImageAnnotations,
    PointAnnotation,
    is_tool_name,
    tool_name,
)


def test_default_roles():
    cs = ClassSettings()
    assert cs.role("Mitosis") == "positive"
    assert cs.role("Mitosis-like") == "negative"
    assert cs.role("Non-mitosis") == "negative"
    assert cs.role("Imposter") == "negative"
    assert cs.role("Region") == "region"
    assert cs.role("Region 2") == "region"
    assert cs.role("Ignore") == "ignored"
    assert cs.role("Tumor") == "unknown"
    assert cs.role(None) == "unknown"
    # patterns are case-sensitive and match the whole name
    assert cs.role("mitosis") == "unknown"
    assert cs.role("Mitosis: Atypical") == "unknown"


def test_patterns_and_derived_classes():
    cs = ClassSettings(positive=("Mitosis", "Mitosis: *"))
    assert cs.role("Mitosis: Atypical") == "positive"
    assert cs.positive == ("Mitosis", "Mitosis: *")


def test_unclassified_as():
    cs = ClassSettings(unclassified_as="Mitosis")
    assert cs.role(None) == "positive"
    assert cs.resolve(None) == "Mitosis"
    assert cs.resolve("Tumor") == "Tumor"


def test_single_string_is_accepted_as_one_class():
    assert ClassSettings(positive="Mitose").positive == ("Mitose",)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"positive": ("Mitosis",), "negative": ("Mitosis",)}, "both positive and negative"),
        ({"positive": ("",)}, "bad class name ''"),
        ({"negative": (3,)}, "bad class name 3"),
        ({"region": ("A: ",)}, "bad class name 'A: '"),
        ({"positive": 5}, "must be a list of class names, got 5"),
        ({"unclassified_as": " "}, "unclassified_as: bad class name"),
    ],
)
def test_bad_class_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ClassSettings(**kwargs)


def test_image_annotations_counts_and_roles():
    region = AreaAnnotation(box(0, 0, 100, 100), "Region", name="r1")
    ann = ImageAnnotations(
        points=(
            PointAnnotation(1.0, 2.0, "Mitosis"),
            PointAnnotation(3.0, 4.0, "Mitosis"),
            PointAnnotation(5.0, 6.0, "Mitosis-like"),
            PointAnnotation(7.0, 8.0, "Tumor"),
            PointAnnotation(9.0, 9.0, None),
        ),
        areas=(region,),
    )
    cs = ClassSettings()
    assert ann.points_per_class() == {
        "Mitosis": 2,
        "Mitosis-like": 1,
        "Tumor": 1,
        "Unclassified": 1,
    }
    assert ann.areas_per_class() == {"Region": 1}
    assert ann.unknown_classes(cs) == {"Tumor": 1, "Unclassified": 1}
    assert len(ann.points_with_role("positive", cs)) == 2
    assert ann.areas_with_role("region", cs) == (region,)
    xy = ann.points_xy(classes=["Mitosis"])
    assert xy.shape == (2, 2) and xy.dtype == np.float64
    np.testing.assert_array_equal(xy, [[1, 2], [3, 4]])
    assert ann.points_xy(classes=["nothing"]).shape == (0, 2)


def test_sorted_is_canonical():
    a = ImageAnnotations(
        points=(PointAnnotation(5, 5, "B"), PointAnnotation(1, 1, "A"), PointAnnotation(0, 9, "B")),
        areas=(AreaAnnotation(box(5, 5, 6, 6), "R"), AreaAnnotation(box(0, 0, 1, 1), "R")),
    )
    b = ImageAnnotations(points=tuple(reversed(a.points)), areas=tuple(reversed(a.areas)))
    assert a != b
    assert a.sorted() == b.sorted()
    assert a.sorted().points[0] == PointAnnotation(1, 1, "A")


def test_area_requires_polygon():
    AreaAnnotation(MultiPolygon([box(0, 0, 1, 1), box(2, 2, 3, 3)]), "Region")
    AreaAnnotation(Polygon([(0, 0), (1, 0), (1, 1)]), None)
    with pytest.raises(TypeError, match="Polygon or MultiPolygon, got LineString"):
        AreaAnnotation(LineString([(0, 0), (1, 1)]), "Region")


def test_tool_marker():
    assert is_tool_name("WS-DAL")
    assert is_tool_name("WS-DAL hotspot")
    assert not is_tool_name(None)
    assert not is_tool_name("Hotspot WS-DAL")
    assert not is_tool_name("ws-dal")
    assert tool_name() == "WS-DAL"
    assert tool_name("hotspot") == "WS-DAL hotspot"
    assert tool_name("WS-DAL region") == "WS-DAL region"


def test_unclassified_as_a_role_keeps_the_name_and_gives_the_role():
    cs = ClassSettings(unclassified_as="positive")
    assert cs.role(None) == "positive" and cs.resolve(None) is None
    assert ClassSettings(unclassified_as="ignore").role(None) == "ignored"
    assert ClassSettings(unclassified_as="negative").role(None) == "negative"
    assert ClassSettings().role(None) == "unknown"


def test_from_options_replaces_the_roles_given_and_keeps_the_base_for_the_others():
    base = ClassSettings(positive=("Mitotic figure",), region=("Tumour area",))
    cs = ClassSettings.from_options(negative=["Imposter"], base=base)
    assert cs.positive == ("Mitotic figure",) and cs.region == ("Tumour area",)
    assert cs.negative == ("Imposter",) and cs.ignored == ClassSettings().ignored
    assert ClassSettings.from_options() == ClassSettings()
    assert ClassSettings.from_dict(cs.to_dict()) == cs
    assert ClassSettings.from_dict({"positive": ["M"]}).negative == ClassSettings().negative
    with pytest.raises(ConfigError, match="both positive and negative"):
        ClassSettings.from_options(positive=["X"], negative=["X"])
