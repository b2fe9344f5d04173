"""The browser voice console a relay serves with ``console=True`` (``realtalk relay --console``,
``realtalk console``): one page at ``/`` (plain HTML, CSS and JavaScript shipped in the wheel,
in ``realtalk/relay/static``) and, in this demo mode only, a same-origin token endpoint.

The token endpoint is what makes it a demo: ``POST /console/token`` hands a short-lived relay
token to any page served from the relay's own origin, so anyone who can load the page can talk
through the relay's key. In production the app's own backend authenticates its users and calls
:func:`realtalk.relay.issue_token`; the page then only needs another way to get its token.
"""

from __future__ import annotations

from importlib import resources

from realtalk.relay.tokens import issue_token
from realtalk.transport import HTTPRequest, HTTPResponse

TOKEN_PATH = "/console/token"
CONSOLE_SUBJECT = "console"

# path -> (file in realtalk/relay/static, content type)
_PAGES = {
    "/": ("console.html", "text/html; charset=utf-8"),
    "/console.css": ("console.css", "text/css; charset=utf-8"),
    "/console.js": ("console.js", "text/javascript; charset=utf-8"),
    "/console-worklets.js": ("console-worklets.js", "text/javascript; charset=utf-8"),
}

# The page loads nothing but its own files and talks only to its own origin (CSP3 'self'
# covers ws:/wss: to the same host and port).
_SECURITY_HEADERS = [
    ("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; "
     "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
     "frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-cache"),
]


def static_files() -> dict[str, bytes]:
    """The console's files by URL path, read from the installed package."""
    folder = resources.files("realtalk.relay") / "static"
    return {path: (folder / name).read_bytes() for path, (name, _) in _PAGES.items()}


class Console:
    """Serves the console's files and its demo token endpoint for a relay."""

    def __init__(self, secret: str | bytes, *, token_ttl_s: float = 60.0,
                 https: bool = False) -> None:
        if not token_ttl_s > 0:
            raise ValueError("token_ttl_s must be positive")
        self._secret = secret
        self._token_ttl_s = token_ttl_s
        self._scheme = "https" if https else "http"
        self._files = static_files()

    def handles(self, path: str) -> bool:
        return path in _PAGES or path == TOKEN_PATH

    def respond(self, request: HTTPRequest) -> HTTPResponse:
        if request.path == TOKEN_PATH:
            return self._token(request)
        if request.method != "GET":
            return HTTPResponse.text("Method not allowed.\n", 405, [("Allow", "GET")])
        content_type = _PAGES[request.path][1]
        return HTTPResponse(200, [("Content-Type", content_type), *_SECURITY_HEADERS],
                            self._files[request.path])

    def _token(self, request: HTTPRequest) -> HTTPResponse:
        if request.method != "POST":  # a GET is too easy to trigger from another site
            return HTTPResponse.text("Method not allowed.\n", 405, [("Allow", "POST")])
        if not self._same_origin(request):
            return HTTPResponse.text("Tokens are only for the console's own page.\n", 403)
        token = issue_token(self._secret, self._token_ttl_s, subject=CONSOLE_SUBJECT)
        return HTTPResponse.json({"token": token, "expires_in": self._token_ttl_s},
                                 headers=[("Cache-Control", "no-store")])

    def _same_origin(self, request: HTTPRequest) -> bool:
        """Browsers send ``Origin`` with every POST from a page; only the page this relay
        served (its own scheme, host and port) gets a token."""
        origin = request.headers.get("Origin")
        host = request.headers.get("Host")
        if origin is None or host is None:
            return False
        if request.headers.get("Sec-Fetch-Site", "same-origin") != "same-origin":
            return False
        return origin == f"{self._scheme}://{host}"
