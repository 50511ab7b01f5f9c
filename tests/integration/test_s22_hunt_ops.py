"""S22 hunt: operations. The ``whalli`` command as an operator runs it (a real subprocess,
``.venv/bin/whalli``, on the real embedded test stack) and the settings that must stop a start.

Per the README, an invalid ``WHALLI_*`` value stops start-up with a message naming the variable;
a bad command line gets a clear message and a non-zero exit, never a traceback; secrets are never
printed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from whalli.adapters.embedded.stack import StackUrls
from whalli.config import ConfigError, load_settings

WHALLI = Path(sys.executable).parent / "whalli"
SECRET = "hunter2-s22-ops-secret"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def cli_env(stack_urls: StackUrls, tmp_path: Path) -> dict[str, str]:
    """The environment of an operator's shell pointing the command at the test stack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHALLI_")}
    env.update(
        WHALLI_DATABASE_URL=stack_urls.database_url,
        WHALLI_REDIS_URL=stack_urls.redis_url,
        WHALLI_S3_ENDPOINT=stack_urls.s3_endpoint,
        WHALLI_S3_ACCESS_KEY=stack_urls.s3_access_key,
        WHALLI_S3_SECRET_KEY=stack_urls.s3_secret_key,
        WHALLI_DATA_DIR=str(tmp_path / "data"),
        WHALLI_LOG_DIR=str(tmp_path / "logs"),
        WHALLI_QUEUE_NAME=f"s22ops-{tmp_path.name}",
    )
    return env


