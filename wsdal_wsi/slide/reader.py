"""Open a whole-slide image and read it at a target resolution.

:func:`open_slide` opens every format OpenSlide opens and turns each of its
failures into a :class:`~wsdal_wsi.errors.SlideError` that names the file and
the reason. :class:`Slide` reports the pyramid and the resolution (and where the
resolution came from) and reads any region at a target resolution (µm/px),
whatever the native one, in level-0 coordinates.

Example
-------
>>> with open_slide("slide.svs") as slide:                      # doctest: +SKIP
...     tile = slide.read_region((1000.0, 2000.0), (512, 512), target_mpp=0.25)
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from wsdal_wsi.errors import ConfigError, ResolutionError, SlideError
from wsdal_wsi.slide import _diagnose
from wsdal_wsi.slide._geometry import ReadPlan, check_request, plan_read
from wsdal_wsi.slide._jpegtiles import JpegTileReader, decode_tiles_on, fast_tile_reader
from wsdal_wsi.slide._pixels import (
    openslide_failed,
    read_chunked,
    read_level_rgb,
    resample_rgb,
)
from wsdal_wsi.slide.resolution import (
    MPP_FROM_PROPERTIES,
    MPP_FROM_TIFF_TAGS,
    is_tiff_file,
    mpp_from_properties,
    mpp_from_tiff_tags,
    resolve_mpp,
)
from wsdal_wsi.units import DEFAULT_TARGET_MPP, check_mpp

__all__ = ["Slide", "open_slide"]

#: Largest single OpenSlide read (level px); bigger requests are read in chunks.
_MAX_READ_PX = 4096 * 4096


def open_slide(
    path: str | os.PathLike[str],
    *,
    mpp: float | None = None,
    project_mpp: float | None = None,
    fast_tiles: bool = True,
) -> Slide:
    """Open a whole-slide image.

    Parameters
    ----------
    path : str or PathLike
        The slide file (any format OpenSlide opens: Aperio SVS, generic tiled
        TIFF, Hamamatsu, Leica, MIRAX, Philips, Sakura, Ventana, DICOM, ...).
    mpp : float, optional
        Resolution in µm/px given by the user (``--mpp``), used only when the
        slide records none (a different value is ignored with a warning): a
        batch-wide ``--mpp`` never rescales slides that know their own.
    project_mpp : float, optional
        The pixel size set in QuPath for this image: used when the slide records
        none, before ``mpp`` (:func:`~wsdal_wsi.slide.resolution.resolve_mpp`).
    fast_tiles : bool
        For slides whose every level is a JPEG-tiled TIFF page (generic TIFF,
        Aperio SVS with JPEG tiles), read the raw tiles and decode them directly,
        several times faster than OpenSlide and giving the same pixels. Other
        slides are read through OpenSlide whatever this says.

    Returns
    -------
    Slide
        Open; close it (or use it as a context manager) when done.

    Raises
    ------
    SlideError
        The file is missing, a directory, unreadable, truncated, or not a format
        OpenSlide opens. The message names the file and the reason.
    ConfigError
        ``mpp`` is not a positive number.
    """
    import openslide

    user_mpp = check_mpp(mpp, what="--mpp") if mpp is not None else None
    if project_mpp is not None:
        project_mpp = check_mpp(project_mpp, what="the QuPath pixel size")
    path = Path(path).expanduser()
    _diagnose.check_slide_file(path)
    try:
        osr = openslide.OpenSlide(str(path))
    except openslide.OpenSlideUnsupportedFormatError as exc:
        raise SlideError(f"{path}: {_diagnose.explain_unsupported(path, exc)}") from exc
    except (openslide.OpenSlideError, OSError) as exc:
        damage = _diagnose.find_tiff_damage(path) if is_tiff_file(path) else None
        reason = (
            f"not a readable slide: {damage}" if damage else f"OpenSlide cannot read it ({exc})"
        )
        raise SlideError(f"{path}: {reason}") from exc
    try:
        tiff = is_tiff_file(path)
        if tiff:
            damage = _diagnose.find_tiff_damage(path, truncation_only=True)
            if damage is not None:
                raise SlideError(f"{path}: not a readable slide: {damage}")
        tiles = None
        if tiff and fast_tiles:
            tiles = fast_tile_reader(osr, path)
            if openslide_failed(osr):
                # OpenSlide's errors are sticky: a damaged tile met by the self-check
                # must not break every later read of the intact ones.
                osr.close()
                osr = openslide.OpenSlide(str(path))
        try:
            return Slide(
                osr, path, user_mpp=user_mpp, project_mpp=project_mpp, tiff=tiff, tiles=tiles
            )
        except BaseException:
            if tiles is not None:
                tiles.close()
            raise
    except BaseException:
        osr.close()
        raise


def _reopen(
    path: Path, user_mpp: float | None, fast_tiles: bool = True, project_mpp: float | None = None
) -> Slide:
    return open_slide(path, mpp=user_mpp, project_mpp=project_mpp, fast_tiles=fast_tiles)


class Slide:
    """An open whole-slide image. Create with :func:`open_slide`.

    Attributes
    ----------
    path : Path
        The slide file.
    name : str
        File name without its extension.
    vendor : str
        OpenSlide's format name (``"aperio"``, ``"generic-tiff"``, ...).
    dimensions : (int, int)
        Level-0 (w, h) in px.
    level_count : int
        Number of pyramid levels.
    level_dimensions : tuple of (int, int)
        (w, h) of each level in its own px.
    level_downsamples : tuple of float
        Level-0 px per level px, for each level.
    mpp : float or None
        Level-0 resolution in µm/px, or ``None`` when unknown.
    mpp_source : str or None
        ``"slide properties"``, ``"TIFF resolution tags"`` or ``"user (--mpp)"``.
    file_mpp : float or None
        The resolution the file itself records (``None`` when it records none).
    objective_power : float or None
        Scanner objective magnification (e.g. 20 or 40), when recorded.
    properties : Mapping[str, str]
        All of OpenSlide's properties.

    Notes
    -----
    Reads are thread-safe: OpenSlide's reader and the raw-tile reader are, and
    the object is not changed after opening. A slide pickles as its path and
    options, and reopens on unpickling (for worker processes).
    """

    def __init__(
        self,
        osr: Any,
        path: Path,
        *,
        user_mpp: float | None,
        project_mpp: float | None = None,
        tiff: bool,
        tiles: JpegTileReader | None = None,
    ) -> None:
        self._osr = osr
        self._tiles = tiles
        self.path = path
        self.name = path.stem
        props = dict(osr.properties)
        self.properties: Mapping[str, str] = props
        self.vendor = props.get("openslide.vendor", "unknown")
        self.dimensions: tuple[int, int] = tuple(int(v) for v in osr.dimensions)  # type: ignore[assignment]
        self.level_count: int = int(osr.level_count)
        self.level_dimensions: tuple[tuple[int, int], ...] = tuple(
            (int(w), int(h)) for w, h in osr.level_dimensions
        )
        self.level_downsamples: tuple[float, ...] = tuple(float(d) for d in osr.level_downsamples)
        try:
            power = float(props.get("openslide.objective-power", "nan"))
        except ValueError:
            power = math.nan
        self.objective_power: float | None = power if math.isfinite(power) and power > 0 else None

        file_mpp = mpp_from_properties(props, where=str(path))
        file_source = MPP_FROM_PROPERTIES if file_mpp is not None else None
        if file_mpp is None and tiff:
            file_mpp = mpp_from_tiff_tags(path)
            file_source = MPP_FROM_TIFF_TAGS if file_mpp is not None else None
        self.file_mpp: float | None = file_mpp
        self._user_mpp = user_mpp
        self._project_mpp = project_mpp
        self.mpp: float | None
        self.mpp_source: str | None
        self.mpp, self.mpp_source = resolve_mpp(
            file_mpp=file_mpp,
            file_source=file_source,
            project_mpp=project_mpp,
            user_mpp=user_mpp,
            where=str(path),
        )

        self._closed = False
        self._active_reads = 0
        self._state = threading.Condition()

    # ------------------------------------------------------------------ resolution

    def require_mpp(self) -> float:
        """Return the resolution (µm/px); raise :class:`ResolutionError` when unknown."""
        if self.mpp is None:
            raise ResolutionError(
                f"{self.path}: the slide does not record its resolution (µm/px); "
                "pass it with --mpp (e.g. --mpp 0.25 for a 40x scan, 0.5 for 20x)"
            )
        return self.mpp

    def level0_per_px(self, target_mpp: float) -> float:
        """Level-0 px per px at ``target_mpp`` (``target_mpp / mpp``).

        Raises
        ------
        ResolutionError
            The slide's resolution is unknown.
        ConfigError
            ``target_mpp`` is not a positive number.
        """
        return check_mpp(target_mpp, what="target_mpp") / self.require_mpp()

    # ------------------------------------------------------------------ reading

    def read_region(
        self,
        location_level0: tuple[float, float],
        size_px: tuple[int, int],
        *,
        target_mpp: float = DEFAULT_TARGET_MPP,
    ) -> np.ndarray:
        """Read a region at a target resolution.

        Parameters
        ----------
        location_level0 : (float, float)
            Level-0 (x, y) of the region's top-left corner; fractions are honoured.
        size_px : (int, int)
            Size (w, h) of the result, in px at ``target_mpp``.
        target_mpp : float
            Resolution of the result in µm/px.

        Returns
        -------
        numpy.ndarray
            ``(h, w, 3) uint8`` RGB, C-contiguous and writable. Output pixel
            ``(i, j)`` covers the level-0 square from ``location_level0 + (i, j)
            * f`` with ``f = level0_per_px(target_mpp)``; areas outside the slide
            are white.

        Notes
        -----
        The pixels come from the coarsest pyramid level whose resolution is at
        least as fine as ``target_mpp`` (1 % tolerance for odd-sized pyramids).
        When the target is that level's own lattice at a whole-pixel position,
        they are returned as they are; otherwise they are resampled with
        Pillow's antialiased bicubic filter on a sub-pixel source box (after
        averaging whole blocks of the level's pixel grid when downsampling more
        than 4x). Every read thus samples one global lattice: a piece cut from
        a big read equals a read of the piece (to the last bit of the filter's
        fixed-point weights).

        Raises
        ------
        ResolutionError
            The slide's resolution is unknown (open it with ``mpp=``).
        SlideError
            OpenSlide fails to read the region (damaged file).
        ConfigError
            A bad location, size or ``target_mpp``.
        """
        return self.read_scaled(
            location_level0, size_px, level0_per_px=self.level0_per_px(target_mpp)
        )

    def read_scaled(
        self,
        location_level0: tuple[float, float],
        size_px: tuple[int, int],
        *,
        level0_per_px: float,
    ) -> np.ndarray:
        """Read a region at ``level0_per_px`` level-0 px per output px (no µm/px needed).

        The same as :meth:`read_region` with the scale given directly, for
        thumbnails and masks of slides whose resolution is unknown.

        Parameters
        ----------
        location_level0 : (float, float)
            Level-0 (x, y) of the top-left corner.
        size_px : (int, int)
            Output (w, h) in px.
        level0_per_px : float
            Level-0 px per output px (> 0).

        Returns
        -------
        numpy.ndarray
            ``(h, w, 3) uint8`` RGB; white outside the slide.
        """
        x0, y0, w, h, scale = check_request(location_level0, size_px, level0_per_px)
        with self._state:
            if self._closed:
                raise SlideError(f"{self.path}: the slide is closed")
            self._active_reads += 1
        try:
            if self._outside(x0, y0, w, h, scale):
                return np.full((h, w, 3), 255, np.uint8)
            plan = plan_read(
                (x0, y0), (w, h), level0_per_px=scale, level_downsamples=self.level_downsamples
            )
            if plan.read_w * plan.read_h > _MAX_READ_PX and (w > 1 or h > 1):
                ratio = (plan.read_w / w, plan.read_h / h)
                return read_chunked(self.read_scaled, (x0, y0), (w, h), scale, ratio, _MAX_READ_PX)
            rgb, start_x, start_y = self._read_pixels(plan)
            if plan.direct:
                return rgb
            return resample_rgb(rgb, (w, h), plan.box(start_x, start_y), reduce=plan.reduce)
        finally:
            with self._state:
                self._active_reads -= 1
                self._state.notify_all()

    def _outside(self, x0: float, y0: float, w: int, h: int, scale: float) -> bool:
        """Whether the region and its resampling support lie wholly outside the slide."""
        pad = 4.0 * max(scale, self.level_downsamples[-1])
        width, height = self.dimensions
        return (
            x0 + w * scale < -pad or y0 + h * scale < -pad or x0 > width + pad or y0 > height + pad
        )

    def _read_pixels(self, plan: ReadPlan) -> tuple[np.ndarray, float, float]:
        """The level pixels of a plan, and the level px where the read really starts."""
        if self._tiles is not None:
            x, y, w, h = plan.level_x, plan.level_y, plan.read_w, plan.read_h
            try:
                rgb = self._tiles.read(plan.level, x, y, w, h)
            except Exception as exc:  # OS errors, decoder errors: a damaged file
                raise SlideError(
                    f"{self.path}: cannot read level {plan.level} at level px ({x}, {y}), "
                    f"size ({w}, {h}): {exc} (the file may be damaged)"
                ) from exc
            return rgb, float(x), float(y)
        x, y = plan.openslide_location()
        rgb = self._read_level(plan.level, x, y, plan.read_w, plan.read_h)
        return rgb, x / plan.downsample, y / plan.downsample

    def _read_level(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        import openslide

        try:
            return read_level_rgb(self._osr, level, x, y, w, h)
        except openslide.OpenSlideError as exc:
            raise SlideError(
                f"{self.path}: cannot read level {level} at level-0 ({x}, {y}), size ({w}, {h}): "
                f"{exc} (the file may be damaged)"
            ) from exc

    def read_thumbnail(self, *, max_size_px: int = 1024) -> tuple[np.ndarray, float]:
        """The whole slide, downsampled so that its longer side is ``max_size_px``.

        Parameters
        ----------
        max_size_px : int
            Longest side of the thumbnail in px (the slide is never upsampled).

        Returns
        -------
        image : numpy.ndarray
            ``(h, w, 3) uint8`` RGB.
        level0_per_px : float
            Level-0 px per thumbnail px (multiply thumbnail coordinates by it).
        """
        if isinstance(max_size_px, bool) or not isinstance(max_size_px, int) or max_size_px < 1:
            raise ConfigError(f"max_size_px must be a positive integer, got {max_size_px!r}")
        width, height = self.dimensions
        scale = max(1.0, max(width, height) / max_size_px)
        size = (max(1, round(width / scale)), max(1, round(height / scale)))
        return self.read_scaled((0.0, 0.0), size, level0_per_px=scale), scale

    # ------------------------------------------------------------------ description

    def info(self) -> dict[str, Any]:
        """Everything ``wsdal info`` shows, JSON-serialisable.

        Returns
        -------
        dict
            ``path``, ``name``, ``vendor``, ``dimensions`` [w, h] (level-0 px),
            ``level_count``, ``level_dimensions``, ``level_downsamples``,
            ``mpp`` (µm/px or None), ``mpp_source``, ``file_mpp``, ``user_mpp``
            (the ``--mpp`` given, used or not),
            ``objective_power``, ``size_mm`` [w, h] (None without mpp),
            ``file_size_bytes``, ``associated_images``, ``reader`` (``"raw
            JPEG tiles"`` or ``"OpenSlide"``).
        """
        width, height = self.dimensions
        return {
            "path": str(self.path),
            "name": self.name,
            "vendor": self.vendor,
            "dimensions": [width, height],
            "level_count": self.level_count,
            "level_dimensions": [list(d) for d in self.level_dimensions],
            "level_downsamples": list(self.level_downsamples),
            "mpp": self.mpp,
            "mpp_source": self.mpp_source,
            "file_mpp": self.file_mpp,
            "user_mpp": self._user_mpp,
            "objective_power": self.objective_power,
            "size_mm": (
                [width * self.mpp / 1000.0, height * self.mpp / 1000.0]
                if self.mpp is not None
                else None
            ),
            "file_size_bytes": self.path.stat().st_size if self.path.exists() else None,
            "associated_images": sorted(getattr(self._osr, "associated_images", {}).keys()),
            "reader": "raw JPEG tiles" if self._tiles is not None else "OpenSlide",
            "tile_decoder": self._tiles.decoder.name if self._tiles is not None else None,
        }

    def decode_tiles_on(self, device: str) -> str | None:
        """Decode raw JPEG tiles on ``device`` in batches (:func:`._jpegtiles.decode_tiles_on`).

        Returns None when in use, else why not (reads stay as they were).
        """
        return decode_tiles_on(self._tiles, device)

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Close the slide (waits for reads in progress); later reads raise SlideError."""
        with self._state:
            if self._closed:
                return
            self._closed = True
            while self._active_reads:
                self._state.wait()
        self._osr.close()
        if self._tiles is not None:
            self._tiles.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _reopen,
            (self.path, self._user_mpp, self._tiles is not None, self._project_mpp),
        )

    def __repr__(self) -> str:
        mpp = f"{self.mpp:.4g} µm/px ({self.mpp_source})" if self.mpp else "unknown µm/px"
        width, height = self.dimensions
        return f"Slide({str(self.path)!r}, {self.vendor}, {width}x{height}, {mpp})"
