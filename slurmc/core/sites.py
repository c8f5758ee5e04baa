"""Site configuration: TOML files validated into typed, frozen objects.

Lookup order for which site to use: ``--site`` > ``$SLURMC_SITE`` > ``site = ...``
in the user's config file > auto-detection (a site's ``[detect]`` table).
Where site files are found, first match wins: ``$SLURMC_SITE_PATH`` (colon
separated directories), ``$XDG_CONFIG_HOME/slurmc/sites``, ``/etc/slurmc/sites``,
then the site files bundled with slurmc.

Pure logic: the environment and file system are read through arguments or
small helpers, so tests can hand in what they like.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from slurmc.core.resources import validate_defaults
from slurmc.core.toml_table import Table
from slurmc.errors import ConfigError
from slurmc.paths import bundled_dir, config_home
from slurmc.runtimes import DEFAULT_RUNTIME, available, get_runtime
from slurmc.values import Value, field

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

GPU_VENDORS = ("amd", "nvidia", "none")
CONDA_MODES = ("auto", "with_conda", "none")
BACKENDS = ("sbatch", "pyslurm")
PULL_WHERE = ("login", "job")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


class Partition(Value):
    name: str
    gpu_vendor: str = "none"
    gpus_per_node: int = 0
    cores_per_node: int | None = None
    defaults: Mapping[str, str] = field(default_factory=dict)
    #: per-task CPU masks binding task i to GPU i's cores (LUMI-G's GCD layout)
    cpu_bind_masks: tuple[str, ...] = ()
    #: the partition always allocates whole nodes (e.g. LUMI's standard-g)
    whole_node: bool = False
    #: give the runtime its GPU flag (--rocm/--nv); None: the site's [runtime] gpu_flag
    gpu_flag: bool | None = None


class Detect(Value):
    env: Mapping[str, str] = field(default_factory=dict)
    paths: tuple[str, ...] = ()
    cluster_name: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.env or self.paths or self.cluster_name)


class Site(Value):
    name: str
    source: str
    description: str = ""
    runtime: str = DEFAULT_RUNTIME
    executable: str = DEFAULT_RUNTIME
    #: whether jobs on GPU partitions get the runtime's GPU flag (--rocm/--nv)
    gpu_flag: bool = True
    cache: tuple[str, ...] = ()
    catalogs: tuple[str, ...] = ()
    default_images: Mapping[str, str] = field(default_factory=dict)
    pull: str = "login"
    conda: str = "auto"
    conda_variable: str = "WITH_CONDA"
    binds: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    account_env: str | None = None
    account_required: bool = False
    default_partition: str | None = None
    default_gpu_vendor: str = "none"
    defaults: Mapping[str, str] = field(default_factory=dict)
    partitions: Mapping[str, Partition] = field(default_factory=dict)
    backend: str = "sbatch"
    templates: str | None = None
    detect: Detect = field(default_factory=Detect)

    def partition(self, name: str | None) -> Partition:
        """The partition's settings; an unlisted partition gets the site's defaults."""
        name = name or self.default_partition
        if name and name in self.partitions:
            return self.partitions[name]
        return Partition(name=name or "", gpu_vendor=self.default_gpu_vendor)


# --------------------------------------------------------------------------- parsing


def parse_site(data: Mapping[str, Any], source: str, default_name: str) -> Site:
    top = Table(data, source)
    name = top.get("name", str, "a site name", default_name)
    if not _NAME.match(name):
        raise top.fail("name", name, "letters, digits, '.', '_' or '-'")
    description = top.get("description", str, "a string", "")
    backend = top.choice("backend", BACKENDS, "sbatch")
    templates = top.get("templates", str, "a directory path", None)
    if templates is not None and not os.path.isabs(templates):
        templates = str(Path(source).parent / templates)

    rt = top.sub("runtime")
    kinds = tuple(available())
    runtime = rt.choice("kind", kinds, None)
    if runtime is None:
        raise ConfigError(
            f"{source}: key 'runtime.kind' is missing; expected one of " + ", ".join(kinds)
        )
    default_exe = get_runtime(runtime).executable
    executable = rt.get("executable", str, "a command name or path", default_exe)
    gpu_flag = rt.get("gpu_flag", bool, "true or false", True)
    rt.finish()

    im = top.sub("images")
    cache = im.strings("cache", "a list of directories")
    catalogs = im.strings("catalogs", "a list of directories")
    default_images = im.str_map("defaults", "a table such as { cpu = 'REF', rocm = 'REF' }")
    for kind in default_images:
        if kind not in ("cpu", "cuda", "rocm"):
            raise im.fail("defaults", kind, "keys cpu, cuda and rocm")
    pull = im.choice("pull", PULL_WHERE, "login")
    im.finish()

    ct = top.sub("container")
    conda = ct.choice("conda", CONDA_MODES, "auto")
    conda_variable = ct.get("conda_variable", str, "an environment variable name", "WITH_CONDA")
    if not re.match(r"[A-Za-z_][A-Za-z0-9_]*\Z", conda_variable):
        raise ct.fail("conda_variable", conda_variable, "an environment variable name")
    binds = ct.strings("binds", "a list of SRC[:DST[:OPTS]] strings")
    env = ct.str_map("env")
    for k in env:
        if not re.match(r"[A-Za-z_][A-Za-z0-9_]*\Z", k):
            raise ct.fail("env", k, "environment variable names")
    ct.finish()

    sl = top.sub("slurm")
    account_env = sl.get("account_env", str, "an environment variable name", None)
    account_required = sl.get("account_required", bool, "true or false", False)
    default_partition = sl.get("default_partition", str, "a partition name", None)
    default_gpu_vendor = sl.choice("gpu_vendor", GPU_VENDORS, "none")
    defaults = _defaults(sl, "defaults")
    sl.finish()

    partitions: dict[str, Partition] = {}
    pt = top.sub("partitions")
    for pname in list(pt.data):
        p = pt.sub(pname)
        vendor = p.choice("gpu_vendor", GPU_VENDORS, "none")
        gpus = p.get("gpus_per_node", int, "a whole number", 0)
        cores = p.get("cores_per_node", int, "a whole number", None)
        if gpus < 0:
            raise p.fail("gpus_per_node", gpus, "a number >= 0")
        if cores is not None and cores < 1:
            raise p.fail("cores_per_node", cores, "a number >= 1")
        masks = p.strings("cpu_bind_masks", "a list of hexadecimal CPU masks such as '0xfe'")
        if any(not re.match(r"0x[0-9a-fA-F]+\Z", m) for m in masks):
            raise p.fail("cpu_bind_masks", list(masks), "hexadecimal CPU masks such as '0xfe'")
        whole = p.get("whole_node", bool, "true or false", False)
        p_gpu_flag = p.get("gpu_flag", bool, "true or false", None)
        partitions[pname] = Partition(
            pname, vendor, gpus, cores, _defaults(p, "defaults"), masks, whole, p_gpu_flag
        )
        p.finish()
    pt.finish()
    if default_partition and partitions and default_partition not in partitions:
        raise ConfigError(
            f"{source}: key 'slurm.default_partition': got {default_partition!r}, "
            f"expected one of the [partitions]: {', '.join(partitions)}"
        )

    dt = top.sub("detect")
    detect = Detect(
        env=dt.str_map("env"),
        paths=dt.strings("paths"),
        cluster_name=dt.get("cluster_name", str, "a Slurm ClusterName", None),
    )
    dt.finish()
    top.finish()
    return Site(
        name=name,
        source=source,
        description=description,
        runtime=runtime,
        executable=executable,
        gpu_flag=gpu_flag,
        cache=cache,
        catalogs=catalogs,
        default_images=default_images,
        pull=pull,
        conda=conda,
        conda_variable=conda_variable,
        binds=binds,
        env=env,
        account_env=account_env,
        account_required=account_required,
        default_partition=default_partition,
        default_gpu_vendor=default_gpu_vendor,
        defaults=defaults,
        partitions=partitions,
        backend=backend,
        templates=templates,
        detect=detect,
    )


def _defaults(table: Table, key: str) -> dict[str, str]:
    raw = table.get(key, dict, "a table of default resources", {})
    values: dict[str, str] = {}
    for k, v in raw.items():
        if not isinstance(v, str | int) or isinstance(v, bool):
            raise table.fail(f"{key}.{k}", v, "a string or a whole number")
        values[k] = str(v)
    try:
        validate_defaults(values)
    except ConfigError as exc:
        raise ConfigError(f"{table.file}: key '{table.key(key)}': {exc}") from None
    return values


def load_site_file(path: str | os.PathLike[str]) -> Site:
    path = str(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such site file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read site file: {exc.strerror}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not valid TOML: byte {exc.object[exc.start]:#04x} at offset {exc.start} "
            "is not UTF-8"
        ) from None
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_site(data, path, Path(path).stem)


# --------------------------------------------------------------------------- lookup


def site_dirs(env: Mapping[str, str]) -> list[Path]:
    dirs = [Path(p) for p in env.get("SLURMC_SITE_PATH", "").split(":") if p]
    dirs += [config_home(env) / "sites", Path("/etc/slurmc/sites"), bundled_dir("site-configs")]
    return dirs


def site_files(env: Mapping[str, str]) -> dict[str, Path]:
    """Every known site name and the file that defines it (first directory wins)."""
    found: dict[str, Path] = {}
    for d in site_dirs(env):
        try:
            entries = sorted(d.glob("*.toml"))
        except OSError:
            continue
        for f in entries:
            found.setdefault(f.stem, f)
    return found


def _user_config_site(env: Mapping[str, str]) -> str | None:
    path = config_home(env) / "config.toml"
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as exc:  # TOMLDecodeError, not UTF-8, deep
        reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
        raise ConfigError(f"{path}: cannot read user config: {reason}") from None
    site = data.get("site")
    if site is not None and not isinstance(site, str):
        raise ConfigError(f"{path}: key 'site': got {site!r}, expected a site name")
    return site


def _cluster_name(env: Mapping[str, str]) -> str | None:
    conf = env.get("SLURM_CONF", "/etc/slurm/slurm.conf")
    try:
        with open(conf, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                m = re.match(r"\s*ClusterName\s*=\s*(\S+)", line, re.IGNORECASE)
                if m:
                    return m.group(1)
    except OSError:
        return None
    return None


def _warn(message: str) -> None:
    sys.stderr.write(f"slurmc: warning: {message}\n")


def detect_site(env: Mapping[str, str], warn: Callable[[str], None] = _warn) -> Site | None:
    """The first site whose detection rules match; an invalid site file on the search
    path is skipped with a warning naming it (one bad file must not stop everyone)."""
    cluster: bool | str | None = False  # read slurm.conf lazily, once
    for path in site_files(env).values():
        try:
            site = load_site_file(path)
        except ConfigError as exc:
            warn(f"skipping an invalid site file during auto-detection: {exc}")
            continue
        d = site.detect
        if d.empty:
            continue
        if any(env.get(k) != v for k, v in d.env.items()):
            continue
        if not all(os.path.exists(p) for p in d.paths):
            continue
        if d.cluster_name:
            if cluster is False:
                cluster = _cluster_name(env)
            if cluster != d.cluster_name:
                continue
        return site
    return None


def load_site(name_or_path: str, env: Mapping[str, str]) -> Site:
    if name_or_path.endswith(".toml") or os.sep in name_or_path:
        return load_site_file(name_or_path)
    files = site_files(env)
    if name_or_path not in files:
        known = ", ".join(sorted(files)) or "none"
        raise ConfigError(
            f"unknown site {name_or_path!r}; known sites: {known} "
            "(add your own as ~/.config/slurmc/sites/NAME.toml)"
        )
    return load_site_file(files[name_or_path])


def resolve_site(flag: str | None, env: Mapping[str, str]) -> Site:
    """Pick the site: flag > $SLURMC_SITE > user config > auto-detection."""
    for choice in (flag, env.get("SLURMC_SITE"), _user_config_site(env)):
        if choice:
            return load_site(choice, env)
    site = detect_site(env)
    if site is None:
        raise ConfigError(
            "no site given and none detected; pass --site NAME or set SLURMC_SITE "
            "(`slurmc site list` shows the known sites)"
        )
    return site


_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def expand(value: str, env: Mapping[str, str], what: str) -> str:
    """Expand ``~``, ``$VAR``, ``${VAR}`` and ``${VAR:-default}`` in a configured path."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        if name in env and env[name] != "":
            return env[name]
        if m.group(2) is not None:
            return m.group(2)
        raise ConfigError(f"{what}: {value!r} needs ${name}, which is not set; set it and retry")

    out = _VAR.sub(repl, value)
    if out == "~" or out.startswith("~/"):
        out = os.path.expanduser(out) if "HOME" not in env else env["HOME"] + out[1:]
    elif out.startswith("~"):  # ~user/...: that user's home, never $HOME + "user"
        expanded = os.path.expanduser(out)
        if expanded == out:
            user = out[1:].split("/", 1)[0]
            raise ConfigError(f"{what}: {value!r} names ~{user}, but there is no user {user!r}")
        out = expanded
    return out
