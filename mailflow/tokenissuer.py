"""A stand-in OAuth2 provider for the test and demo mail stack (see mailstack.py).

Dovecot checks XOAUTH2 bearer tokens by asking this server (token introspection,
RFC 7662) over HTTP on loopback, the way Microsoft 365 or Gmail check theirs.
"""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

OAUTH2_CONF = """\
introspection_mode = post
introspection_url = http://127.0.0.1:{port}/introspect
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
"""


class TokenIssuer:
    """A stand-in OAuth2 provider: issues bearer tokens and answers Dovecot's token
    introspection (RFC 7662) over HTTP on loopback, so XOAUTH2 logins are checked by a
    real server the way Microsoft 365 or Gmail check them."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        self.lookups = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                token = (form.get("token") or [""])[0]
                issuer.lookups += 1
                user = issuer.tokens.get(token)
                body = json.dumps({"active": "true", "username": user} if user
                                  else {"active": "false"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True,
                         name="oauth2-introspection").start()

    def issue(self, user: str) -> str:
        token = secrets.token_urlsafe(24)
        self.tokens[token] = user
        return token

    def revoke(self, token: str) -> None:
        self.tokens.pop(token, None)

    def user_for(self, token: str) -> str | None:
        return self.tokens.get(token)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
