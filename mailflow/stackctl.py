"""Keep the demo's mail stack running after ``mailflow demo --keep`` ends; stop it later.

Dovecot is a daemon of its own and outlives the demo anyway; the SMTP server is an
aiosmtpd thread inside the demo's process and would end with it, leaving a stack that
receives no mail. ``keep`` hands SMTP over to a detached process (this module run with
``python -m``) and records its pid next to Dovecot's, so ``mailflow demo --stop`` can
end both, and a new demo in the same folder can clear an old one first.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mailflow.mailstack import MailStack, _wait_port

STATE_FILE = "stack.json"
# In the demo folder: where the stack lives when it cannot live in <folder>/mailstack.
POINTER = "mailstack.path"


def stack_root(directory: Path) -> Path:
    """Where the demo's mail stack goes: ``<directory>/mailstack``, unless Dovecot's
    processes (user dovecot) cannot reach it there, as below a mode-700 home such as
    /root; then a folder under the temporary directory, noted in ``<directory>/
    mailstack.path`` so that ``--stop`` and the next demo find it."""
    if all(p.stat().st_mode & 0o001 for p in [directory, *directory.parents]):
        return directory / "mailstack"
    root = Path(tempfile.mkdtemp(prefix="mailflow-demo-stack-"))
    root.chmod(0o755)
    (directory / POINTER).write_text(f"{root}\n")
    return root


def stop_all(directory: Path) -> bool:
    """Stop every stack a demo in ``directory`` may have left; True if one ran. A stack
    kept under the temporary directory is removed with its pointer."""
    was = stop(directory / "mailstack")
    note = directory / POINTER
    try:
        elsewhere = Path(note.read_text().strip())
    except OSError:
        return was
    was = stop(elsewhere) or was
    shutil.rmtree(elsewhere, ignore_errors=True)
    note.unlink(missing_ok=True)
    return was


def _smtp_pidfile(root: Path) -> Path:
    return root / "run" / "smtp.pid"


def keep(stack: MailStack) -> None:
    """Replace the in-process SMTP server by a detached one on the same port."""
    stack.stop_smtp()
    with open(stack.root / "log" / "smtp.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailflow.stackctl", str(stack.lmtp_port),
             str(stack.smtp_port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    _smtp_pidfile(stack.root).write_text(f"{proc.pid}\n")
    try:
        _wait_port(stack.smtp_port)
    except RuntimeError:
        stop(stack.root)
        raise
    (stack.root / STATE_FILE).write_text(json.dumps(
        {"imap_port": stack.imap_port, "smtp_port": stack.smtp_port}))


def kept_ports(root: Path) -> dict[str, int] | None:
    """The ports of a stack ``keep`` left running under ``root``, else None."""
    try:
        data = json.loads((root / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if running(root) else None


def running(root: Path) -> bool:
    return _alive(_pid(root / "run" / "master.pid"), "dovecot") or \
        _alive(_pid(_smtp_pidfile(root)), "mailflow.stackctl")


def stop(root: Path) -> bool:
    """End the detached SMTP server and Dovecot under ``root``; True if either ran."""
    was = running(root)
    pid = _pid(_smtp_pidfile(root))
    if _alive(pid, "mailflow.stackctl"):
        assert pid is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _alive(pid, "mailflow.stackctl") and time.monotonic() < deadline:
            time.sleep(0.05)
    _smtp_pidfile(root).unlink(missing_ok=True)
    MailStack(root=root).stop_dovecot()
    (root / STATE_FILE).unlink(missing_ok=True)
    return was


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int | None, name: str) -> bool:
    """Running and really ours: a recycled pid belongs to someone else."""
    if pid is None:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return name.encode() in cmdline


def _serve(lmtp_port: int, smtp_port: int) -> None:
    """The detached SMTP server: relay into Dovecot until SIGTERM or SIGINT."""
    from aiosmtpd.controller import Controller

    from mailflow.mailstack import LmtpRelay

    controller = Controller(LmtpRelay(lmtp_port), hostname="127.0.0.1", port=smtp_port,
                            auth_require_tls=False)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    controller.start()
    try:
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
    finally:
        controller.stop()


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
