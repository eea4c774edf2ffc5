"""Plugins: solvers and datasets from other packages, found by import path or entry point.

A plugin is named in one of two ways (benchopt's idea: solvers and datasets live outside
the benchmark and join its tables under its protocol):

* an import path ``"package.module:attribute"`` (``attribute`` may be dotted, e.g. a
  class attribute), written straight into a TOML configuration: ``solver =
  "my_optim.shampoo:Shampoo"``, ``dataset = "my_data.loaders:load"``;
* the name of a Python entry point in the group :data:`SOLVER_GROUP` (``natgrad.solvers``)
  or :data:`DATASET_GROUP` (``natgrad.problems``), declared by an installed package::

      [project.entry-points."natgrad.solvers"]
      shampoo = "my_optim.shampoo:Shampoo"

  Installed plugins are listed by ``natgrad list`` with their package and version. A
  built-in name always wins over an entry point of the same name (:func:`available` marks
  the shadowed one), so installing a package can never change what a built-in name means.

Every loaded plugin carries its identity (:meth:`Plugin.identity`): the import path, the
distribution (installed package) that provides it and its version, the SHA-256 of its
source files, and the versions of the distributions it declares in a
``natgrad_requires`` attribute (a tuple of distribution names, e.g. the library a solver
wraps). The benchmark puts the identity into every run's key and record, so resuming a
grid never mixes results of two versions of a plugin.

Source files hashed: every ``*.py`` file of the plugin's top-level package (sorted by
path, path and bytes hashed), or the one module file of a top-level module. For natgrad's
own shipped plugins it is the defining module's file (the rest of natgrad's numerical code
is in the run key already, as its code version).

Loading or constructing a plugin that fails raises :class:`PluginError` (a ValueError)
naming the plugin and the underlying error.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata as metadata
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DATASET_GROUP",
    "SOLVER_GROUP",
    "Plugin",
    "PluginError",
    "available",
    "clear_cache",
    "entry_point_names",
    "is_import_path",
    "load",
]

SOLVER_GROUP = "natgrad.solvers"
"""Entry-point group of solver plugins: factories called with the hyperparameters as
keyword arguments, returning an optimizer (see the README, "Writing a solver")."""
DATASET_GROUP = "natgrad.problems"
"""Entry-point group of dataset plugins: callables returning ``(X, y)`` or
``(X, y, metadata)`` (see the README, "Bring your own dataset")."""
_OWN_PACKAGE = __name__.split(".")[0]


class PluginError(ValueError):
    """A plugin that cannot be found, imported or constructed."""


@dataclass(frozen=True)
class Plugin:
    """A loaded plugin.

    name : as the configuration wrote it (an entry-point name or an import path).
    target : ``"module:attribute"`` of the object.
    obj : the object (a factory or a loader).
    origin : "entry point", "import path" or "natgrad" (shipped with natgrad).
    distribution, version : the installed package that provides the module and its
        version (None when the module is not part of an installed package).
    source_sha256 : SHA-256 of the plugin's source files (None when none was found).
    requires : distribution name -> version of the ``natgrad_requires`` of the object.
    """

    name: str
    target: str
    obj: object = field(repr=False, compare=False)
    origin: str
    distribution: str | None
    version: str | None
    source_sha256: str | None
    requires: tuple = ()

    def identity(self) -> dict:
        """What distinguishes this plugin's code from any other version of it: import
        path, package and version, source hash and the versions of what it requires."""
        out = {
            "import": self.target,
            "origin": self.origin,
            "package": self.distribution,
            "version": self.version,
            "source_sha256": self.source_sha256,
        }
        if self.requires:
            out["requires"] = dict(self.requires)
        return out


def is_import_path(name) -> bool:
    """Whether ``name`` is written as ``"package.module:attribute"``."""
    return isinstance(name, str) and ":" in name


@functools.cache
def _entry_points(group: str) -> dict:
    points = {}
    for point in metadata.entry_points(group=group):
        points.setdefault(point.name, point)  # the first on sys.path wins, as for imports
    return points


@functools.cache
def _distributions() -> dict:
    return metadata.packages_distributions()


def entry_point_names(group: str) -> set:
    """Names of the installed entry points of ``group`` (nothing is imported)."""
    return set(_entry_points(group))


def clear_cache() -> None:
    """Forget the entry points and installed packages seen so far (after installing a
    plugin package into a running interpreter)."""
    _LOADED.clear()
    _entry_points.cache_clear()
    _distributions.cache_clear()
    _source_hash.cache_clear()
    importlib.invalidate_caches()


def _error(name: str, what: str, exc: BaseException) -> PluginError:
    return PluginError(f"plugin {name!r} {what}: {type(exc).__name__}: {exc}")


def _import(name: str, target: str):
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise PluginError(
            f"plugin {name!r}: expected an import path 'package.module:attribute', got {target!r}."
        )
    try:
        obj = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # a plugin's import may raise anything, or exit
        raise _error(name, f"cannot be imported ({module_name!r})", exc) from exc
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise _error(name, f"cannot be found ({target!r})", exc) from None
    return obj


@functools.cache
def _source_hash(module_file: str, top_dir: str | None) -> str | None:
    if top_dir is not None:
        root = Path(top_dir)
        files = sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    else:
        root = Path(module_file).parent
        files = [Path(module_file)]
    h = hashlib.sha256()
    found = False
    for path in files:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        found = True
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest() if found else None


def _origin_of(obj, name: str, origin: str, point=None) -> Plugin:
    module = inspect.getmodule(obj)
    module_name = getattr(module, "__name__", None) or getattr(obj, "__module__", "") or ""
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", type(obj).__name__)
    target = f"{module_name}:{qualname}" if point is None else point.value
    top = module_name.split(".")[0]
    distribution = version = None
    if point is not None and point.dist is not None:
        distribution, version = point.dist.name, point.dist.version
    elif top:
        names = _distributions().get(top, [])
        if names:
            distribution = names[0]
            version = _version(distribution)
    module_file = getattr(module, "__file__", None)
    source = None
    if module_file:
        top_module = sys.modules.get(top)
        top_file = getattr(top_module, "__file__", None)
        is_package = top_file is not None and Path(top_file).name == "__init__.py"
        own = top == _OWN_PACKAGE
        top_dir = str(Path(top_file).parent) if is_package and not own else None
        source = _source_hash(str(Path(module_file).resolve()), top_dir)
    requires = tuple((dist, _version(dist)) for dist in getattr(obj, "natgrad_requires", ()) or ())
    return Plugin(name, target, obj, origin, distribution, version, source, requires)


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def load(name: str, group: str, shipped=None) -> Plugin:
    """The plugin ``name`` of entry-point ``group``: a name in ``shipped`` (natgrad's own,
    name -> import path), an import path, or an installed entry point's name.

    Loaded once per process (a run's key, record and optimizer all ask for it; the
    import, the package metadata and the source hash cost about a millisecond) until
    :func:`clear_cache`. Raises PluginError naming the plugin when it is unknown or fails
    to import; a failure is not remembered.
    """
    if not isinstance(name, str) or not name:
        raise PluginError(f"expected a plugin name or import path (a string), got {name!r}.")
    key = (name, group, shipped[name] if shipped and name in shipped else None)
    if key not in _LOADED:
        _LOADED[key] = _load(name, group, shipped)
    return _LOADED[key]


_LOADED: dict = {}


def _load(name: str, group: str, shipped) -> Plugin:
    if shipped and name in shipped:
        return _origin_of(_import(name, shipped[name]), name, "natgrad")
    if is_import_path(name):
        return _origin_of(_import(name, name), name, "import path")
    point = _entry_points(group).get(name)
    if point is None:
        known = sorted(_entry_points(group))
        raise PluginError(
            f"unknown plugin {name!r}: not an import path 'package.module:attribute' and "
            f"no installed package declares it in the {group!r} entry points "
            f"(installed: {known or 'none'})."
        )
    try:
        obj = point.load()
    except (Exception, SystemExit) as exc:  # a plugin's import may raise anything, or exit
        raise _error(name, f"({point.value}) cannot be imported", exc) from exc
    return _origin_of(obj, name, "entry point", point)


def available(group: str, builtin=()) -> list[dict]:
    """The installed entry points of ``group``: name, import path, package, version and a
    note ("shadowed by a built-in" when a built-in name takes precedence). Nothing is
    imported."""
    out = []
    for name, point in sorted(_entry_points(group).items()):
        dist = point.dist
        out.append(
            {
                "name": name,
                "import": point.value,
                "package": None if dist is None else dist.name,
                "version": None if dist is None else dist.version,
                "note": "shadowed by a built-in" if name in builtin else "",
            }
        )
    return out
