"""Print the lowest allowed version of every core dependency, as pip constraints.

Reads ``[project] dependencies`` of pyproject.toml (the one place the floors live) and
prints ``name==floor`` per dependency, keeping its environment marker, e.g.
``scikit-learn==1.6`` or ``tomli==2.0; python_version < '3.11'``. CI (``.ci/run``)
installs the package under these constraints in a second environment and runs the library
tests there, so a floor that the code outgrew fails CI::

    python tools/lowest_requirements.py > lowest.txt
    python -m pip install -c lowest.txt -e . pytest hypothesis

Every dependency must state its floor as ``name>=version`` (optionally with extras, an
upper bound after a comma, and a marker); anything else is an error, not a silent skip.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"

_REQUIREMENT = re.compile(
    r"""^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*
    >=\s*(?P<floor>[0-9][0-9A-Za-z.+!-]*)\s*(,[^;]*)?(?P<marker>;.*)?$""",
    re.VERBOSE,
)


def lowest_requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """``name==floor[; marker]`` for each of the project's core dependencies, in order."""
    with open(pyproject, "rb") as f:
        dependencies = tomllib.load(f)["project"]["dependencies"]
    lines = []
    for dependency in dependencies:
        match = _REQUIREMENT.match(dependency)
        if match is None:
            raise ValueError(
                f"Dependency {dependency!r} in {pyproject.name}: expected 'name>=floor' "
                "(optionally extras, ',<upper' and '; marker')."
            )
        marker = match["marker"] or ""
        lines.append(f"{match['name']}=={match['floor']}{marker}")
    return lines


def main() -> None:
    print("\n".join(lowest_requirements()))


if __name__ == "__main__":
    main()
