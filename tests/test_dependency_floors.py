"""pyproject.toml's dependency floors: the lowest-versions constraints CI installs are
generated from every dependency, the floors cover the APIs the code calls, and the
license is an SPDX expression. Requirements are parsed with ``packaging`` (the reference),
not with the script's own parser."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from packaging.licenses import canonicalize_license_expression
from packaging.requirements import Requirement
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
spec = importlib.util.spec_from_file_location(
    "lowest_requirements", ROOT / "tools" / "lowest_requirements.py"
)
lowest_requirements = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lowest_requirements)


def _dependencies() -> list[Requirement]:
    with open(PYPROJECT, "rb") as f:
        return [Requirement(d) for d in tomllib.load(f)["project"]["dependencies"]]


def _floor(requirement: Requirement) -> Version:
    (floor,) = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    return floor


def test_lowest_requirements_pins_every_dependency_to_its_floor():
    pins = [Requirement(line) for line in lowest_requirements.lowest_requirements()]
    dependencies = _dependencies()
    assert [p.name for p in pins] == [d.name for d in dependencies]
    for pin, dependency in zip(pins, dependencies):
        (exact,) = pin.specifier
        assert exact.operator == "=="
        assert Version(exact.version) == _floor(dependency)
        assert str(pin.marker) == str(dependency.marker)


@pytest.mark.parametrize("dependency", ["numpy", "numpy<3", "numpy==1.26"])
def test_a_dependency_without_a_floor_is_an_error(tmp_path, dependency):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(f'[project]\ndependencies = ["{dependency}"]\n')
    with pytest.raises(ValueError, match="expected 'name>=floor'"):
        lowest_requirements.lowest_requirements(pyproject)


# (file that calls it, what it calls, distribution, first release that has it)
NEEDED_APIS = [
    ("natgrad_core/sklearn.py", "validate_data", "scikit-learn", "1.6"),
    ("natgrad_core/optim/baselines.py", "intermediate_result", "scipy", "1.11"),
    ("tests/curvature/test_dense.py", "cg(op, v, rtol=", "scipy", "1.12"),
]


@pytest.mark.parametrize(("path", "api", "distribution", "since"), NEEDED_APIS)
def test_floors_cover_the_apis_called(path, api, distribution, since):
    assert api in (ROOT / path).read_text(), f"{path} no longer calls {api}: drop this row"
    (dependency,) = [d for d in _dependencies() if d.name == distribution]
    assert _floor(dependency) >= Version(since)


def test_license_is_an_spdx_expression():
    with open(PYPROJECT, "rb") as f:
        project = tomllib.load(f)
    license_ = project["project"]["license"]
    assert isinstance(license_, str)
    assert canonicalize_license_expression(license_) == license_
    build_requires = [Requirement(r) for r in project["build-system"]["requires"]]
    (setuptools,) = [r for r in build_requires if r.name == "setuptools"]
    assert _floor(setuptools) >= Version("77")  # first setuptools with PEP 639 licenses
