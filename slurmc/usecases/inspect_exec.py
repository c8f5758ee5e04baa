"""``slurmc inspect --exec``: list an image's packages by running its own tools in it.

A small bash script runs in the container (here, or on a node through ``srun``; the
command is the runtime's :meth:`~slurmc.runtimes.base.Runtime.exec_argv`), prints the
conda environment, ``pip list``/``importlib.metadata`` and ``conda list`` between marks,
and the listing is compared with what the static reading (:mod:`slurmc.usecases.inspect`)
found.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from slurmc.errors import ValidationError
from slurmc.images import ImageFormatError
from slurmc.images.metadata import Package
from slurmc.runtimes import Runtime, get_runtime
from slurmc.usecases.inspect import Inspection, Located, detect_format, runtime_for_format

# ------------------------------------------------------------------ --exec

MARK = "@@slurmc-inspect@@"
#: runs inside the container: activate like LUMI's recipe, then list packages
EXEC_SCRIPT = f"""\
if [ -n "${{WITH_CONDA:-}}" ]; then
    $WITH_CONDA || {{ echo "slurmc: \\$WITH_CONDA failed inside the container" >&2; exit 97; }}
fi
echo "{MARK} env"
echo "${{CONDA_DEFAULT_ENV:-}}"
echo "${{CONDA_PREFIX:-}}"
py=$(command -v python3 || command -v python || true)
nocheck=--disable-pip-version-check
if command -v pip >/dev/null 2>&1 && out=$(pip list --format=json $nocheck 2>/dev/null); then
    echo "{MARK} pip pip"; echo "$out"
elif [ -n "$py" ] && out=$("$py" -m pip list --format=json $nocheck 2>/dev/null); then
    echo "{MARK} pip python-m-pip"; echo "$out"
elif [ -n "$py" ]; then
    echo "{MARK} pip importlib.metadata"; "$py" -c "$1"
else
    echo "{MARK} pip none"; echo null
fi
if command -v conda >/dev/null 2>&1 && out=$(conda list --json 2>/dev/null); then
    echo "{MARK} conda conda"; echo "$out"
else
    echo "{MARK} conda none"; echo null
fi
"""
#: pip's list, for images without pip: one entry per name, first on sys.path wins
PY_LIST = (
    "import importlib.metadata as m, json\n"
    "seen = {}\n"
    "for d in m.distributions():\n"
    "    n = d.metadata['Name']\n"
    "    if n and n.lower() not in seen:\n"
    "        seen[n.lower()] = {'name': n, 'version': d.version}\n"
    "print(json.dumps(sorted(seen.values(), key=lambda x: x['name'].lower())))\n"
)


@dataclass
class ExecListing:
    image: str
    argv: list[str]
    conda_env: str
    conda_prefix: str
    pip_method: str
    pip: list[Package]
    conda: list[Package] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "argv": self.argv,
            "conda_env": self.conda_env or None,
            "conda_prefix": self.conda_prefix or None,
            "pip_method": self.pip_method,
            "pip_packages": [{"name": p.name, "version": p.version} for p in self.pip],
            "conda_packages": (None if self.conda is None else [p.to_dict() for p in self.conda]),
        }


def container_command() -> list[str]:
    return ["bash", "-c", EXEC_SCRIPT, "slurmc-inspect", PY_LIST]


def _runtime(name: str) -> Runtime | None:
    try:
        return get_runtime(name)
    except KeyError:
        return None


def exec_argv(runtime: str, executable: str, path: str, fmt: str) -> list[str]:
    """The local command that runs :data:`EXEC_SCRIPT` in the image with *runtime*."""
    rt = _runtime(runtime)
    if rt is None or not rt.local_exec:
        raise ValidationError(
            f"--exec with runtime {runtime} works only on a node: add --on-node "
            "(it runs srun --container-image)"
        )
    return rt.exec_argv(executable, path, container_command(), fmt=fmt)


def srun_argv(
    runtime: str, executable: str, path: str, fmt: str, options: Sequence[str]
) -> list[str]:
    """``srun`` on one compute node around the runtime's command (Pyxis for Enroot)."""
    rt = _runtime(runtime)
    if rt is None:
        raise ValidationError(f"--exec: no runtime {runtime}")
    return rt.srun_argv(executable, path, container_command(), (), options, fmt=fmt)


