"""Who may use the web app: login for servers reachable beyond this machine.

Upload, delete and rebuild are events of the Gradio app, so any process that reaches the
server can call them through its queue API, whatever the page shows. On loopback that is
one person's own machine; on any other address ``qa serve`` requires a login (Gradio's
``auth``, which guards the page and every API route) unless ``--no-auth`` says explicitly
that the network is trusted. ``--read-only`` serves the chat alone: the corpus-changing events
are not registered at all (``qa.app.build_ui``).

Credentials come from a file (``--auth-file``, one ``user:password`` per line, readable by
its owner only) or the ``QA_SERVE_AUTH`` environment variable (``user:password``), never
from the command line, where other users could read them in the process list.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from qa.errors import ConfigError

AUTH_ENV = "QA_SERVE_AUTH"
Credentials = list[tuple[str, str]]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address to bind) only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # any other name may resolve to an outside address


def _pairs(lines: list[str], where: str) -> Credentials:
    pairs = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user.strip() or not password:
            raise ConfigError(f"{where}, line {number}: expected user:password")
        pairs.append((user.strip(), password))
    return pairs


def load_credentials(auth_file: Path | None, env: Mapping[str, str] = os.environ) -> Credentials:
    """Credentials from ``auth_file`` or, without one, the ``QA_SERVE_AUTH`` variable.

    Raises:
        ConfigError: the file is missing, readable by others, or has a malformed line.
    """
    if auth_file is not None:
        try:
            mode = auth_file.stat().st_mode
            text = auth_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the auth file {auth_file}: {exc}") from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"the auth file {auth_file} can be read by other users: chmod 600 {auth_file}")
        pairs = _pairs(text.splitlines(), str(auth_file))
        if not pairs:
            raise ConfigError(f"the auth file {auth_file} holds no user:password line")
        return pairs
    value = env.get(AUTH_ENV, "")
    return _pairs([value], AUTH_ENV) if value.strip() else []


def serve_auth(
    host: str, auth_file: Path | None, no_auth: bool, env: Mapping[str, str] = os.environ
) -> Credentials | None:
    """The ``auth`` to serve ``host`` with: credentials when given, None when none are needed.

    Raises:
        ConfigError: ``host`` is not loopback and there are no credentials and no
            ``no_auth``; or ``no_auth`` is given together with credentials.
    """
    credentials = load_credentials(auth_file, env)
    if no_auth:
        if credentials:
            raise ConfigError(f"--no-auth conflicts with the credentials of --auth-file / {AUTH_ENV}")
        return None
    if credentials:
        return credentials
    if is_loopback(host):
        return None
    raise ConfigError(
        f"--host {host} can be reached from other machines: give a login with --auth-file FILE "
        f"(lines user:password, chmod 600) or {AUTH_ENV}=user:password, or pass --no-auth if "
        "everyone who can reach it may use it (add --read-only so they can only ask)"
    )
