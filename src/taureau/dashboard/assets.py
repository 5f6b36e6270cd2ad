"""Where the built front end lives, and what the server says when it was never built.

`static/index.html` and `static/dashboard.css` are written by hand and kept in git; `app.js`
(our TypeScript with uPlot bundled in) and `app.css` are built from `web/` by esbuild: by the
package's build hook (`setup.py`) when npm is at hand, by `.ci/run`, or by hand. They are
never committed (they hold third-party code)."""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).parent / "static"
BUILT = ("app.js", "app.css")
BUILD_COMMAND = "npm --prefix web ci && npm --prefix web run build"


def missing(static: Path = STATIC) -> list[str]:
    return [name for name in ("index.html", *BUILT) if not (static / name).is_file()]


def not_built_page(absent: list[str]) -> str:
    files = ", ".join(absent)
    return (
        "<!doctype html><meta charset=utf-8><title>Taureau dashboard: not built</title>"
        "<body style='font-family:sans-serif;max-width:44em;margin:3em auto'>"
        "<h1>The dashboard's assets are not built</h1>"
        f"<p>Missing from the package: {files}.</p>"
        "<p>In the Taureau source tree, with Node.js 18 or later, run:</p>"
        f"<pre>{BUILD_COMMAND}</pre>"
        "<p>then reload this page (no restart needed). <code>pip install -e .</code> runs the same "
        "build when <code>npm</code> is on the PATH. The admin REST API works without it.</p>"
    )
