"""The contract of a container runtime.

Everything that differs between container runtimes lives in their modules here and
in their launch templates (``templates/launch/``), nowhere else: the default
executable, which image formats and URIs it takes, how it pulls and names cached
files, what it does after a pull (``enroot create``), its GPU flags, how it wraps a
command in a job and on this machine (and the srun form, for Pyxis), how it mounts a
venv, and what its bind and environment grammar cannot carry.

Adding a runtime is adding one module here that defines ``RUNTIMES`` and one
template: :func:`slurmc.runtimes.get_runtime` finds modules by name. Runtimes only
describe commands (argv lists, flags, file names); the cache and the backends run them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from slurmc.errors import InvalidReferenceError, ValidationError
from slurmc.grammar.refs import DEFAULT_DOMAIN, ImageRef, is_domain_like
from slurmc.values import Value, field

_FILENAME_MAX = 255


class Step(Value):
    """One external command of a pull, with environment additions and the private files
    it reads (a name under the pull's private scratch directory -> its text; written
    mode 0600 before the command runs, removed with the directory after the pull)."""

    argv: list[str]
    env: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)


class Login(Value):
    """A registry login for one pull. Runtimes hand it over their documented channel
    (an environment variable or a private file), never on a command line; its ``repr``
    hides the password."""

    registry: str
    username: str
    password: str = field(repr=False)


class UserCopy(Value):
    """A per-user container a runtime makes from the shared cached file after a pull
    (``enroot create``, as manage-enroot-cache does): made only when *name* is not
    in what *list_argv* prints."""

    name: str
    list_argv: list[str]
    create_argv: list[str]


class Runtime(Value):
    """A container runtime: what differs between runtimes, as settings and hooks.

    A runtime module subclasses it (``class Charliecloud(Runtime):``, no decorator),
    sets the settings below as class-level defaults, overrides the hooks it needs and
    lists its instances in ``RUNTIMES``.
    """

    name: str = ""
    #: the command a site runs when its file names none (``runtime.executable``);
    #: empty: the runtime's name
    default_executable: str = ""
    #: the runtime opens image URIs itself (``docker://``, ``oras://``, ``library://``...)
    accepts_uris: bool = False
    #: image formats it runs from a file on this machine (``slurmc inspect --exec``
    #: without a site looks for a runtime on PATH by the image's format)
    local_formats: tuple[str, ...] = ()
    #: ``slurmc inspect --exec`` may run the image on this machine (else: --on-node)
    local_exec: bool = True
    #: a venv's SquashFS file is mounted as it is (else: a directory unpacked from it)
    mounts_squashfs: bool = False
    #: launch template, relative to the templates directory
    template: str = ""
    #: suffix of an image file in the cache (apptainer: none, like Determined's layout)
    suffix: str = ""
    #: whether the runtime needs the job's working directory mounted explicitly
    mounts_workdir: bool = False
    #: the format of a cached image file: "sif", "squashfs" or "oci-archive"
    format: str = "sif"
    #: ``--env`` values go to slurmc's wrapper inside the container as arguments (the
    #: runtime's own way to pass variables changes some values)
    env_as_arguments: bool = False
    #: the runtime passes bytes that are not UTF-8 through unchanged (in the command,
    #: ``--env`` values and binds; else such values are refused)
    carries_non_utf8: bool = True
    #: the command's words holding bytes that are not UTF-8 go in as ``printf %b``
    #: escapes that a POSIX loop inside the container turns back into bytes (for
    #: runtimes that carry the command only as UTF-8: podman's OCI config is JSON)
    escapes_non_utf8_argv: bool = False
    #: the launch applies the image's own environment file when it has one (ch-run
    #: --set-env): slurmc reads whether it does (Job.image_environment)
    reads_image_environment: bool = False
    #: a bind may carry options (SRC:DST:OPTIONS)
    bind_options: bool = True
    #: characters the runtime's mount grammar cannot carry safely in a bind path or the
    #: working directory (Pyxis hands mounts to a file that enroot sources with bash):
    #: such paths are refused before anything is submitted
    unsafe_path_chars: str = ""
    #: whose grammar that is, for the error line
    unsafe_path_grammar: str = "its bind syntax"

    @property
    def executable(self) -> str:
        """The command to run when the site names none."""
        return self.default_executable or self.name

    def venv_bind(self, source: str, mount_point: str) -> str:
        """The bind that puts a venv (*source*: its file or unpacked directory) at
        *mount_point*, in this runtime's bind syntax."""
        raise ValidationError(f"--venv: runtime {self.name} has no way to mount a venv")

    def exec_argv(
        self,
        executable: str,
        image: str,
        command: Sequence[str],
        binds: Sequence[str] = (),
        *,
        fmt: str = "",
        network: bool = False,
    ) -> list[str]:
        """The command that runs *command* in *image* on this machine, with *binds*
        (``SRC:DST[:OPTIONS]``); *network*: the host's network (a pip install)."""
        raise ValidationError(f"runtime {self.name} has no way to run an image on this machine")

    def srun_argv(
        self,
        executable: str,
        image: str,
        command: Sequence[str],
        binds: Sequence[str] = (),
        options: Sequence[str] = (),
        *,
        fmt: str = "",
        network: bool = False,
    ) -> list[str]:
        """The same on one compute node, through ``srun`` (with *options*)."""
        base = ["srun", "--nodes=1", "--ntasks=1", *options]
        return [*base, *self.exec_argv(executable, image, command, binds, fmt=fmt, network=network)]

    def build_hint(self, stderr: str, mount_point: str) -> str | None:
        """What to tell the user when a venv build inside the image failed with *stderr*."""
        return None

    def user_copy(self, executable: str, ref: ImageRef, path: str) -> UserCopy | None:
        """The per-user container to make after *ref* was pulled to *path*, if any."""
        return None

    def gpu_flags(self, vendor: str) -> list[str]:
        """Flags that expose the partition's GPUs (``amd``, ``nvidia`` or ``none``)."""
        return []

    def bind_args(self, binds: Sequence[str]) -> list[str]:
        """The runtime's flags for *binds* (runtimes whose template asks for them)."""
        raise NotImplementedError

    def bind_spec(self, bind: str) -> str:
        """A checked ``SRC[:DST[:OPTIONS]]`` bind as this runtime's own bind flag takes it
        (a template's ``job.bind_words``, :meth:`exec_argv`)."""
        return bind

    def image_arg(self, path: str) -> str:
        """How a resolved image file is named on this runtime's command line."""
        return path

    def pull_steps(
        self, executable: str, ref: ImageRef, dest: str, scratch: str, login: Login | None = None
    ) -> list[Step]:
        """The commands that write *ref* to the file *dest* (*scratch*: a private temp
        dir), logged in with *login* if given."""
        raise NotImplementedError

    def version_argv(self, executable: str) -> list[str]:
        """The command that prints the runtime's version (``slurmc info``)."""
        return [executable, "--version"]

    def fetch_hint(self, ref: ImageRef) -> str:
        """What to run on a connected machine to get *ref* as a file for ``slurmc cache add``."""
        return f"apptainer pull image.sif {docker_uri(ref)}"

    def relpath_to_name(self, relpath: str) -> str:
        """The inverse of the runtime's own character mapping in :meth:`cache_relpath`."""
        return relpath

    def cache_relpath(self, ref: ImageRef) -> str:
        """The image's file name under a cache root (Determined's layout).

        ``determinedai/environments:TAG`` stays as it is, so caches written by
        manage-singularity-cache are used as they are; official images keep
        ``library/`` and other registries keep their host, so the mapping is
        injective; the result is relative and never contains ``..``.
        """
        first = ref.path.split("/", 1)[0]
        keep_domain = ref.domain != DEFAULT_DOMAIN or is_domain_like(first)
        name = f"{ref.domain}/{ref.path}" if keep_domain else ref.path
        if ref.domain != DEFAULT_DOMAIN and not is_domain_like(ref.domain):
            # a one-word registry (Enroot's myregistry#image): not myregistry/image,
            # which is the Docker Hub repository of user "myregistry"
            name = f"{ref.domain}#{ref.path}"
        if ref.effective_tag:
            name += f":{ref.effective_tag}"
        if ref.digest:
            name += f"@{ref.digest}"
        name += self.suffix
        parts = name.split("/")
        if any(p in ("", ".", "..") for p in parts):  # impossible by the grammar; kept as a guard
            raise InvalidReferenceError(f"{ref}: cannot be mapped to a cache file name")
        if any(len(p.encode()) > _FILENAME_MAX for p in parts):
            raise InvalidReferenceError(
                f"{ref}: a component is longer than {_FILENAME_MAX} bytes and cannot be a file name"
            )
        return name


