"""slurmc.cache.credentials: netrc file, Docker and Podman auth files; never shown, never loose."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from slurmc.cache import credentials
from slurmc.cache.credentials import Credential
from slurmc.errors import ConfigError


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "config")}


def write_private(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_netrc_file_as_enroot_writes_it(env):
    write_private(
        credentials.credentials_file(env),
        "machine nvcr.io login $oauthtoken password nvapi-xyz\n"
        "machine 127.0.0.1:5444 login alice password 's3cret'\n",
    )
    ngc = credentials.lookup("nvcr.io", env)
    assert ngc == Credential(
        "nvcr.io", "$oauthtoken", "nvapi-xyz", str(credentials.credentials_file(env))
    )
    local = credentials.lookup("127.0.0.1:5444", env)
    assert local is not None and local.username == "alice"
    assert credentials.lookup("127.0.0.1:5443", env) is None  # the port is part of the name
    assert credentials.lookup("gitlab.com", env) is None


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o606])
def test_a_file_others_can_read_is_refused(env, mode):
    path = write_private(credentials.credentials_file(env), "machine x login u password p\n", mode)
    with pytest.raises(ConfigError, match=f"chmod 600 {path}$"):
        credentials.lookup("x", env)


def test_the_secret_is_never_shown(env):
    cred = Credential("nvcr.io", "$oauthtoken", "nvapi-SECRET", "file")
    assert "SECRET" not in repr(cred) and "SECRET" not in str(cred)
    assert "SECRET" not in f"{cred}" and "SECRET" not in repr([cred])


def test_a_malformed_file_is_one_line_naming_it(env):
    path = write_private(credentials.credentials_file(env), "machine x login u bogus y\n")
    with pytest.raises(ConfigError, match=str(path)) as exc:
        credentials.lookup("x", env)
    assert "\n" not in str(exc.value)


def docker_auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_docker_config_json(env, tmp_path):
    cfg = Path(env["HOME"]) / ".docker" / "config.json"
    write_private(
        cfg,
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": docker_auth("hubuser", "hubpass")},
                    "ghcr.io": {"auth": docker_auth("gh", "tok:en:with:colons")},
                    "broken.io": {"auth": "!!!not base64"},
                },
                "credsStore": "desktop",
            }
        ),
        0o644,  # docker's own file: docker's business, read as it is
    )
    hub = credentials.lookup("docker.io", env)
    assert hub is not None and (hub.username, hub.password) == ("hubuser", "hubpass")
    gh = credentials.lookup("ghcr.io", env)
    assert gh is not None and gh.password == "tok:en:with:colons"
    assert credentials.lookup("broken.io", env) is None


def test_podman_auth_json_and_order(env, tmp_path):
    run = tmp_path / "run"
    env["XDG_RUNTIME_DIR"] = str(run)
    write_private(
        run / "containers" / "auth.json",
        json.dumps({"auths": {"quay.io": {"auth": docker_auth("p", "podpass")}}}),
    )
    assert credentials.lookup("quay.io", env).password == "podpass"  # type: ignore[union-attr]
    write_private(credentials.credentials_file(env), "machine quay.io login n password netrcpass\n")
    assert credentials.lookup("quay.io", env).password == "netrcpass"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "text", ["", "[]", "{", '{"auths": []}', '{"auths": {"x": 1}}', "[" * 50000]
)
def test_damaged_auth_json_is_no_credential_not_a_crash(env, text):
    write_private(Path(env["HOME"]) / ".docker" / "config.json", text)
    assert credentials.lookup("x", env) is None


@pytest.mark.parametrize(
    "password", ["plain", "with space", 'q"uote', "back\\slash", "#hash", "$oauthtoken", "ünï"]
)
def test_save_then_lookup_round_trips(env, password):
    path = credentials.save(Credential("nvcr.io", "$oauthtoken", password), env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    found = credentials.lookup("nvcr.io", env)
    assert found is not None and found.password == password and found.username == "$oauthtoken"


def test_save_replaces_one_registry_and_keeps_the_others(env):
    credentials.save(Credential("a.io", "u1", "p1"), env)
    credentials.save(Credential("b.io", "u2", "p2"), env)
    credentials.save(Credential("a.io", "u3", "p3"), env)
    a, b = credentials.lookup("a.io", env), credentials.lookup("b.io", env)
    assert (a.username, a.password) == ("u3", "p3")  # type: ignore[union-attr]
    assert (b.username, b.password) == ("u2", "p2")  # type: ignore[union-attr]
    assert credentials.credentials_file(env).read_text().count("machine") == 2


@pytest.mark.parametrize("bad", ["a\nmachine evil login x password y", "a\rb", "a\0b"])
def test_save_refuses_line_breaks(env, bad):
    with pytest.raises(ConfigError, match="line break"):
        credentials.save(Credential("a.io", "u", bad), env)
    assert not credentials.credentials_file(env).exists()


def test_save_refuses_to_extend_a_loose_file(env):
    write_private(credentials.credentials_file(env), "machine x login u password p\n", 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        credentials.save(Credential("a.io", "u", "p"), env)
