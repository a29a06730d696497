"""What a QuPath ``serverBuilder`` says about an image: its file, its scene, its frame.

Each image of a ``project.qpproj`` has a ``serverBuilder`` (QuPath 0.5.1 and
0.6.0, ``ImageServers``): a ``"uri"`` builder naming the file, its reader
(``providerClassName``: OpenSlide or Bio-Formats) and its ``args``, possibly
wrapped by other builders, each holding the next one in ``"builder"``::

    {"builderType": "rotated", "rotation": "ROTATE_180",
     "builder": {"builderType": "uri", "uri": "file:/data/slide.czi",
                 "providerClassName": "...BioFormatsServerBuilder",
                 "args": ["--series", "1"], "metadata": {...}},
     "metadata": {...}}

QuPath's object coordinates are in the frame of the outermost server. wsdal-wsi
reads the file itself with OpenSlide, in the file's own level-0 (x, y), so an
image is usable only when the two frames are the same:

- wrappers that keep x and y (``pyramidize``, ``channels``, ``color``,
  ``color_deconvolved``, ``swapRedBlue``, and in 0.6 ``normalized``,
  ``typeConvert``, ``sliced``, ``z_projected``, ``z_concatenated``) are looked
  through, as are ``rotated`` with ``ROTATE_NONE`` and ``affine`` with the identity;
- any other rotation or affine transform, ``cropped``, ``sparse`` and builder
  types wsdal-wsi does not know are refused, per image, saying why;
- a scene of a multi-scene file (``--series N`` with N > 0, ``--name``, or the
  old ``#N`` / ``?series=N`` URI forms) is refused: OpenSlide opens only a
  file's main image;
- once the slide is open (:meth:`ServerInfo.slide_problem`): QuPath's OpenSlide
  reader crops a slide to ``openslide.bounds-*`` (unless ``--no-crop``), which
  moves the origin, and any difference between the size QuPath recorded and the
  size of the file means another image: both are refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

__all__ = ["SAME_FRAME_WRAPPERS", "ServerInfo", "parse_server_builder"]

#: Wrapping builder types whose pixels keep the wrapped image's level-0 (x, y).
SAME_FRAME_WRAPPERS = frozenset(
    {
        "pyramidize",
        "channels",
        "color",
        "color_deconvolved",
        "swapRedBlue",
        "normalized",
        "typeConvert",
        "sliced",
        "z_projected",
        "z_concatenated",
    }
)
_IDENTITY = {"m00": 1.0, "m10": 0.0, "m01": 0.0, "m11": 1.0, "m02": 0.0, "m12": 0.0}
_MOVES = {
    "rotated": "QuPath shows this image rotated ({detail})",
    "affine": "QuPath shows this image through an affine transform",
    "cropped": "QuPath shows a cropped part of the image ({detail})",
    "sparse": "QuPath assembles this image from regions of other images (a sparse image)",
}
_UNSUPPORTED_TAIL = (
    ", so its objects' coordinates are not the slide file's level-0 (x, y), which is what "
    "wsdal-wsi reads; add the slide to the project without the transform to use it"
)
_SCENE_TAIL = (
    "; wsdal-wsi reads slides with OpenSlide, which opens only a file's main image, so the "
    "objects would land on another image. Save the scene as a slide file of its own (e.g. a "
    "pyramidal TIFF) and add that to the project"
)
_DEPTH_LIMIT = 16


@dataclass(frozen=True)
class ServerInfo:
    """An image's ``serverBuilder``, as far as reading its slide goes.

    Attributes
    ----------
    uri : str or None
        The slide URI of the innermost ``"uri"`` builder, as stored.
    provider : str or None
        Its ``providerClassName`` (QuPath's reader).
    args : tuple of str
        Its ``args`` (``--series``, ``--no-crop``, ...).
    series : str or None
        The scene QuPath shows: ``--series N`` (or ``#N``, ``?series=N``), or
        ``name=...`` for ``--name``; ``None`` for a file's only image.
    width, height : int or None
        QuPath's level-0 size of the image (the outermost ``metadata``).
    metadata : dict
        The outermost ``metadata`` (the pixel size set in QuPath lives there).
    problem : str or None
        Why QuPath's coordinates of this image are not the file's level-0
        (x, y), known from the project alone; ``None`` when they are.
    """

    uri: str | None = None
    provider: str | None = None
    args: tuple[str, ...] = ()
    series: str | None = None
    width: int | None = None
    height: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)
    problem: str | None = None

    @property
    def openslide_crops(self) -> bool:
        """Whether QuPath reads the file with OpenSlide cropped to its bounds (no ``--no-crop``)."""
        provider = (self.provider or "").lower()
        return "openslide" in provider and "--no-crop" not in self.args

    def slide_problem(self, properties: Mapping[str, str], dimensions: Sequence[int]) -> str | None:
        """Why QuPath's coordinates do not fit the opened slide, or ``None`` when they do.

        Parameters
        ----------
        properties : mapping of str to str
            OpenSlide's properties of the slide (``openslide.bounds-x`` ...).
        dimensions : (int, int)
            The slide's level-0 (w, h) in px, as wsdal-wsi reads it.
        """
        size = (int(dimensions[0]), int(dimensions[1]))
        if self.openslide_crops:
            bx, by = (_int_prop(properties, f"openslide.bounds-{k}") for k in ("x", "y"))
            if bx or by:
                return (
                    "QuPath shows this slide cropped to its scanned area (OpenSlide bounds), "
                    f"whose corner is level-0 ({bx}, {by}) of the file, so every object is "
                    f"shifted by that much from the file's own level-0 (x, y), which wsdal-wsi "
                    "reads; shifting is not supported: add the slide to the project with the "
                    "optional argument --no-crop (QuPath's Import images dialog) to use it"
                )
            bw, bh = (_int_prop(properties, f"openslide.bounds-{k}") for k in ("width", "height"))
            if bw and bh:
                size = (bw, bh)
        if self.width is None or self.height is None or (self.width, self.height) == size:
            return None
        which = f"scene {self.series} of the file" if self.series is not None else "its image"
        return (
            f"QuPath records {which} as {self.width} x {self.height} px but the slide file "
            f"opens as {size[0]} x {size[1]} px (level 0): not the same image, so the objects' "
            "coordinates would not fit it; check that the project points at the right file "
            "(--relink)"
        )


def _int_prop(properties: Mapping[str, str], key: str) -> int:
    try:
        return int(properties.get(key) or 0)
    except ValueError:
        return 0


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _builder_type(builder: Mapping[str, Any]) -> str:
    """``builderType``, or QuPath's guess from the fields (JsonImageServerBuilder)."""
    kind = builder.get("builderType")
    if isinstance(kind, str):
        return kind
    for fields, guess in (
        (("uri",), "uri"),
        (("builder", "rotation"), "rotated"),
        (("builder", "transform"), "affine"),
        (("builder", "region"), "cropped"),
        (("regions",), "sparse"),
        (("builders",), "z_concatenated"),
    ):
        if all(f in builder for f in fields):
            return guess
    return "unknown"


def _move(kind: str, builder: Mapping[str, Any]) -> str | None:
    """Why a wrapper moves x/y, or ``None`` when it keeps them."""
    if kind in SAME_FRAME_WRAPPERS:
        return None
    if kind == "rotated":
        rotation = builder.get("rotation")
        if rotation in (None, "ROTATE_NONE"):
            return None
        return _MOVES[kind].format(detail=rotation)
    if kind == "affine":
        transform = builder.get("transform")
        if isinstance(transform, Mapping) and all(
            transform.get(k, v) == v for k, v in _IDENTITY.items()
        ):
            return None
        return _MOVES[kind]
    if kind == "cropped":
        region = builder.get("region") or {}
        return _MOVES[kind].format(
            detail=f"from level-0 ({region.get('x')}, {region.get('y')})"
            if isinstance(region, Mapping)
            else "a region"
        )
    if kind in _MOVES:
        return _MOVES[kind]
    return (
        f"QuPath reads this image through a server wsdal-wsi does not know (builderType {kind!r})"
    )


def _series(args: Sequence[str], uri: str | None) -> str | None:
    """The scene named by ``--series N`` / ``--name X`` in args, else by ``#N`` / ``?series=N``."""
    for i, arg in enumerate(args):
        for flag, prefix in (("--series", ""), ("-s", ""), ("--name", "name=")):
            if arg == flag and i + 1 < len(args):
                return prefix + args[i + 1]
            if arg.startswith(flag + "="):
                return prefix + arg[len(flag) + 1 :]
    if args or not uri:  # QuPath reads the URI forms only when there are no args
        return None
    parsed = urlparse(uri)
    if parsed.fragment:
        return parsed.fragment
    query = parse_qs(parsed.query)
    if "series" in query:
        return query["series"][0]
    if "name" in query:
        return "name=" + query["name"][0]
    return None


def _scene_problem(series: str | None) -> str | None:
    if series is None or series.strip() in ("0", "-1"):  # -1: QuPath's "not set"
        return None
    if series.startswith("name="):
        shown = f"the scene named {series[5:]!r} of a multi-scene file (--name)"
    else:
        shown = f"scene {series} of a multi-scene file (--series {series})"
    return f"QuPath shows {shown}{_SCENE_TAIL}"


def _inner(builder: Mapping[str, Any]) -> Any:
    """The builder a wrapper wraps (``z_concatenated``: its first, which holds z = 0)."""
    inner = builder.get("builder")
    if inner is None and isinstance(builder.get("builders"), list) and builder["builders"]:
        inner = builder["builders"][0]
    return inner


def parse_server_builder(builder: Any) -> ServerInfo:
    """Read an image's ``serverBuilder`` (any QuPath 0.5 / 0.6 form).

    Returns
    -------
    ServerInfo
        ``uri`` is ``None`` when no ``"uri"`` builder is found (the image
        then has no local slide); ``problem`` says why the image's coordinates
        cannot be used, if they cannot.
    """
    outer = builder.get("metadata") if isinstance(builder, dict) else None
    metadata: dict[str, Any] = outer if isinstance(outer, dict) else {}
    moves: list[str] = []
    depth = 0
    while isinstance(builder, dict) and _builder_type(builder) != "uri":
        move = _move(_builder_type(builder), builder)
        if move is not None:
            moves.append(move + _UNSUPPORTED_TAIL)
        builder, depth = _inner(builder), depth + 1
        if depth > _DEPTH_LIMIT:
            return ServerInfo(metadata=metadata, problem="its serverBuilder is nested too deeply")
    if not isinstance(builder, dict):
        return ServerInfo(metadata=metadata, problem=moves[0] if moves else None)
    if not metadata and isinstance(builder.get("metadata"), dict):
        metadata = builder["metadata"]
    uri = builder.get("uri") if isinstance(builder.get("uri"), str) else None
    raw_args = builder.get("args")
    args = tuple(str(a) for a in raw_args) if isinstance(raw_args, list) else ()
    provider = builder.get("providerClassName")
    series = _series(args, uri)
    return ServerInfo(
        uri=uri,
        provider=provider if isinstance(provider, str) else None,
        args=args,
        series=series,
        width=_int_or_none(metadata.get("width")),
        height=_int_or_none(metadata.get("height")),
        metadata=metadata,
        problem=moves[0] if moves else _scene_problem(series),
    )
