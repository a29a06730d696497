"""A stand-in for the paquo 0.9.0 calls the adapter makes, for machines without a QuPath.

paquo needs a QuPath installation (a JVM), which CI and this machine do not have; the
tests marked ``qupath`` run the real thing where ``PAQUO_QUPATH_DIR`` is set. This
stand-in lets the adapter's own logic run everywhere, and copies only behaviours read
in the paquo 0.9.0 and QuPath 0.5.1/0.6.0 source (/work/notes/qupath-facts.md §3, §7):

- ``QuPathProject(path)``: a path without suffix gets ``/project.qpproj``; any other
  suffix raises ``ValueError("project file requires '.qpproj' suffix")``
  (``projects.py`` L196-200); ``__exit__`` saves in every mode but ``"r"``, even
  after an exception (L600-605); ``save()`` saves each image, then the class list;
- ``path_classes = [...]`` is QuPath's ``setPathClasses``, which ignores a
  different list of the same length (``DefaultProject`` 0.6.0 L199-203);
- ``QuPathPathClass(name, parent=...)`` refuses ':' in a name; ``.id`` is the full
  ``"Parent: Child"``, ``.name`` the last part (``classes.py``);
- ``hierarchy.load_geojson`` reads features as QuPath's GsonTools does: the ``id``
  is kept, ``isLocked`` from properties, ``isEllipse`` from ``geometry`` only;
- ``entry.save()`` writes only a readable image's changes (``images.py`` L709-721);
  ``entry.uri`` (so ``is_readable()``) raises ``NotImplementedError`` for an image
  made of several files (L690).

The project "on disk" is :attr:`FakeQuPath.disk`: class ids and, per image, the
objects saved (dicts with ``id``, ``name``, ``type``, ``class``, ``locked``, ``ellipse``).
"""

from __future__ import annotations

import copy
import uuid
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any


class FakePathClass:
    def __init__(self, name: str, color: Any = None, parent: FakePathClass | None = None):
        if ":" in name or "\n" in name:
            raise ValueError("PathClass names cannot contain ':' or '\n'")
        self.name = name
        self.id = f"{parent.id}: {name}" if parent is not None else name


def _class_of(full_id: str) -> FakePathClass:
    pc = None
    for name in full_id.split(": "):
        pc = FakePathClass(name, parent=pc)
    return pc


class _Object:
    def __init__(self, record: dict[str, Any]):
        self.record = record
        self.name = record["name"]
        self.java_object = SimpleNamespace(getID=lambda: uuid.UUID(record["id"]))

    def to_geojson(self) -> dict[str, Any]:
        """paquo's ``QuPathPathObject.to_geojson()``: QuPath's own GeoJSON of the object."""
        r = self.record
        props: dict[str, Any] = {"objectType": r["type"]}
        if r["name"] is not None:
            props["name"] = r["name"]
        if r["class"] is not None:
            props["classification"] = {"name": r["class"], "color": [255, 0, 0]}
        if r["locked"]:
            props["isLocked"] = True
        return {
            "type": "Feature",
            "id": r["id"],
            "geometry": r.get("geometry"),
            "properties": props,
        }


class _Proxy(list):
    def __init__(self, hierarchy: _Hierarchy, kind: str):
        super().__init__(_Object(r) for r in hierarchy.records if r["type"] == kind)
        self._hierarchy = hierarchy

    def __isub__(self, other):
        gone = {id(o.record) for o in other}
        self._hierarchy.records = [r for r in self._hierarchy.records if id(r) not in gone]
        self._hierarchy.changed = True
        return self


