"""Ask a registry what a tag points at now: its manifest digest, in one request.

A small client of the distribution API's manifest endpoint (``HEAD
/v2/NAME/manifests/TAG``, the digest in ``Docker-Content-Digest``), standard library
only: it runs for ``--refresh`` and before pulls, and a client library would cost more
to import than the one request it makes. Authentication as registries answer a 401:
``Basic`` (htpasswd registries) with the user's login, or ``Bearer`` (Docker Hub, NGC,
GitLab): a token from the realm the challenge names, asked anonymously or with the
login. TLS is verified with the system's CAs (``SSL_CERT_FILE`` or, as for ch-image,
``REQUESTS_CA_BUNDLE`` replace them).
"""

from __future__ import annotations

import base64
import json
import os
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping

from slurmc.errors import PullError
from slurmc.grammar.refs import ImageRef
from slurmc.runtimes.base import Login

#: every manifest kind a tag can point at; the digest is of the one the registry returns
ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
TIMEOUT = 30.0
_PARAM = re.compile(r'(\w+)="([^"]*)"')


class RegistryAuthError(PullError):
    """The registry wants a login (none was given, or it refused the one given)."""


def endpoint(ref: ImageRef) -> str:
    """``https://HOST[:PORT]`` of *ref*'s registry (Docker Hub's API host for docker.io)."""
    host = "registry-1.docker.io" if ref.domain == "docker.io" else ref.domain
    return f"https://{host}"


def _open(request: urllib.request.Request) -> tuple[int, Mapping[str, str], bytes]:
    # SSL_CERT_FILE is honoured by the default context; REQUESTS_CA_BUNDLE, which sites
    # set for Python tools (ch-image among them), too
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") if not os.environ.get("SSL_CERT_FILE") else None
    context = ssl.create_default_context(cafile=bundle or None)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT, context=context) as response:
            return response.status, _lower(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, _lower(exc.headers.items()), b""
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PullError(f"cannot ask {request.full_url} ({reason})") from None


def _lower(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {k.lower(): v for k, v in items}


def _basic(login: Login) -> str:
    return "Basic " + base64.b64encode(f"{login.username}:{login.password}".encode()).decode()


def _token(challenge: str, login: Login | None) -> str:
    """A Bearer token from the realm named by *challenge*."""
    params = dict(_PARAM.findall(challenge))
    realm = params.pop("realm", "")
    if not realm.startswith("https://"):
        raise PullError(f"the registry names a token service that is not https: {realm!r}")
    url = realm + "?" + urllib.parse.urlencode(params)
    request = urllib.request.Request(url)
    if login is not None:
        request.add_header("Authorization", _basic(login))
    status, _, body = _open(request)
    if status == 401:
        raise RegistryAuthError(f"{realm} refused the login")
    try:
        data = json.loads(body)
        return str(data.get("token") or data["access_token"])
    except (ValueError, KeyError, TypeError):
        raise PullError(f"{realm} answered {status} without a token") from None


def manifest_digest(ref: ImageRef, login: Login | None) -> str:
    """The digest of the manifest *ref*'s tag (or digest) points at now."""
    url = f"{endpoint(ref)}/v2/{ref.path}/manifests/{ref.digest or ref.effective_tag}"
    headers = {"Accept": ACCEPT}
    status, answer, _ = _open(urllib.request.Request(url, headers=headers, method="HEAD"))
    if status == 401:
        challenge = answer.get("www-authenticate", "")
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic" and login is not None:
            headers["Authorization"] = _basic(login)
        elif scheme == "bearer":
            headers["Authorization"] = "Bearer " + _token(challenge, login)
        else:
            raise RegistryAuthError(f"registry {ref.domain} wants a login")
        status, answer, _ = _open(urllib.request.Request(url, headers=headers, method="HEAD"))
        if status == 401:
            raise RegistryAuthError(f"registry {ref.domain} refused the login")
    if status == 404:
        raise PullError(f"{ref}: the registry has no such image or tag")
    if status != 200:
        raise PullError(f"{ref}: the registry answered {status} for its manifest")
    digest = answer.get("docker-content-digest", "")
    if not re.fullmatch(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-fA-F0-9]{32,}", digest):
        raise PullError(f"{ref}: the registry gave no manifest digest")
    return digest