def _json_list(text: str, what: str) -> list[dict[str, Any]] | None:
    text = text.strip()
    if not text or text == "null":
        return None
    start = text.find("[")
    try:
        value = json.loads(text[start:] if start >= 0 else text)
    except (ValueError, RecursionError):
        raise ImageFormatError(f"--exec: the container's {what} output is not JSON") from None
    if not isinstance(value, list):
        raise ImageFormatError(f"--exec: the container's {what} output is not a JSON list")
    return [v for v in value if isinstance(v, dict)]


def parse_exec_output(stdout: str, image: str, argv: Sequence[str]) -> ExecListing:
    sections: dict[str, tuple[str, list[str]]] = {}
    current: str | None = None
    for line in stdout.splitlines():
        if line.startswith(MARK + " "):
            words = line[len(MARK) + 1 :].split()
            current = words[0]
            sections[current] = (words[1] if len(words) > 1 else "", [])
        elif current is not None:
            sections[current][1].append(line)
    if "env" not in sections or "pip" not in sections:
        raise ImageFormatError(
            "--exec: the container did not print the package listing; does the image have bash?"
        )
    env_lines = [*sections["env"][1], "", ""]
    pip_method, pip_lines = sections["pip"]
    pip = [
        Package(str(d.get("name", "")), str(d.get("version", "")), "pip")
        for d in _json_list("\n".join(pip_lines), "pip list") or []
    ]
    conda_raw = _json_list("\n".join(sections.get("conda", ("", []))[1]), "conda list")
    conda = (
        None
        if conda_raw is None
        else [
            Package(
                str(d.get("name", "")),
                str(d.get("version", "")),
                "conda",
                build=str(d.get("build_string", "")),
                channel=str(d.get("channel", "")),
            )
            for d in conda_raw
        ]
    )
    return ExecListing(
        image=image,
        argv=list(argv),
        conda_env=env_lines[0],
        conda_prefix=env_lines[1],
        pip_method=pip_method,
        pip=sorted(pip, key=lambda p: p.key),
        conda=None if conda is None else sorted(conda, key=lambda p: p.key),
    )


def run_exec(
    located: Located,
    site_flag: str | None,
    env: Mapping[str, str],
    *,
    on_node: bool = False,
    srun_options: Sequence[str] = (),
    timeout: float | None = None,
) -> ExecListing:
    """Run the package listing inside the container and parse what it prints."""
    from slurmc import proc
    from slurmc.core.sites import resolve_site
    from slurmc.errors import ConfigError

    fmt = detect_format(located.path)
    site = located.site
    if site is None:
        try:
            site = resolve_site(site_flag, env)
        except ConfigError:
            if site_flag:
                raise
            site = None
    runtime, executable = (site.runtime, site.executable) if site else runtime_for_format(fmt)
    if on_node:
        argv = srun_argv(runtime, executable, located.path, fmt, srun_options)
    else:
        argv = exec_argv(runtime, executable, located.path, fmt)
    run_env = dict(env)
    run_env.setdefault("USER", run_env.get("LOGNAME") or "slurmc")  # ch-run insists on $USER
    result = proc.run(argv, env=run_env, timeout=timeout)
    return parse_exec_output(result.stdout, located.text, argv)


def compare_exec(static: Inspection, listing: ExecListing) -> dict[str, Any]:
    """The static pip packages of the environment --exec ran in, against its pip list."""
    prefix = listing.conda_prefix
    envs = static.contents.environments
    env = next((e for e in envs if prefix and e.prefix == prefix), None)
    if env is None:
        env = next((e for e in envs if e.kind == "system"), None)
    static_pip = {p.key: p.version for p in env.pip_packages} if env else {}
    if env and env.kind == "conda":  # the system's site-packages are on sys.path as well
        for e in envs:
            if e.kind == "system":
                for p in e.pip_packages:
                    static_pip.setdefault(p.key, p.version)
    exec_pip = {p.key: p.version for p in listing.pip}
    return {
        "environment": env.prefix if env else None,
        "only_static": sorted(set(static_pip) - set(exec_pip)),
        "only_exec": sorted(set(exec_pip) - set(static_pip)),
        "version_differs": sorted(
            k for k in set(static_pip) & set(exec_pip) if static_pip[k] != exec_pip[k]
        ),
    }