def netrc_token(text: str) -> str:
    """A netrc token: bare when it can be, else double-quoted with backslash escapes (as
    Python's netrc and curl read them)."""
    if text and not any(c.isspace() or c in '"\\#' for c in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def netrc_line(login: Login) -> str:
    """*login* as one netrc line (Enroot's ``.credentials``, slurmc's credentials file)."""
    fields = ("machine", login.registry, "login", login.username, "password", login.password)
    return " ".join(netrc_token(f) for f in fields) + "\n"


def docker_uri(ref: ImageRef) -> str:
    """``docker://`` plus the reference as Docker names it (tag kept, implicit latest added)."""
    return "docker://" + pull_name(ref)


def pull_name(ref: ImageRef) -> str:
    """The reference as Docker-style tools (Apptainer, ch-image, podman) read it back."""
    if ref.domain != DEFAULT_DOMAIN and not is_domain_like(ref.domain):
        raise InvalidReferenceError(
            f"{ref}: registry {ref.domain!r} has no '.' or port, so only Enroot can name it "
            "(REGISTRY#IMAGE); give the registry's full host name"
        )
    name = ref.familiar_name
    if ref.effective_tag:
        name += f":{ref.effective_tag}"
    if ref.digest:
        name += f"@{ref.digest}"
    return name
