"""Credentials for IMAP and SMTP: where the password or OAuth2 token comes from.

Secrets are read at connect time, never at load time, so a rotated password or a
refreshed token is picked up by the next connection and no long-lived settings object
holds one. ``mailflow.config`` builds ``imap:`` and ``smtp:`` on these settings.
"""

from __future__ import annotations

import os
import shlex
import ssl
import subprocess
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

from mailflow.configerrors import ConfigError


class CredentialError(Exception):
    """No usable password or OAuth2 token right now (a missing variable, an unreadable
    token file, a failing token command). The watcher retries with back-off."""


class LoginSettings(BaseModel):
    """How to log in to IMAP or SMTP: a password (from a variable, a file or the config)
    or an OAuth2 token (from a file or a command), and the CA to trust."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    username: str | None = None
    # "password" (LOGIN / AUTH PLAIN) or "xoauth2" (SASL XOAUTH2 with a bearer token, as
    # Microsoft 365 and Gmail require). The token is read fresh at every login.
    auth: Literal["password", "xoauth2"] = "password"
    token_file: Path | None = None
    token_command: str | None = None
    # Extra CA certificate(s) to trust for ssl/starttls (a private CA, a self-signed
    # server); the system's CAs are trusted either way.
    ca_file: Path | None = None
    password_env: str | None = None
    # A file whose content (surrounding whitespace stripped) is the password: Docker and
    # systemd credentials (/run/secrets/..., $CREDENTIALS_DIRECTORY/...).
    password_file: Path | None = None
    password: SecretStr | None = None

    def under(self, base: Path) -> Self:
        """A copy with relative file paths taken relative to the config file's folder,
        as ``rules_dir`` is, not to wherever the daemon was started from."""
        update = {k: base / v for k in ("password_file", "token_file", "ca_file")
                  if (v := getattr(self, k)) is not None and not v.is_absolute()}
        return self.model_copy(update=update) if update else self

    def tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if self.ca_file:
            ctx.load_verify_locations(cafile=str(self.ca_file))
        return ctx

    def secret(self, environ: dict[str, str] | None = None) -> str | None:
        """The password, from the variable ``password_env`` names or ``password_file``.

        Read at connect time, not at load time, so a rotated secret is picked up by the
        next connection and the value never sits in a long-lived settings object.
        """
        env = os.environ if environ is None else environ
        if self.password_env:
            value = env.get(self.password_env)
            if value is None:
                raise ConfigError(
                    [f"environment variable {self.password_env} (password_env) is not set"]
                )
            return value
        if self.password_file is not None:
            try:
                value = self.password_file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                why = getattr(exc, "strerror", None) or str(exc)
                raise CredentialError(
                    f"cannot read password_file {self.password_file}: {why}") from None
            if not value:
                raise CredentialError(f"password_file {self.password_file} is empty")
            return value
        return self.password.get_secret_value() if self.password else None

    def token(self, timeout: float = 30.0) -> str:
        """A fresh OAuth2 access token from ``token_file`` or ``token_command``.

        Tokens live about an hour and are refreshed by something else (a sidecar that
        rewrites the file, a helper such as oama or a cloud CLI), so they are read at each
        login. Never logged: only the command's exit status and stderr are reported.
        """
        if self.token_file is not None:
            try:
                value = self.token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise CredentialError(
                    f"cannot read token_file {self.token_file}: {exc.strerror}") from None
            if not value:
                raise CredentialError(f"token_file {self.token_file} is empty")
            return value
        assert self.token_command is not None  # the validator requires one of the two
        try:
            done = subprocess.run(shlex.split(self.token_command), capture_output=True,
                                  text=True, timeout=timeout, check=False)
        except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
            raise CredentialError(f"token_command failed to run: {exc}") from None
        if done.returncode != 0:
            err = " ".join(done.stderr.split())[:300]
            raise CredentialError(
                f"token_command exited with status {done.returncode}: {err or '(no stderr)'}")
        value = done.stdout.strip()
        if not value or any(c.isspace() for c in value):
            raise CredentialError("token_command printed no token (expected one line)")
        return value

    @model_validator(mode="after")
    def _one_password_source(self) -> LoginSettings:
        given = [k for k in ("password_env", "password_file", "password") if getattr(self, k)]
        if len(given) > 1:
            raise ValueError(f"give only one of password_env, password_file or password "
                             f"(got {' and '.join(given)})")
        if self.auth == "xoauth2":
            if (self.token_file is None) == (self.token_command is None):
                raise ValueError("auth: xoauth2 needs exactly one of token_file or "
                                 "token_command")
            if not self.username:
                raise ValueError("auth: xoauth2 needs the username (the mailbox address)")
            if given:
                raise ValueError("auth: xoauth2 uses a token, not password/password_env/"
                                 "password_file")
        elif self.token_file is not None or self.token_command is not None:
            raise ValueError("token_file and token_command are used only with auth: xoauth2")
        return self
