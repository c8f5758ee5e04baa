"""Image references: OCI/Docker references, local paths and transport prefixes.

The OCI/Docker grammar is the one of distribution/reference
(``reference := name [":" tag] ["@" digest]``), with Docker's normalisation:
no domain means ``docker.io``, and a one-component name on docker.io gets
``library/``. Enroot's ``REGISTRY#IMAGE`` form is accepted as well.
"""

from __future__ import annotations

import re

from slurmc.errors import InvalidReferenceError
from slurmc.values import Value

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAINS = {"index.docker.io", "registry-1.docker.io"}
NAME_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEP = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = re.compile(rf"{_ALNUM}(?:{_SEP}{_ALNUM})*\Z")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?\Z"
)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")  # ASCII, as distribution's
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}\Z")
_DIGEST_LEN = {"sha256": 64, "sha384": 96, "sha512": 128}
_HEX64 = re.compile(r"[a-f0-9]{64}\Z")

#: File endings that mark a reference as a local image file.
IMAGE_SUFFIXES = (".sif", ".simg", ".sqsh", ".sqfs", ".squashfs", ".tar", ".oci")
#: ``catalog:PACKAGE[:VERSION]`` picks the newest matching image of a site catalog.
CATALOG_PREFIX = "catalog:"
#: Transports whose rest is a local path.
PATH_TRANSPORTS = ("oci-archive:", "docker-archive:", "oci:")
#: Transports a runtime resolves by itself (passed through as they are).
REMOTE_TRANSPORTS = ("library://", "oras://", "shub://", "http://", "https://")


class ImageRef(Value):
    """A parsed, normalised OCI/Docker reference."""

    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def familiar_path(self) -> str:
        """The path as Docker shows it for docker.io (``ubuntu`` for library/ubuntu).

        As distribution's FamiliarName: ``library/`` goes only from a one-component
        official name (``library/foo/bar`` is another repository than ``foo/bar``).
        """
        rest = self.path[len("library/") :]
        if self.domain == DEFAULT_DOMAIN and self.path.startswith("library/") and "/" not in rest:
            return rest
        return self.path

    @property
    def familiar_name(self) -> str:
        """The name as Docker writes it, read back as the same repository.

        On docker.io the domain is left out, unless the path's first component would
        then be read as a registry (``docker.io/foo.bar/baz``, ``docker.io/localhost/x``).
        """
        if self.domain != DEFAULT_DOMAIN:
            return f"{self.domain}/{self.path}"
        path = self.familiar_path
        first, sep, _ = path.partition("/")
        return f"{DEFAULT_DOMAIN}/{path}" if sep and is_domain_like(first) else path

    @property
    def effective_tag(self) -> str | None:
        """The tag, with Docker's implicit ``latest`` when neither tag nor digest is given."""
        if self.tag is None and self.digest is None:
            return "latest"
        return self.tag

    def canonical(self) -> str:
        """``docker.io/library/ubuntu:latest``: fully qualified, with the implicit tag."""
        out = f"{self.domain}/{self.path}"
        if self.effective_tag:
            out += f":{self.effective_tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def __str__(self) -> str:  # the familiar form, as users write it
        if self.domain != DEFAULT_DOMAIN and not is_domain_like(self.domain):
            out = f"{self.domain}#{self.path}"  # a one-word registry: Enroot's REGISTRY#IMAGE
        else:
            out = self.familiar_name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


class ImageSpec(Value):
    """What a user asked for: a registry reference, a local path, or a pass-through URI."""

    kind: str  # "ref" | "path" | "uri" | "catalog"
    text: str
    ref: ImageRef | None = None
    path: str | None = None
    transport: str | None = None  # for kind "path": "oci-archive:" etc.
    catalog: tuple[str, str | None] | None = None  # for kind "catalog": (package, version)


def is_domain_like(component: str) -> bool:
    """Whether Docker reads *component*, first in a name, as a registry host."""
    return (
        "." in component
        or ":" in component
        or component == "localhost"
        or component.lower() != component
    )


