#!/usr/bin/env python3
"""Make the asv dashboard work offline: vendor its JavaScript/CSS from the npm registry.

``asv publish`` (asv 0.6) writes an ``index.html`` that loads jQuery, flot and its
plugins, stupidtable, blueimp-md5 and Bootstrap from public CDNs; with no route to them the
page redirects to ``error.html``. This script, run after every ``asv publish``:

1. fetches the same libraries from the npm registry with ``npm pack`` into a cache folder
   (default ``.asv/vendor-cache``, git-ignored; nothing is fetched when the tarballs are
   there already),
2. copies the files the page needs into ``<html_dir>/vendor/`` (Bootstrap's glyphicon
   fonts included, since its CSS loads them from ``../fonts/``) with a ``manifest.json``
   naming each file's package, version and SHA-256,
3. rewrites every ``*.html`` of the dashboard to load those copies, dropping the
   ``integrity``, ``crossorigin`` and ``referrerpolicy`` attributes of the CDN tags, and
4. fails if any ``<script src>`` or ``<link href>`` still points off the page's host.

It is idempotent: a second run finds nothing to rewrite and leaves the files as they are.
Links a person clicks (``<a href="https://...">``) are left alone.

Versions: jquery 3.3.1, flot 0.8.3 (core + time, selection, categories), flot-orderbars
1.0.0, blueimp-md5 2.19.0 and bootstrap 3.1.1 are the versions asv's page names; the npm
copies of jquery, flot-orderbars, blueimp-md5 and bootstrap are byte-identical to the CDN
files (their SRI hashes match; ``manifest.json`` records this). flot 0.8.3 on npm ships no
minified files, so the unminified ones are used. stupidtable 1.0.1 (cdnjs) is not on npm:
the package ``stupid-table-plugin`` has only 1.1.3, the closest version, which is used.

Commands, from the repository root::

    asv machine --yes                    # once per machine (~/.asv-machine.json)
    asv run -E existing --quick --set-commit-hash $(git rev-parse HEAD)   # or a history run
    asv publish                          # -> results/asv/html
    python tools/asv_offline.py          # vendor the libraries, rewrite the HTML
    asv preview                          # or: python -m http.server -d results/asv/html

Options: ``--html-dir DIR`` (default: ``html_dir`` of ``asv.conf.json``), ``--cache DIR``,
``--npm PATH``. Needs ``npm`` on PATH (Node.js) and access to the npm registry the first
time; the cached tarballs suffice afterwards.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = ROOT / ".asv" / "vendor-cache"
VENDOR = "vendor"

# (pattern of the CDN URL, npm package spec, file inside the package, path under vendor/)
LIBRARIES = [
    (
        r"/jquery-3\.3\.1\.min\.js$",
        "jquery@3.3.1",
        "dist/jquery.min.js",
        "jquery/jquery.min.js",
    ),
    (
        r"/flot/0\.8\.3/jquery\.flot\.min\.js$",
        "flot@0.8.3",
        "jquery.flot.js",
        "flot/jquery.flot.js",
    ),
    (
        r"/flot/0\.8\.3/jquery\.flot\.time\.min\.js$",
        "flot@0.8.3",
        "jquery.flot.time.js",
        "flot/jquery.flot.time.js",
    ),
    (
        r"/flot/0\.8\.3/jquery\.flot\.selection\.min\.js$",
        "flot@0.8.3",
        "jquery.flot.selection.js",
        "flot/jquery.flot.selection.js",
    ),
    (
        r"/flot/0\.8\.3/jquery\.flot\.categories\.min\.js$",
        "flot@0.8.3",
        "jquery.flot.categories.js",
        "flot/jquery.flot.categories.js",
    ),
    (
        r"/flot-orderbars@1\.0\.0/js/jquery\.flot\.orderBars\.js$",
        "flot-orderbars@1.0.0",
        "js/jquery.flot.orderBars.js",
        "flot-orderbars/jquery.flot.orderBars.js",
    ),
    (
        r"/stupidtable/1\.0\.1/stupidtable\.min\.js$",
        "stupid-table-plugin@1.1.3",  # 1.0.1 is not on npm
        "stupidtable.min.js",
        "stupidtable/stupidtable.min.js",
    ),
    (
        r"/blueimp-md5/2\.19\.0/js/md5\.min\.js$",
        "blueimp-md5@2.19.0",
        "js/md5.min.js",
        "blueimp-md5/md5.min.js",
    ),
    (
        r"/bootstrap@3\.1\.1/dist/js/bootstrap\.min\.js$",
        "bootstrap@3.1.1",
        "dist/js/bootstrap.min.js",
        "bootstrap/js/bootstrap.min.js",
    ),
    (
        r"/bootstrap@3\.1\.1/dist/css/bootstrap\.min\.css$",
        "bootstrap@3.1.1",
        "dist/css/bootstrap.min.css",
        "bootstrap/css/bootstrap.min.css",
    ),
]
# Files loaded by the vendored files themselves: (package spec, folder inside, local folder).
EXTRA_DIRS = [("bootstrap@3.1.1", "dist/fonts", "bootstrap/fonts")]

_TAG = re.compile(r"<(script|link)\b[^>]*>", re.IGNORECASE | re.DOTALL)
_URL_ATTR = re.compile(r"""\b(src|href)\s*=\s*(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
_DROP_ATTRS = re.compile(
    r"""\s+(integrity|crossorigin|referrerpolicy)(\s*=\s*(["']).*?\3)?(?=[\s/>])""",
    re.IGNORECASE | re.DOTALL,
)
_EXTERNAL = re.compile(r"^(https?:)?//", re.IGNORECASE)


class OfflineError(RuntimeError):
    """Something the user must fix (npm missing, fetch failed, unknown CDN link)."""


# ----------------------------------------------------------------------------- config
def _load_jsonc(path: Path) -> dict:
    """asv.conf.json allows whole-line // comments; strip them and parse."""
    lines = [ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("//")]
    return json.loads("\n".join(lines))


def default_html_dir(config: Path = ROOT / "asv.conf.json") -> Path:
    conf = _load_jsonc(config)
    return (config.parent / conf.get("html_dir", "html")).resolve()


# ----------------------------------------------------------------------------- npm
def _tarball_name(spec: str) -> str:
    name, version = spec.rsplit("@", 1)
    return f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"


def fetch(specs, cache: Path, npm: str | None = None) -> dict[str, Path]:
    """Each package spec's npm tarball in ``cache`` (``npm pack`` only when missing)."""
    cache.mkdir(parents=True, exist_ok=True)
    out = {}
    for spec in sorted(set(specs)):
        tarball = cache / _tarball_name(spec)
        if not tarball.is_file():
            npm = shutil.which(npm or "npm")
            if npm is None:
                raise OfflineError(
                    "npm was not found on PATH: install Node.js/npm (e.g. apt-get install npm) "
                    f"or pass --npm; it fetches {spec} from the npm registry."
                )
            proc = subprocess.run(
                [npm, "pack", spec, "--silent"],
                cwd=cache,
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0 or not tarball.is_file():
                raise OfflineError(
                    f"`npm pack {spec}` failed (exit {proc.returncode}); is the npm registry "
                    f"reachable?\n{proc.stderr.strip()}"
                )
        out[spec] = tarball
    return out


def _member(tar: tarfile.TarFile, inner: str) -> tarfile.TarInfo:
    for m in tar.getmembers():
        # npm tarballs keep everything under one top folder, usually "package/"
        if m.isfile() and m.name.split("/", 1)[-1] == inner:
            return m
    raise OfflineError(f"{tar.name}: no file {inner!r} in the package.")


def _write(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.is_file() or dest.read_bytes() != data:
        dest.write_bytes(data)


def install_vendor(html_dir: Path, tarballs: dict[str, Path]) -> list[dict]:
    """Copy the needed files into ``html_dir/vendor``; return manifest entries."""
    vendor = html_dir / VENDOR
    manifest = []
    for _, spec, inner, local in LIBRARIES:
        with tarfile.open(tarballs[spec]) as tar:
            data = tar.extractfile(_member(tar, inner)).read()
        _write(vendor / local, data)
        manifest.append(
            {"file": f"{VENDOR}/{local}", "package": spec, "path": inner, **_hashes(data)}
        )
    for spec, inner_dir, local_dir in EXTRA_DIRS:
        with tarfile.open(tarballs[spec]) as tar:
            for m in tar.getmembers():
                rel = m.name.split("/", 1)[-1]
                if m.isfile() and rel.startswith(inner_dir + "/"):
                    data = tar.extractfile(m).read()
                    name = rel[len(inner_dir) + 1 :]
                    _write(vendor / local_dir / name, data)
                    manifest.append(
                        {
                            "file": f"{VENDOR}/{local_dir}/{name}",
                            "package": spec,
                            "path": rel,
                            **_hashes(data),
                        }
                    )
    return manifest


def _hashes(data: bytes) -> dict:
    return {
        "sha256": hashlib.sha256(data).hexdigest(),
        "sri": "sha256-" + base64.b64encode(hashlib.sha256(data).digest()).decode("ascii"),
        "sri512": "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode("ascii"),
    }


# ----------------------------------------------------------------------------- HTML
def _local_for(url: str) -> str | None:
    for pattern, _, _, local in LIBRARIES:
        if re.search(pattern, url):
            return f"{VENDOR}/{local}"
    return None


def rewrite_html(text: str) -> tuple[str, dict[str, str], list[str]]:
    """(new text, {CDN URL: its SRI attribute or ""}, [external URLs left]) for one page."""
    replaced: dict[str, str] = {}
    unknown: list[str] = []

    def fix(tag_match: re.Match) -> str:
        tag = tag_match.group(0)
        url_match = _URL_ATTR.search(tag)
        if url_match is None or not _EXTERNAL.match(url_match.group(3)):
            return tag
        url = url_match.group(3)
        if tag_match.group(1).lower() == "link" and not re.search(
            r"""rel\s*=\s*["']?stylesheet""", tag, re.IGNORECASE
        ):
            return tag  # e.g. a canonical link: not loaded
        local = _local_for(url)
        if local is None:
            unknown.append(url)
            return tag
        sri = re.search(r"""integrity\s*=\s*(["'])(.*?)\1""", tag, re.IGNORECASE)
        replaced[url] = sri.group(2) if sri else ""
        attr, quote = url_match.group(1), url_match.group(2)
        start, end = url_match.span()
        tag = f"{tag[:start]}{attr}={quote}{local}{quote}{tag[end:]}"
        return _DROP_ATTRS.sub("", tag)

    return _TAG.sub(fix, text), replaced, unknown


def make_offline(html_dir: Path, cache: Path = DEFAULT_CACHE, npm: str | None = None) -> dict:
    """Vendor the libraries into ``html_dir`` and rewrite its pages; return a summary."""
    html_dir = Path(html_dir)
    pages = sorted(html_dir.glob("*.html"))
    if not (html_dir / "index.html").is_file():
        raise OfflineError(f"{html_dir / 'index.html'} not found: run `asv publish` first.")
    tarballs = fetch(
        {spec for _, spec, _, _ in LIBRARIES} | {s for s, _, _ in EXTRA_DIRS}, cache, npm
    )
    manifest = install_vendor(html_dir, tarballs)
    sri_of = {}
    rewritten = []
    unknown = {}
    for page in pages:
        text = page.read_text(encoding="utf-8")
        new, replaced, left = rewrite_html(text)
        for url, sri in replaced.items():
            sri_of[_local_for(url)] = (url, sri)
        if left:
            unknown[page.name] = left
        if new != text:
            page.write_text(new, encoding="utf-8")
            rewritten.append(page.name)
    for entry in manifest:
        if entry["file"] in sri_of:
            url, sri = sri_of[entry["file"]]
            entry["replaces"] = url
            entry["identical_to_cdn"] = bool(sri) and sri in (entry["sri"], entry["sri512"])
    manifest_path = html_dir / VENDOR / "manifest.json"
    old = _read_manifest(manifest_path)
    for entry in manifest:  # keep what an earlier run learned from the CDN tags
        prev = old.get(entry["file"], {})
        if "replaces" not in entry and "replaces" in prev and prev.get("sha256") == entry["sha256"]:
            entry["replaces"] = prev["replaces"]
            entry["identical_to_cdn"] = prev.get("identical_to_cdn", False)
    _write(manifest_path, (json.dumps(manifest, indent=2) + "\n").encode())
    if unknown:
        raise OfflineError(
            "external resources this script does not know (update LIBRARIES for this asv "
            f"version): {json.dumps(unknown, indent=2)}"
        )
    return {"html_dir": str(html_dir), "rewritten": rewritten, "files": len(manifest)}


def _read_manifest(path: Path) -> dict:
    try:
        return {e["file"]: e for e in json.loads(path.read_text())}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html-dir", type=Path, help="default: html_dir of asv.conf.json")
    parser.add_argument("--config", type=Path, default=ROOT / "asv.conf.json")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--npm", help="npm executable (default: npm on PATH)")
    args = parser.parse_args(argv)
    html_dir = args.html_dir or default_html_dir(args.config)
    try:
        summary = make_offline(html_dir, args.cache, args.npm)
    except OfflineError as exc:
        print(f"asv_offline: error: {exc}", file=sys.stderr)
        return 1
    pages = ", ".join(summary["rewritten"]) or "none (already offline)"
    print(
        f"asv_offline: {summary['files']} vendored files in {summary['html_dir']}/{VENDOR}; "
        f"rewrote: {pages}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
