"""Settings: one loader for every process, and secrets read from files (``X_FILE``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path

import pytest

from countersign_core.settings import Settings, SettingsError, load_settings
from tests.support.processes import SpawnApi

README = Path(__file__).resolve().parent.parent / "README.md"
LEAKED = "hunter2"  # a password that must never show in an error

# Each secret, a valid value for it, and where the loader puts it.
SECRETS: dict[str, tuple[str, Callable[[Settings], object]]] = {
    "DATABASE_URL": (
        f"postgresql://countersign:{LEAKED}@db.example.org:5432/countersign",
        lambda settings: settings.database.url,
    ),
    "DATABASE_DIRECT_URL": (
        f"postgresql://countersign:{LEAKED}@db-primary.example.org:5432/countersign",
        lambda settings: settings.database.direct_url,
    ),
    "REDIS_URL": (
        f"redis://:{LEAKED}@cache.example.org:6379/0",
        lambda settings: settings.redis.url,
    ),
    "SMTP_URL": (
        f"smtp://mailer:{LEAKED}@relay.example.org:587?starttls=true",
        lambda settings: settings.mail.smtp,
    ),
    "COUNTERSIGN_SECRET_KEY": (
        f"{LEAKED}-0123456789-0123456789-0123456789",
        lambda settings: settings.secret_key,
    ),
}


@pytest.fixture(autouse=True)
def no_secrets_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"{name}_FILE", raising=False)


def settings_error(monkeypatch: pytest.MonkeyPatch, **variables: str) -> str:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    return str(raised.value)


@pytest.mark.parametrize("name", SECRETS)
def test_each_secret_can_come_from_a_file_without_its_last_newline(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    value, read = SECRETS[name]
    monkeypatch.setenv(name, value)
    from_variable = read(load_settings())
    assert from_variable
    monkeypatch.delenv(name)
    secret_file = tmp_path / "secret"
    secret_file.write_text(value + "\n", encoding="utf-8")
    monkeypatch.setenv(f"{name}_FILE", str(secret_file))
    assert read(load_settings()) == from_variable


@pytest.mark.parametrize("name", SECRETS)
def test_a_secret_given_both_ways_is_refused(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    value, _ = SECRETS[name]
    secret_file = tmp_path / "secret"
    secret_file.write_text(value, encoding="utf-8")
    message = settings_error(monkeypatch, **{name: value, f"{name}_FILE": str(secret_file)})
    assert message == f"set {name} or {name}_FILE, not both"


@pytest.mark.parametrize("kind", ["missing", "a folder"])
def test_an_unreadable_secret_file_is_named(
    kind: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "nowhere" if kind == "missing" else tmp_path
    message = settings_error(monkeypatch, DATABASE_URL_FILE=str(path))
    assert message == f'Environment variable "DATABASE_URL_FILE" invalid: cannot read {path}'


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("DATABASE_URL", f"mysql://root:{LEAKED}@db/x", "must be a URL starting with postgres"),
        ("SMTP_URL", f"smtp://mailer:{LEAKED}@relay?bogus=1", "unknown parameter bogus"),
        ("COUNTERSIGN_SECRET_KEY", LEAKED, "Shorter than minimum length 32"),
    ],
)
def test_a_malformed_secret_file_is_refused_without_showing_the_secret(
    name: str, content: str, reason: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(content, encoding="utf-8")
    message = settings_error(monkeypatch, **{f"{name}_FILE": str(secret_file)})
    assert message.startswith(f'Environment variable "{name}" invalid: {reason}')
    assert LEAKED not in message


def test_a_secret_file_that_is_not_text_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(b"\xff\xfe" + LEAKED.encode())
    message = settings_error(monkeypatch, COUNTERSIGN_SECRET_KEY_FILE=str(secret_file))
    assert message == (
        f'Environment variable "COUNTERSIGN_SECRET_KEY_FILE" invalid: {secret_file} is not '
        "UTF-8 text"
    )
    assert LEAKED not in message


async def test_the_api_process_reads_its_secrets_from_files(
    run_api: SpawnApi, api_env: dict[str, str], tmp_path: Path
) -> None:
    from_files: dict[str, str] = {}
    for name in ("DATABASE_URL", "REDIS_URL", "COUNTERSIGN_SECRET_KEY"):
        secret_file = tmp_path / name.lower()
        secret_file.write_text(api_env[name] + "\n", encoding="utf-8")
        # Empty counts as unset (as in the database images), which hides this test's own.
        from_files |= {name: "", f"{name}_FILE": str(secret_file)}
    await run_api(**from_files)  # ready: it reached Postgres and Redis


def test_a_command_stops_with_one_line_when_a_secret_is_given_both_ways(tmp_path: Path) -> None:
    secret_file = tmp_path / "database_url"
    secret_file.write_text(SECRETS["DATABASE_URL"][0], encoding="utf-8")
    env = {
        **os.environ,
        "DATABASE_URL": SECRETS["DATABASE_URL"][0],
        "DATABASE_URL_FILE": str(secret_file),
    }
    done = subprocess.run(
        [sys.executable, "-m", "countersign", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == "countersign: error: set DATABASE_URL or DATABASE_URL_FILE, not both\n"


# -- the README tells the truth -------------------------------------------------------------


class _RecordingEnviron(MutableMapping[str, str]):
    """os.environ, noting every name read."""

    def __init__(self, environ: MutableMapping[str, str]) -> None:
        self._environ = environ
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return self._environ[name]

    def __setitem__(self, name: str, value: str) -> None:
        self._environ[name] = value

    def __delitem__(self, name: str) -> None:
        del self._environ[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._environ)

    def __len__(self) -> int:
        return len(self._environ)


def configuration_section() -> str:
    text = README.read_text(encoding="utf-8")
    return text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_lists_exactly_the_variables_the_loader_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recording = _RecordingEnviron(os.environ)
    monkeypatch.setattr(os, "environ", recording)
    load_settings()
    section = configuration_section()
    table = set(re.findall(r"^\| `([A-Z_]+)` \|", section, flags=re.MULTILINE))
    file_variants = set(re.findall(r"`([A-Z_]+_FILE)`", section))
    assert table
    assert recording.read == table | file_variants
