"""`/ui`: the web playground, static files served by the app itself under a strict Content-Security-Policy.

The page (`service/static/ui/`, docs/ui.md) is plain HTML, CSS and JavaScript modules: no build step,
nothing from another origin. It calls the API from the same origin with the key the user types in, so
the page itself is public. Only the files in that folder are served, looked up by name (no paths).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from service.errors import NotFoundError

UI_FILES = Path(__file__).resolve().parents[2] / "static" / "ui"
_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
}
# Everything from this origin only; no inline script or style (not even attributes), no plugins, no
# framing. Images also from blob: and data: URLs (the page's own canvases and object URLs).
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Small files that change with the service: revalidated on every load, so an upgrade shows at once.
    "Cache-Control": "no-cache",
}

router = APIRouter(prefix="/ui", include_in_schema=False)


def _ui_files() -> dict[str, Path]:
    """The servable files by name, read once: a request names one of these or gets 404."""
    return {path.name: path for path in UI_FILES.iterdir() if path.suffix in _MEDIA_TYPES and path.is_file()}


_FILES = _ui_files()


@router.get("")
async def ui_redirect() -> RedirectResponse:
    """`/ui` -> `/ui/`, so that the page's relative URLs resolve under `/ui/` (also behind a path prefix)."""
    return RedirectResponse("ui/", status_code=308, headers=SECURITY_HEADERS)


@router.get("/")
async def ui_page() -> FileResponse:
    """The playground page."""
    return await ui_file("index.html")


@router.get("/{name}")
async def ui_file(name: str) -> FileResponse:
    """One of the page's files (scripts, styles, the ECG examples)."""
    path = _FILES.get(name)
    if path is None:
        raise NotFoundError("no such file in the web UI")
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=SECURITY_HEADERS)