def whalli(
    env: dict[str, str], *argv: str, cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(WHALLI), *argv],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def assert_clean_refusal(result: subprocess.CompletedProcess[str]) -> str:
    """A non-zero exit with a one-line ``whalli:`` message and no traceback; the output."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    assert "whalli:" in result.stderr, output
    return output


# --- migrate ------------------------------------------------------------------------------------


def test_s22_migrate_twice_applies_everything_then_nothing(
    cli_env: dict[str, str], empty_database: str, tmp_path: Path
) -> None:
    env = {**cli_env, "WHALLI_DATABASE_URL": empty_database}

    first = whalli(env, "migrate", cwd=tmp_path)
    second = whalli(env, "migrate", cwd=tmp_path)
    status = whalli(env, "migrate", "--status", cwd=tmp_path)

    assert first.returncode == 0, first.stderr
    assert "0001_" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "applied 0 migration(s)" in second.stdout
    assert status.returncode == 0
    assert status.stdout.strip()
    assert all(line.startswith("applied ") for line in status.stdout.splitlines())


def test_s22_migrate_on_a_database_with_a_newer_unknown_migration_is_a_clear_refusal(
    cli_env: dict[str, str], empty_database: str, tmp_path: Path
) -> None:
    env = {**cli_env, "WHALLI_DATABASE_URL": empty_database}
    assert whalli(env, "migrate", cwd=tmp_path).returncode == 0
    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum)"
            " VALUES (9999, '9999_from_a_newer_release.sql', 'x')"
        )

    for argv in (("migrate",), ("migrate", "--status")):
        result = whalli(env, *argv, cwd=tmp_path)
        output = assert_clean_refusal(result)
        assert result.returncode == 2
        assert "9999_from_a_newer_release.sql" in output
        assert "missing" in output


def test_s22_migrate_on_an_edited_applied_migration_names_it_and_the_checksum(
    cli_env: dict[str, str], empty_database: str, tmp_path: Path
) -> None:
    env = {**cli_env, "WHALLI_DATABASE_URL": empty_database}
    assert whalli(env, "migrate", cwd=tmp_path).returncode == 0
    with psycopg.connect(empty_database, autocommit=True) as conn:
        row = conn.execute(
            "UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1 RETURNING name"
        ).fetchone()
    assert row is not None

    result = whalli(env, "migrate", cwd=tmp_path)

    output = assert_clean_refusal(result)
    assert result.returncode == 2
    assert str(row[0]) in output
    assert "checksum mismatch" in output


def test_s22_migrate_against_a_closed_port_says_so_without_the_password(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    url = f"postgresql://whalli:{SECRET}@127.0.0.1:{_closed_port()}/whalli"
    result = whalli({**cli_env, "WHALLI_DATABASE_URL": url}, "migrate", cwd=tmp_path)

    output = assert_clean_refusal(result)
    assert "unreachable" in output
    assert SECRET not in output


def test_s22_migrate_with_a_malformed_database_url_names_the_variable(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    result = whalli({**cli_env, "WHALLI_DATABASE_URL": "not a url"}, "migrate", cwd=tmp_path)

    output = assert_clean_refusal(result)
    assert "WHALLI_DATABASE_URL" in output


def test_s22_a_database_url_of_another_scheme_never_prints_its_password(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    url = f"mysql://whalli:{SECRET}@127.0.0.1:{_closed_port()}/whalli"
    result = whalli({**cli_env, "WHALLI_DATABASE_URL": url}, "migrate", "--status", cwd=tmp_path)

    output = result.stdout + result.stderr
    assert SECRET not in output
    assert_clean_refusal(result)


# --- users, the parser --------------------------------------------------------------------------


def test_s22_users_create_against_an_unreachable_database_is_a_clean_refusal(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    url = f"postgresql://whalli:{SECRET}@127.0.0.1:{_closed_port()}/whalli"
    env = {**cli_env, "WHALLI_DATABASE_URL": url}
    result = subprocess.run(
        [str(WHALLI), "users", "create", "--email", "ops-s22@example.com"],
        env=env,
        cwd=tmp_path,
        input="correct horse battery staple\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    output = assert_clean_refusal(result)
    assert result.returncode == 2
    assert SECRET not in output
    assert "correct horse battery staple" not in output


@pytest.mark.parametrize(
    "argv",
    [
        (),
        ("users",),
        ("users", "create"),
        ("users", "create", "--email", "a@example.com", "--plan", "platinum"),
        ("services", "sideways"),
        ("serve", "--port", "eighty"),
        ("serve", "--workers", "two"),
        ("migrate", "--force"),
        ("nonsense",),
    ],
)
def test_s22_bad_command_lines_get_usage_and_exit_2_without_a_traceback(
    cli_env: dict[str, str], tmp_path: Path, argv: tuple[str, ...]
) -> None:
    result = whalli(cli_env, *argv, cwd=tmp_path)

    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "usage: whalli" in result.stderr


def test_s22_an_invalid_setting_stops_serve_naming_the_variable(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    result = whalli({**cli_env, "WHALLI_PORT": "abc"}, "serve", cwd=tmp_path)

    output = assert_clean_refusal(result)
    assert result.returncode == 2
    assert "WHALLI_PORT" in output


def test_s22_serve_refuses_a_port_beyond_65535(cli_env: dict[str, str], tmp_path: Path) -> None:
    port = 65536 + _closed_port()
    process = subprocess.Popen(
        [str(WHALLI), "serve", "--port", str(port)],
        env=cli_env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        try:
            _, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`whalli serve --port {port}` is serving instead of refusing the port")
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode != 0
    assert "Traceback" not in stderr
    assert "port" in stderr.lower()


def test_s22_worker_with_a_non_redis_url_names_the_variable(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**cli_env, "WHALLI_REDIS_URL": f"http://:{SECRET}@127.0.0.1:{_closed_port()}/0"}
    result = whalli(env, "worker", cwd=tmp_path)

    output = assert_clean_refusal(result)
    assert "WHALLI_REDIS_URL" in output
    assert SECRET not in output


# --- settings accepted, then breaking something later -------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WHALLI_PROVIDER_MAX_ATTEMPTS", "0"),
        ("WHALLI_PROVIDER_CONNECT_TIMEOUT_S", "-1"),
        ("WHALLI_PROVIDER_FIRST_TOKEN_TIMEOUT_S", "0"),
        ("WHALLI_PROVIDER_IDLE_TIMEOUT_S", "-5"),
        ("WHALLI_PROVIDER_REASONING_FIRST_TOKEN_TIMEOUT_S", "0"),
    ],
)
def test_s22_provider_retry_and_timeout_settings_are_range_checked_at_start(
    variable: str, value: str
) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings({variable: value}, dotenv=None)


def test_s22_zero_worker_threads_are_refused() -> None:
    with pytest.raises(ConfigError, match="WHALLI_WORKER_THREADS"):
        load_settings({"WHALLI_WORKER_THREADS": "0"}, dotenv=None)


@pytest.mark.parametrize(
    "variable", ["WHALLI_REPLY_SWEEP_INTERVAL_S", "WHALLI_EXTRACTION_SWEEP_INTERVAL_S"]
)
def test_s22_a_nan_sweep_interval_is_refused(variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings({variable: "nan"}, dotenv=None)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WHALLI_OPENAI_COMPATIBLE_BASE_URL", "localhost:11434/v1"),
        ("WHALLI_OPENAI_BASE_URL", "api.openai.com/v1"),
        ("WHALLI_ANTHROPIC_BASE_URL", "ftp://api.anthropic.com"),
    ],
)
def test_s22_a_provider_base_url_must_be_http(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings({variable: value}, dotenv=None)


# --- infra/scripts: backup and restore (run as far as they go without pg_dump, mc, docker) ------

SCRIPTS = Path(__file__).resolve().parents[2] / "infra" / "scripts"
DB_SECRET = "s3cr%40t-s22"  # percent-encoded in the URL; PGPASSWORD gets it decoded


def script(
    name: str, *argv: str, env: dict[str, str], stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPTS / name), *argv],
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("name", ["backup.sh", "restore.sh", "deploy.sh", "lib.sh"])
def test_s22_the_ops_scripts_parse(name: str) -> None:
    result = subprocess.run(
        ["bash", "-n", str(SCRIPTS / name)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_s22_split_database_url_keeps_the_password_off_the_command_line() -> None:
    url = f"postgresql://whalli:{DB_SECRET}@db.example.com:5432/whalli?sslmode=require"
    result = subprocess.run(
        [
            "bash",
            "-c",
            'source "$0"; split_database_url "$1"; printf "%s\\n%s" "$PG_URL" "$PGPASSWORD"',
            str(SCRIPTS / "lib.sh"),
            url,
        ],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=True,
    )
    pg_url, password = result.stdout.split("\n")
    assert pg_url == "postgresql://whalli@db.example.com:5432/whalli?sslmode=require"
    assert password == "s3cr@t-s22"


@pytest.mark.parametrize("keep", ["0", "-1", "seven", "1.5"])
def test_s22_backup_refuses_a_bad_retention_before_writing_anything(
    tmp_path: Path, keep: str
) -> None:
    dest = tmp_path / "backups"
    result = script(
        "backup.sh",
        "--dest",
        str(dest),
        "--keep-days",
        keep,
        env={"ENV_FILE": str(tmp_path / "none.env")},
    )

    assert result.returncode != 0
    assert "--keep-days" in result.stderr
    assert not dest.exists()


def test_s22_backup_and_restore_refuse_unknown_arguments_with_usage(tmp_path: Path) -> None:
    env = {"ENV_FILE": str(tmp_path / "none.env")}
    for name in ("backup.sh", "restore.sh"):
        result = script(name, "--frobnicate", env=env)
        assert result.returncode == 2, name
        assert "unknown" in result.stderr
        assert "Usage" in result.stdout or name in result.stdout


def test_s22_restore_refuses_a_partial_or_tampered_backup(tmp_path: Path) -> None:
    env = {
        "ENV_FILE": str(tmp_path / "none.env"),
        "WHALLI_DATABASE_URL": f"postgresql://whalli:{DB_SECRET}@127.0.0.1:1/whalli",
    }
    partial = tmp_path / "whalli-20260101T000000Z.partial"
    partial.mkdir()
    (partial / "db.dump").write_bytes(b"dump")
    tampered = tmp_path / "whalli-20260102T000000Z"
    tampered.mkdir()
    (tampered / "db.dump").write_bytes(b"dump")
    (tampered / "SHA256SUMS").write_text("0" * 64 + "  db.dump\n")

    refused_partial = script("restore.sh", str(partial), "--yes", env=env)
    refused_tampered = script("restore.sh", str(tampered), "--yes", env=env)

    assert refused_partial.returncode != 0
    assert "incomplete backup" in refused_partial.stderr
    assert refused_tampered.returncode != 0
    assert "checksum mismatch" in refused_tampered.stderr
    for result in (refused_partial, refused_tampered):
        assert DB_SECRET not in result.stdout + result.stderr


def _a_backup(tmp_path: Path) -> Path:
    folder = tmp_path / "whalli-20260103T000000Z"
    folder.mkdir()
    (folder / "db.dump").write_bytes(b"dump")
    return folder


def test_s22_restores_confirmation_names_the_database_without_its_password(
    tmp_path: Path,
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        f"WHALLI_DATABASE_URL=postgresql://whalli:{DB_SECRET}@db.example.com/whalli # Neon\n"
    )

    result = script(
        "restore.sh", str(_a_backup(tmp_path)), env={"ENV_FILE": str(env_file)}, stdin="no\n"
    )

    assert result.returncode != 0
    assert "cancelled" in result.stderr
    assert "postgresql://whalli@db.example.com/whalli" in result.stderr
    assert DB_SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize("quote", ['"', "'"])
def test_s22_a_quoted_env_value_with_a_comment_keeps_the_password_secret(
    tmp_path: Path, quote: str
) -> None:
    url = f"postgresql://whalli:{DB_SECRET}@db.example.com/whalli"
    env_file = tmp_path / ".env"
    env_file.write_text(f"WHALLI_DATABASE_URL={quote}{url}{quote}  # Neon, production branch\n")

    result = script(
        "restore.sh", str(_a_backup(tmp_path)), env={"ENV_FILE": str(env_file)}, stdin="no\n"
    )

    assert "cancelled" in result.stderr
    assert DB_SECRET not in result.stdout + result.stderr
    assert "postgresql://whalli@db.example.com/whalli" in result.stderr
