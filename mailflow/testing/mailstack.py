"""A real mail stack on loopback: Dovecot (IMAP + LMTP) and an SMTP server in front.

Used by the test suite and by ``mailflow demo``. Mail sent over SMTP really arrives in
the recipient's IMAP INBOX, so a test checks what a customer *receives*. The recipe
and its pitfalls are in shared/docs/mailstack.md.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import smtplib
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imapclient import IMAPClient

from mailflow.tokenissuer import OAUTH2_CONF, TokenIssuer

DOVECOT_CONF = """\
base_dir = {root}/run
state_dir = {root}/run/state
instance_name = mailflow-{tag}
protocols = imap lmtp
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2 oauthbearer
log_path = {root}/log/dovecot.log
mail_location = maildir:{root}/mail/%u
mail_uid = dovecot
mail_gid = dovecot
first_valid_uid = 0
default_login_user = dovenull
default_internal_user = dovecot
default_internal_group = dovecot
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {root}/oauth2.conf.ext
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
  }}
  chroot =
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
protocol imap {{
  mail_max_userip_connections = 200
}}
auth_failure_delay = 0
"""

PASSWORD = "secret"

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_dovecot() -> str:
    """Path to the dovecot binary. Installing it is scripts/setup's job (it knows about
    sudo and the package manager); here a missing Dovecot is one clear line."""
    found = shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None)
    if found:
        return found
    raise RuntimeError("dovecot is not installed: run scripts/setup, or "
                       "apt-get install dovecot-imapd dovecot-lmtpd")


class LmtpRelay:
    """aiosmtpd handler: deliver each accepted message into Dovecot over LMTP.

    ``fail_with`` makes the server answer every DATA with that reply (e.g. "451 4.3.0
    try later") so tests can show the outbox retrying. One LMTP transaction per
    recipient: smtplib.LMTP reads only the first of LMTP's per-recipient replies.
    """

    def __init__(self, lmtp_port: int, issuer: TokenIssuer | None = None):
        self.lmtp_port = lmtp_port
        self.issuer = issuer
        self.logins: list[tuple[str, str]] = []  # (mechanism, user) of accepted AUTHs
        self.fail_with: str | None = None
        self.reject: dict[str, str] = {}
        self.received: list[tuple[str, list[str], bytes]] = []

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> Any:
        """SASL XOAUTH2 with the initial response (``user=..^Aauth=Bearer ..^A^A``)."""
        from aiosmtpd.smtp import AuthResult

        fields: dict[str, str] = {}
        if len(args) == 2:
            try:
                decoded = base64.b64decode(args[1], validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                decoded = ""
            fields = dict(f.split("=", 1) for f in decoded.split("\x01") if "=" in f)
        user = fields.get("user", "")
        token = fields.get("auth", "").removeprefix("Bearer ")
        if self.issuer is not None and user and self.issuer.user_for(token) == user:
            self.logins.append(("XOAUTH2", user))
            return AuthResult(success=True, auth_data=user)
        return AuthResult(success=False, handled=False,
                          message="535 5.7.8 Username and token not accepted")

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address.lower() in self.reject:
            return self.reject[address.lower()]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.fail_with:
            return self.fail_with
        content: bytes = envelope.original_content

        def deliver() -> dict[str, str]:
            refused = {}
            for rcpt in envelope.rcpt_tos:
                try:
                    with smtplib.LMTP("127.0.0.1", self.lmtp_port) as lmtp:
                        lmtp.sendmail(envelope.mail_from, [rcpt], content)
                except smtplib.SMTPRecipientsRefused:
                    refused[rcpt] = "unknown user"
            return refused

        refused = await asyncio.get_running_loop().run_in_executor(None, deliver)
        if refused and len(refused) == len(envelope.rcpt_tos):
            return "550 5.1.1 no such user"
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), content))
        return "250 OK queued"


@dataclass
class MailStack:
    root: Path
    users: list[str] = field(default_factory=lambda: [
        "support@example.test", "tier2@example.test", "customer@example.test"])
    imap_port: int = 0
    lmtp_port: int = 0
    smtp_port: int = 0
    # With tls=True: IMAP offers STARTTLS, IMAPS listens on imaps_port, SMTP requires
    # STARTTLS and SMTPS listens on smtps_port; all with a self-signed cert (cert_file).
    tls: bool = False
    imaps_port: int = 0
    smtps_port: int = 0
    relay: LmtpRelay | None = None
    issuer: TokenIssuer | None = None
    _controller: Any = None
    _controller_ssl: Any = None

    @property
    def cert_file(self) -> Path:
        return self.root / "cert.pem"

    def _make_cert(self) -> None:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", str(self.root / "key.pem"), "-out", str(self.cert_file)],
            check=True, capture_output=True)
        os.chmod(self.root / "key.pem", 0o644)

    @classmethod
    def create(cls, root: Path | None = None, users: list[str] | None = None) -> MailStack:
        root = Path(root or tempfile.mkdtemp(prefix="mailflow-stack-"))
        stack = cls(root=root)
        if users:
            stack.users = list(users)
        return stack

    # -- Dovecot -----------------------------------------------------------------------
    def start(self) -> MailStack:
        dovecot = ensure_dovecot()
        self._dovecot = dovecot
        r = self.root
        for d in ("run", "log", "mail"):
            (r / d).mkdir(parents=True, exist_ok=True)
        os.chmod(r, 0o755)
        shutil.chown(r / "mail", "dovecot", "dovecot")
        self.imap_port = self.imap_port or free_port()
        self.lmtp_port = self.lmtp_port or free_port()
        self._write_users()
        if self.issuer is None:
            self.issuer = TokenIssuer()
        (r / "oauth2.conf.ext").write_text(OAUTH2_CONF.format(port=self.issuer.port))
        ssl_conf = "ssl = no"
        if self.tls:
            self._make_cert()
            self.imaps_port = self.imaps_port or free_port()
            self.smtps_port = self.smtps_port or free_port()
            ssl_conf = f"ssl = yes\nssl_cert = <{r}/cert.pem\nssl_key = <{r}/key.pem"
        (r / "dovecot.conf").write_text(DOVECOT_CONF.format(
            root=r, tag=r.name, imap_port=self.imap_port, lmtp_port=self.lmtp_port,
            imaps_port=self.imaps_port, ssl=ssl_conf))
        self.start_dovecot()
        try:
            self.start_smtp()
        except BaseException:
            # Never leave a Dovecot behind that nobody will stop (aiosmtpd missing, the
            # port taken): the caller gets the error and nothing running.
            self.stop_dovecot()
            raise
        return self

    def _write_users(self) -> None:
        lines = "".join(f"{u}:{{PLAIN}}{PASSWORD}::::::\n" for u in self.users)
        (self.root / "users").write_text(lines)

    def start_dovecot(self) -> None:
        pidfile = self.root / "run" / "master.pid"
        pidfile.unlink(missing_ok=True)
        with open(self.root / "log" / "stderr.log", "ab") as err:
            subprocess.run([self._dovecot, "-c", str(self.root / "dovecot.conf")],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                           check=True)
        _wait_port(self.imap_port)
        _wait_port(self.lmtp_port)
        # Dovecot writes master.pid after it listens; stop_dovecot needs it, so a start
        # that fails right after this point can still stop what it started.
        deadline = time.monotonic() + 10
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop_dovecot(self) -> None:
        pidfile = self.root / "run" / "master.pid"
        if not pidfile.exists():
            return
        pid = int(pidfile.read_text().strip())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 15)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        pidfile.unlink(missing_ok=True)

    # -- SMTP ---------------------------------------------------------------------------
    def start_smtp(self) -> None:
        from aiosmtpd.controller import Controller

        if self.relay is None:
            self.relay = LmtpRelay(self.lmtp_port, self.issuer)
        self.smtp_port = self.smtp_port or free_port()
        if self.tls:
            import ssl

            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self.cert_file, self.root / "key.pem")
            self._controller = Controller(self.relay, hostname="127.0.0.1",
                                          port=self.smtp_port, tls_context=ctx,
                                          require_starttls=True)
            self._controller_ssl = Controller(self.relay, hostname="127.0.0.1",
                                              port=self.smtps_port, ssl_context=ctx)
            self._controller_ssl.start()
        else:
            # AUTH (XOAUTH2) offered without TLS: loopback test server only.
            self._controller = Controller(self.relay, hostname="127.0.0.1",
                                          port=self.smtp_port, auth_require_tls=False)
        self._controller.start()

    def stop_smtp(self) -> None:
        for c in (self._controller, self._controller_ssl):
            if c is not None:
                c.stop()
        self._controller = self._controller_ssl = None

    def stop(self) -> None:
        self.stop_smtp()
        self.stop_dovecot()
        if self.issuer is not None:
            self.issuer.close()
            self.issuer = None

    # -- helpers for tests and the demo -------------------------------------------------
    def imap(self, user: str) -> IMAPClient:
        c = IMAPClient("127.0.0.1", port=self.imap_port, ssl=False, timeout=30)
        c.login(user, PASSWORD)
        return c

    def append(self, user: str, messages: list[bytes], folder: str = "INBOX") -> None:
        with self.imap(user) as c:
            if not c.folder_exists(folder):
                c.create_folder(folder)
            for raw in messages:
                c.append(folder, raw)

    def messages(self, user: str, folder: str = "INBOX") -> list[bytes]:
        """Everything in a user's folder, oldest first."""
        with self.imap(user) as c:
            if not c.folder_exists(folder):
                return []
            c.select_folder(folder, readonly=True)
            uids = c.search("ALL")
            if not uids:
                return []
            data = c.fetch(uids, ["BODY.PEEK[]"])
            return [data[u][b"BODY[]"] for u in sorted(data)]

    def wait_for(self, user: str, count: int, timeout: float = 10.0,
                 folder: str = "INBOX") -> list[bytes]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.messages(user, folder)
            if len(got) >= count or time.monotonic() > deadline:
                return got
            time.sleep(0.05)

    def settings_yaml(self, database: str, extra: str = "") -> str:
        return (
            f"database: {database}\n"
            f"support_address: support@example.test\n"
            f"imap:\n  host: 127.0.0.1\n  port: {self.imap_port}\n  security: none\n"
            f"  username: support@example.test\n  password_env: MAILFLOW_IMAP_PASSWORD\n"
            # The stack's mail is put in the INBOX before the first run: it is new mail.
            f"  backlog: acknowledge\n"
            f"smtp:\n  host: 127.0.0.1\n  port: {self.smtp_port}\n  security: none\n"
            + extra
        )


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing is listening on 127.0.0.1:{port} after {timeout}s")
