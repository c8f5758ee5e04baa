"""Registry credentials: where they are kept, read safely, never shown.

Looked up, for a registry host (``nvcr.io``, ``127.0.0.1:5444``), in this order:

1. slurmc's own file, ``$XDG_CONFIG_HOME/slurmc/credentials`` (default
   ``~/.config/slurmc/credentials``), in netrc format as Enroot's ``.credentials``::

       machine nvcr.io login $oauthtoken password nvapi-...
       machine gitlab.example.org:5050 login me password glpat-...

   A file that its group or others can read is refused, as ssh refuses a private key:
   one line saying ``chmod 600 FILE``.
2. Docker's ``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``), the
   ``auths`` entries with an ``auth`` (base64 of ``user:password``);
3. Podman's ``$REGISTRY_AUTH_FILE``, else ``$XDG_RUNTIME_DIR/containers/auth.json``
   (same format).

Credential helpers (``credsStore``, ``credHelpers``) are not run: they are programs
of the user's desktop session, not of a login node.

A :class:`Credential` never prints its secret (its ``repr`` hides it); code that hands
it to a runtime does so through the runtime's documented channel (an environment
variable or a private file), never on a command line.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import netrc
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from slurmc.errors import ConfigError
from slurmc.paths import config_home
from slurmc.runtimes.base import Login, netrc_line

#: How Docker names Docker Hub in config.json.
DOCKER_HUB_KEYS = (
    "https://index.docker.io/v1/",
    "index.docker.io",
    "docker.io",
    "registry-1.docker.io",
)


@dataclass(frozen=True)
class Credential:
    registry: str
    username: str
    password: str = field(repr=False)
    source: str = ""

    def __str__(self) -> str:
        return f"{self.username} for {self.registry} (from {self.source})"

    def as_login(self) -> Login:
        return Login(self.registry, self.username, self.password)


def credentials_file(env: Mapping[str, str]) -> Path:
    return config_home(env) / "credentials"


def check_private(path: Path) -> None:
    """Refuse a credentials file its group or others can read or write."""
    st = path.stat()
    if st.st_mode & 0o077:
        raise ConfigError(
            f"{path} is readable by others ({stat.filemode(st.st_mode)}); run: chmod 600 {path}"
        )


def _from_netrc(path: Path, registry: str) -> Credential | None:
    try:
        check_private(path)
        parsed = netrc.netrc(str(path))
    except FileNotFoundError:
        return None
    except netrc.NetrcParseError as exc:
        raise ConfigError(
            f"{path}: line {exc.lineno}: {exc.msg}; "
            "expected lines of 'machine HOST login USER password SECRET'"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path}: cannot be read ({getattr(exc, 'strerror', None) or exc})"
        ) from None
    entry = parsed.authenticators(registry)
    if entry is None:
        return None
    login, _, password = entry
    if not login or password is None:
        return None
    return Credential(registry, login, password, str(path))


def _auth_json_files(env: Mapping[str, str]) -> list[Path]:
    home = env.get("HOME") or os.path.expanduser("~")
    docker = env.get("DOCKER_CONFIG") or os.path.join(home, ".docker")
    files = [Path(docker) / "config.json"]
    if env.get("REGISTRY_AUTH_FILE"):
        files.append(Path(env["REGISTRY_AUTH_FILE"]))
    elif env.get("XDG_RUNTIME_DIR"):
        files.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    return files


def _from_auth_json(path: Path, registry: str) -> Credential | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError, UnicodeDecodeError):
        return None  # not ours to judge: docker/podman will say what is wrong with it
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        return None
    keys = [registry, f"https://{registry}", f"https://{registry}/v1/", f"https://{registry}/v2/"]
    if registry in DOCKER_HUB_KEYS:
        keys = [*DOCKER_HUB_KEYS, *keys]
    for key in keys:
        entry = auths.get(key)
        if not isinstance(entry, dict) or not isinstance(entry.get("auth"), str):
            continue
        with contextlib.suppress(binascii.Error, UnicodeDecodeError, ValueError):
            user, sep, password = (
                base64.b64decode(entry["auth"], validate=True).decode().partition(":")
            )
            if sep and user:
                return Credential(registry, user, password, str(path))
    return None


def lookup(registry: str, env: Mapping[str, str]) -> Credential | None:
    """The credentials for *registry* (a host, with its port if it has one), or None."""
    found = _from_netrc(credentials_file(env), registry)
    if found is not None:
        return found
    for path in _auth_json_files(env):
        found = _from_auth_json(path, registry)
        if found is not None:
            return found
    return None


def save(credential: Credential, env: Mapping[str, str]) -> Path:
    """Store *credential* in slurmc's file (0600, written under a temporary name and
    renamed), replacing an earlier entry for the same registry."""
    for text in (credential.registry, credential.username, credential.password):
        if any(c in text for c in "\n\r\0"):
            raise ConfigError("a registry, user name or password may not hold a line break")
    path = credentials_file(env)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    lines: list[str] = []
    if path.exists():
        check_private(path)
        parsed = netrc.netrc(str(path))
        for host, (login, _account, password) in parsed.hosts.items():
            if host != credential.registry and login is not None and password is not None:
                lines.append(netrc_line(Login(host, login, password)).rstrip("\n"))
    lines.append(netrc_line(credential.as_login()).rstrip("\n"))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path