def parse_reference(text: str) -> ImageRef:
    """Parse an OCI/Docker reference; raise InvalidReferenceError with the reason."""
    original = text
    if not text:
        raise InvalidReferenceError(
            "image reference is empty; give e.g. ubuntu:22.04 or a .sif file"
        )
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise InvalidReferenceError(
            f"invalid image reference {original!r}: contains whitespace or a control character"
        )
    if text.startswith("docker://"):
        text = text[len("docker://") :]
    if _HEX64.match(text):
        raise InvalidReferenceError(
            f"invalid image reference {original!r}: a 64-hex string is an image id, "
            "not a repository name"
        )
    registry = None
    if "#" in text:  # Enroot/Pyxis: [USER@]REGISTRY#IMAGE; the part before # is the registry
        registry, _, text = text.partition("#")
        if "@" in registry:
            raise InvalidReferenceError(
                f"invalid image reference {original!r}: Enroot's USER@REGISTRY#IMAGE form is "
                "not supported; drop 'USER@' and keep the login in ~/.config/slurmc/credentials"
            )
        if not registry or "/" in registry or "#" in text or not _DOMAIN.match(registry):
            raise InvalidReferenceError(
                f"invalid image reference {original!r}: '#' may only separate REGISTRY#IMAGE"
            )

    digest = None
    if "@" in text:
        text, _, digest = text.partition("@")
        if not _DIGEST.match(digest):
            raise InvalidReferenceError(
                f"invalid image reference {original!r}: digest {digest!r} is not ALGORITHM:HEX"
            )
        algo, _, hexpart = digest.partition(":")
        if algo not in _DIGEST_LEN:
            raise InvalidReferenceError(
                f"invalid image reference {original!r}: digest algorithm {algo!r} is not "
                f"supported ({', '.join(_DIGEST_LEN)})"
            )
        if len(hexpart) != _DIGEST_LEN[algo]:
            raise InvalidReferenceError(
                f"invalid image reference {original!r}: a {algo} digest has "
                f"{_DIGEST_LEN[algo]} hex digits, not {len(hexpart)}"
            )
    tag = None
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        text, tag = text[:colon], text[colon + 1 :]
        if not _TAG.match(tag):
            raise InvalidReferenceError(
                f"invalid image reference {original!r}: tag {tag!r} must match "
                "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
            )
    if not text:
        raise InvalidReferenceError(f"invalid image reference {original!r}: no repository name")

    first, sep, rest = text.partition("/")
    if registry is not None:
        domain, path = registry, text
    elif sep and is_domain_like(first):
        domain, path = first, rest
        if not _DOMAIN.match(domain):
            raise InvalidReferenceError(
                f"invalid image reference {original!r}: {domain!r} is not a registry host[:port]"
            )
    else:
        domain, path = DEFAULT_DOMAIN, text
    if domain in LEGACY_DOMAINS:
        domain = DEFAULT_DOMAIN
    if not path:
        raise InvalidReferenceError(f"invalid image reference {original!r}: no repository name")
    for component in path.split("/"):
        if not _PATH_COMPONENT.match(component):
            raise InvalidReferenceError(
                f"invalid image reference {original!r}: path component {component!r} must be "
                "lowercase letters and digits separated by '.', '_', '__' or '-'"
            )
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    if len(path) > NAME_MAX:  # distribution's limit: the repository path, not the domain
        raise InvalidReferenceError(
            f"invalid image reference {original[:60]!r}...: name longer than {NAME_MAX} characters"
        )
    return ImageRef(domain=domain, path=path, tag=tag, digest=digest)


def looks_like_path(text: str) -> bool:
    """True when *text* names a local file or directory rather than a registry image."""
    if text.startswith(("/", "./", "../", "~")) or text in (".", ".."):
        return True
    return text.endswith(IMAGE_SUFFIXES) and ":" not in text and "@" not in text


def parse_image(text: str) -> ImageSpec:
    """Classify what the user typed as a path, a pass-through URI or a reference."""
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise InvalidReferenceError(f"invalid image {text!r}: contains a control character")
    if text.startswith(CATALOG_PREFIX):
        package, _, version = text[len(CATALOG_PREFIX) :].partition(":")
        if not re.match(r"[a-z0-9][a-z0-9_.-]*\Z", package) or (
            version and not re.match(r"[A-Za-z0-9][A-Za-z0-9_.+-]*\Z", version)
        ):
            raise InvalidReferenceError(
                f"invalid catalog image {text!r}; write catalog:PACKAGE or catalog:PACKAGE:VERSION"
            )
        return ImageSpec(kind="catalog", text=text, catalog=(package, version or None))
    for transport in PATH_TRANSPORTS:
        if text.startswith(transport):
            path = text[len(transport) :]
            if not path:
                raise InvalidReferenceError(f"invalid image {text!r}: no path after {transport}")
            return ImageSpec(kind="path", text=text, path=path, transport=transport)
    for transport in REMOTE_TRANSPORTS:
        if text.startswith(transport):
            if len(text) == len(transport):
                raise InvalidReferenceError(f"invalid image {text!r}: nothing after {transport}")
            return ImageSpec(kind="uri", text=text, transport=transport)
    if looks_like_path(text):
        return ImageSpec(kind="path", text=text, path=text)
    return ImageSpec(kind="ref", text=text, ref=parse_reference(text))