class _Hierarchy:
    def __init__(self, records: list[dict[str, Any]], fail: Exception | None):
        self.records = records
        self.changed = False
        self._fail = fail

    @property
    def detections(self) -> _Proxy:
        return _Proxy(self, "detection")

    @property
    def annotations(self) -> _Proxy:
        return _Proxy(self, "annotation")

    @contextmanager
    def no_autoflush(self):
        yield

    def to_geojson(self) -> list[dict[str, Any]]:
        """paquo's ``hierarchy.to_geojson()``: the annotations only."""
        return [o.to_geojson() for o in self.annotations]

    def load_geojson(self, features: list[dict[str, Any]], *, raise_on_skip: bool = False):
        if self._fail is not None:
            raise self._fail
        for f in features:
            props, geometry = f["properties"], f["geometry"]
            cls = props.get("classification")
            names = cls.get("names", [cls.get("name")]) if isinstance(cls, dict) else None
            self.records.append(
                {
                    "id": str(uuid.UUID(f["id"])),
                    "name": props.get("name"),
                    "type": props["objectType"],
                    "class": ": ".join(names) if names else None,
                    "locked": bool(props.get("isLocked", False)),
                    "ellipse": bool(geometry.get("isEllipse", False)),
                    "geometry": geometry,
                }
            )
        self.changed = True
        return True


class _Entry:
    def __init__(self, qupath: FakeQuPath, entry_id: str, readable: bool, readonly: bool):
        self._qupath, self._readonly = qupath, readonly
        self.entry_id = entry_id
        self.uri = f"file:/scans/{entry_id}.svs"
        self.image_name = f"{entry_id}.svs"
        self._readable = readable
        records = copy.deepcopy(qupath.disk["images"][entry_id])
        self.hierarchy = _Hierarchy(records, qupath.fail.get(entry_id))

    def is_readable(self) -> bool:
        if self.entry_id in self._qupath.multi_file:
            raise NotImplementedError("unsupported in paquo as of now")
        return self._readable

    def save(self) -> None:
        if self._readonly:
            raise OSError("project in readonly mode")
        if self._readable and self.hierarchy.changed:
            self._qupath.disk["images"][self.entry_id] = copy.deepcopy(self.hierarchy.records)
            self._qupath.saved.append(self.entry_id)


class FakeQuPath:
    """A project on "disk" and the two paquo modules the adapter imports, over it.

    Parameters
    ----------
    classes : list of str
        The project's class list (full ids).
    images : dict
        entry ID -> saved objects (see the module docstring).
    unreachable : set of str
        Entry IDs whose slide is not reachable.
    fail : dict
        entry ID -> exception that ``load_geojson`` raises for that image.
    multi_file : set of str
        Entry IDs whose image is made of several files (channels, z-slices).
    """

    def __init__(self, classes, images, *, unreachable=(), fail=None, multi_file=()):
        self.disk = {"classes": list(classes), "images": copy.deepcopy(images)}
        self.unreachable = set(unreachable)
        self.multi_file = set(multi_file)
        self.fail = dict(fail or {})
        self.opened: list[tuple[Path, str]] = []
        self.saved: list[str] = []
        self.exits_saving = 0

    def modules(self) -> dict[str, Any]:
        return {
            "paquo.projects": SimpleNamespace(QuPathProject=self._project),
            "paquo.classes": SimpleNamespace(QuPathPathClass=FakePathClass),
        }

    def _project(self, path, mode: str = "r"):
        path = Path(path)
        if not path.suffix:
            path /= "project.qpproj"
        elif path.suffix != ".qpproj":
            raise ValueError("project file requires '.qpproj' suffix")
        if not path.is_file():
            raise FileNotFoundError(path)
        self.opened.append((path, mode))
        return _Project(self, readonly=mode == "r")


class _Project:
    def __init__(self, qupath: FakeQuPath, *, readonly: bool):
        self._qupath, self._readonly = qupath, readonly
        self._classes = list(qupath.disk["classes"])
        self.images = [
            _Entry(qupath, eid, eid not in qupath.unreachable, readonly)
            for eid in qupath.disk["images"]
        ]

    @property
    def path_classes(self):
        return tuple(_class_of(c) for c in self._classes)

    @path_classes.setter
    def path_classes(self, classes):
        new = [pc.id for pc in classes]
        if len(new) != len(self._classes) or set(self._classes) >= set(new):
            self._classes = new  # QuPath's setPathClasses, its same-length quirk included

    def save(self, images: bool = True) -> None:
        if self._readonly:
            raise OSError("project in readonly mode")
        if images:
            for entry in self.images:
                entry.save()
        self._qupath.disk["classes"] = list(self._classes)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if not self._readonly:
            self._qupath.exits_saving += 1
            self.save()
