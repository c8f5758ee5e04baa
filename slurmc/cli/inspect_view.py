"""``slurmc inspect``'s text output: the tables a person reads (``--json`` prints the
use case's own dictionaries)."""

from __future__ import annotations

from typing import Any

from slurmc.usecases.inspect import Diff, Inspection
from slurmc.usecases.inspect_exec import ExecListing

# ------------------------------------------------------------------ text output


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header).rstrip(), *(fmt.format(*map(str, r)).rstrip() for r in rows)]


def render(insp: Inspection) -> str:
    c = insp.contents
    size = f"{insp.size / 1e6:.1f} MB" if insp.size else "-"
    lines = [f"Image:   {insp.image}", f"Path:    {insp.path}", f"Format:  {insp.format} ({size})"]
    if insp.sif:
        h = insp.sif["header"]
        used = h["descriptors_total"] - h["descriptors_free"]
        lines.append(
            f"SIF:     version {h['version']}, arch {h['arch']}, id {h['id']}, "
            f"{used} of {h['descriptors_total']} descriptors used "
            f"(table at {h['descriptors_offset']}, data at {h['data_offset']})"
        )
        rows = []
        for d in insp.sif["descriptors"]:
            detail = []
            if "fs_type" in d:
                detail.append(f"{d['fs_type']} {d['part_type']} {d['arch']}")
            if "hash_type" in d:
                detail.append(f"{d['hash_type']} {d['fingerprint'] or ''}".strip())
            if "digest" in d:
                detail.append(d["digest"])
            if "sbom_format" in d:
                detail.append(d["sbom_format"])
            if "message" in d:
                detail.append(f"{d['format']}/{d['message']}")
            link = (
                ("group " if d["link_is_group"] else "object ") + str(d["link"])
                if d["link"]
                else "-"
            )
            rows.append(
                [
                    d["id"],
                    d["data_type"],
                    d["group"] or "-",
                    link,
                    d["offset"],
                    d["size"],
                    d["name"] or "-",
                    " ".join(detail),
                ]
            )
        if rows:
            lines += [
                "  " + r
                for r in _table(
                    rows, ["ID", "TYPE", "GROUP", "LINK", "OFFSET", "SIZE", "NAME", "DETAIL"]
                )
            ]
        if insp.sif.get("signatures"):
            lines.append(f"Signed:  {len(insp.sif['signatures'])} signature(s)")
        if insp.sif.get("note"):
            lines.append(f"Note:    {insp.sif['note']}")
    if insp.squashfs:
        s = insp.squashfs
        lines.append(
            f"SquashFS: {s['compression']}, {s['inodes']} inodes, block {s['block_size']}, "
            f"{s['bytes_used']} bytes at offset {s['offset']}"
        )
    if insp.oci:
        o = insp.oci
        lines.append(
            f"OCI:     {o['os']}/{o['architecture']}, {len(o['layers'])} layer(s)"
            + (f", tags {', '.join(o['tags'])}" if o["tags"] else "")
        )
    lines.append(f"OS:      {c.os_name or 'unknown (no /etc/os-release)'}")
    if c.with_conda is not None:
        lines.append(f"WITH_CONDA: {c.with_conda}  (from {c.with_conda_source})")
    else:
        lines.append("WITH_CONDA: not defined (the image needs no activation, or has no conda)")
    if c.pythons:
        lines.append(
            "Python:  "
            + ", ".join(p.path + (f" -> {p.target}" if p.target else "") for p in c.pythons)
        )
    for env in c.environments:
        mark = "  [activated by $WITH_CONDA]" if env.activated_by_with_conda else ""
        lines.append("")
        lines.append(f"Environment {env.name} ({env.kind}, {env.prefix}){mark}")
        if env.conda_packages:
            lines.append(f"  conda packages ({len(env.conda_packages)}):")
            lines += [
                "    " + r
                for r in _table(
                    [[p.name, p.version, p.build, p.channel] for p in env.conda_packages],
                    ["NAME", "VERSION", "BUILD", "CHANNEL"],
                )
            ]
        if env.pip_packages:
            lines.append(f"  pip packages ({len(env.pip_packages)}):")
            lines += [
                "    " + r
                for r in _table(
                    [[p.name, p.version, p.installer or "-"] for p in env.pip_packages],
                    ["NAME", "VERSION", "INSTALLER"],
                )
            ]
        if not env.conda_packages and not env.pip_packages:
            lines.append("  no packages")
    for w in c.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines) + "\n"


def render_diff(d: Diff) -> str:
    lines = [f"--- {d.a}", f"+++ {d.b}"]
    if d.os:
        lines.append(f"OS: {d.os[0]} -> {d.os[1]}")
    for title, items, sign in (
        ("added", d.added, "+"),
        ("removed", d.removed, "-"),
        ("changed", d.changed, "~"),
    ):
        lines.append(f"{title} ({len(items)}):")
        rows = [
            [
                sign,
                c.environment,
                c.manager,
                c.name,
                c.old or "",
                "->" if c.old and c.new else "",
                c.new or "",
            ]
            for c in items
        ]
        if rows:
            lines += [
                "  " + r for r in _table(rows, ["", "ENV", "BY", "NAME", "OLD", "", "NEW"])[1:]
            ]
    return "\n".join(lines) + "\n"


def render_exec(listing: ExecListing, comparison: dict[str, Any] | None) -> str:
    env = listing.conda_env or "(none activated)"
    lines = [
        f"Image:   {listing.image}",
        f"Ran:     {' '.join(listing.argv[:4])} ...",
        f"Conda environment: {env}"
        + (f" ({listing.conda_prefix})" if listing.conda_prefix else ""),
        f"pip packages ({len(listing.pip)}, via {listing.pip_method}):",
    ]
    lines += [
        "  " + r for r in _table([[p.name, p.version] for p in listing.pip], ["NAME", "VERSION"])
    ]
    if listing.conda is not None:
        lines.append(f"conda packages ({len(listing.conda)}):")
        lines += [
            "  " + r
            for r in _table(
                [[p.name, p.version, p.build, p.channel] for p in listing.conda],
                ["NAME", "VERSION", "BUILD", "CHANNEL"],
            )
        ]
    if comparison is not None:
        same = not (
            comparison["only_static"] or comparison["only_exec"] or comparison["version_differs"]
        )
        lines.append(
            "Static reading of "
            + str(comparison["environment"])
            + ": "
            + (
                "the same pip packages"
                if same
                else f"differs: only static {comparison['only_static']}, "
                f"only --exec {comparison['only_exec']}, "
                f"other version {comparison['version_differs']}"
            )
        )
    return "\n".join(lines) + "\n"
