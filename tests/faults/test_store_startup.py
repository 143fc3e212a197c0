"""`runstream serve` refuses a store it cannot use, in one line naming the file and why.

Issue 8, items 13 (a store the server cannot write), 14 (a store that is not a database)
and 15 (a store another server holds; a `--store` URL of a backend this server lacks).
Each case starts the real command on a real file and checks what an operator sees.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from runstream.v1 import run_pb2
from runstream_server.app import RunstreamServer, ServerConfig
from runstream_server.store.sqlite import SqliteEventStore

from tests.conftest import ServerProcess, free_port
from tests.faults.storage import (
    NOBODY,
    Refusal,
    fill,
    immutable,
    nobody_dir,
    remount,
    serve_refuses,
    small_filesystem,
)


def assert_one_line_refusal(refusal: Refusal, store: Path | str, *problem: str) -> None:
    assert refusal.returncode != 0
    assert "Traceback" not in refusal.stderr, refusal.stderr
    lines = refusal.stderr.strip().splitlines()
    assert len(lines) == 1, refusal.stderr
    assert lines[0].startswith("runstream: store "), lines[0]
    assert str(store) in lines[0]
    for words in problem:
        assert words in lines[0], lines[0]


def make_store(path: Path, runs: int = 200) -> None:
    """A real store with some history, written by the server's own schema."""
    server = ServerProcess(port=free_port(), store_path=path)
    server.start()
    server.terminate()
    conn = sqlite3.connect(path)
    with conn:
        for i in range(runs):
            run = run_pb2.Run(run_id=f"r{i}", workflow="wf", display_name="x" * 300)
            conn.execute(
                "INSERT INTO runs (run_id, workflow, status, create_time_us, labels, last_seq, "
                "snapshot) VALUES (?, 'wf', ?, ?, '{}', 0, ?)",
                (run.run_id, run_pb2.RUN_STATUS_SUCCEEDED, i, run.SerializeToString()),
            )
    conn.close()


# --- 14: not a database ----------------------------------------------------------------------


def test_random_bytes_are_refused(tmp_path: Path) -> None:
    store = tmp_path / "random.db"
    store.write_bytes(random.Random(8).randbytes(64 * 1024))
    assert_one_line_refusal(serve_refuses(str(store)), store, "is not a SQLite database")


def test_a_text_file_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "notes.txt"
    store.write_text("these are my notes, not a database\n" * 200)
    assert_one_line_refusal(serve_refuses(str(store)), store, "is not a SQLite database")


@pytest.mark.parametrize("options", [(), ("--skip-store-check",)])
@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)", "its tables: users"),
        ("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT)", "its table runs has no column"),
    ],
)
def test_another_programs_database_is_refused_and_left_as_it_was(
    tmp_path: Path, schema: str, problem: str, options: tuple[str, ...]
) -> None:
    """A mistyped --store naming another program's SQLite file: Runstream added its tables
    to it and served from it (found in review); a `runs` table of its own was refused with
    "no such column: create_time_us". Then the refusal still switched the file to WAL
    (review rv65d): its header rewritten, and -wal and -shm files needed beside it by every
    program that opened it after."""
    store = tmp_path / "app.db"
    conn = sqlite3.connect(store)
    with conn:
        conn.execute(schema)
        conn.execute("INSERT INTO " + schema.split()[2] + " VALUES (1, 'a')")
    conn.close()
    before = store.read_bytes()
    refusal = serve_refuses(str(store), *options)
    assert_one_line_refusal(refusal, store, "is another program's database", problem)
    assert store.read_bytes() == before  # not a byte changed: no tables, not WAL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]


def test_a_runstream_store_with_tables_of_other_tools_is_served(tmp_path: Path) -> None:
    """Runstream's tables beside others (an operator's, a replication tool's such as
    Litestream's) are still Runstream's store (refused as another program's at first)."""
    store = tmp_path / "runstream.db"
    make_store(store, runs=3)
    conn = sqlite3.connect(store)
    with conn:
        conn.execute("CREATE TABLE _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER)")
    conn.close()
    server = ServerProcess(port=free_port(), store_path=store)
    server.start()
    assert server.terminate() == 0


def refused_at_info(store: Path) -> list[str]:
    """The lines `runstream serve --store store` prints at the default log level (INFO)
    before it exits with status 1."""
    serve = [sys.executable, "-m", "runstream.cli.main", "serve", "--address", "127.0.0.1:0"]
    done = subprocess.run(
        [*serve, "--store", str(store)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1, done.stderr
    return done.stderr.splitlines()


def test_a_refused_store_is_the_only_line_at_the_default_log_level(tmp_path: Path) -> None:
    """At INFO, the default, the refusal followed "starting on ADDRESS with store PATH": the
    operator's screen said starting for a server that never started."""
    store = tmp_path / "notes.txt"
    store.write_text("these are my notes, not a database\n")
    assert refused_at_info(store) == [
        f"runstream: store {store} is not a SQLite database (file is not a database)"
    ]


def test_a_directory_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "a-directory"
    store.mkdir()
    assert_one_line_refusal(serve_refuses(str(store)), store, "is a directory")


def test_a_truncated_store_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "truncated.db"
    make_store(store)
    size = store.stat().st_size
    with open(store, "r+b") as f:
        f.truncate(size // 2)
    assert_one_line_refusal(serve_refuses(str(store)), store, "is damaged")


def test_a_store_with_overwritten_pages_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "overwritten.db"
    make_store(store)
    page = 4096
    pages = store.stat().st_size // page
    assert pages > 4
    with open(store, "r+b") as f:  # the header page stays intact: the file still opens
        for number in range(2, pages):
            f.seek(number * page)
            f.write(random.Random(number).randbytes(page))
    assert_one_line_refusal(serve_refuses(str(store)), store, "is damaged")


def test_a_store_with_many_problems_is_refused_naming_three(tmp_path: Path) -> None:
    """SQLite's check may put every problem in one row, one per line: the refusal showed all
    of them, 5 KB of page numbers, where it names three and counts the rest (found in
    review: a backup restored beside a stale -wal file)."""
    store, backup = tmp_path / "runs.db", tmp_path / "backup.db"
    make_store(store)
    shutil.copy(store, backup)
    conn = sqlite3.connect(store)
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    for start in (200, 2000):  # a server's writes after the backup: the first checkpointed,
        with conn:  # the rest still in its -wal when it was killed
            for i in range(start, start + 1800):
                run = run_pb2.Run(run_id=f"r{i}", workflow="wf", display_name="x" * 300)
                conn.execute(
                    "INSERT INTO runs (run_id, workflow, status, create_time_us, labels, "
                    "last_seq, snapshot) VALUES (?, 'wf', 1, ?, '{}', 0, ?)",
                    (run.run_id, i, run.SerializeToString()),
                )
        if start == 200:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copy(f"{store}-wal", tmp_path / "stale-wal")
    conn.close()
    shutil.copy(backup, store)  # the backup restored, the stale -wal beside it
    shutil.copy(tmp_path / "stale-wal", f"{store}-wal")
    refusal = serve_refuses(str(store))
    assert_one_line_refusal(refusal, store, "is damaged: ", "more problems)")
    assert len(refusal.stderr) < 600, refusal.stderr
    assert "*** in database" not in refusal.stderr


def test_an_intact_store_passes_the_check_and_keeps_its_runs(tmp_path: Path) -> None:
    store = tmp_path / "intact.db"
    make_store(store, runs=3)
    server = ServerProcess(port=free_port(), store_path=store)
    server.start()
    assert server.terminate() == 0
    assert sqlite3.connect(store).execute("SELECT count(*) FROM runs").fetchone() == (3,)


# --- 15: one server per file; URLs of other backends ----------------------------------------


def test_a_second_server_on_the_same_file_is_refused(tmp_path: Path) -> None:
    first = ServerProcess(port=free_port(), store_path=tmp_path / "shared.db")
    first.start()
    try:
        refusal = serve_refuses(str(first.store_path))
        assert_one_line_refusal(refusal, first.store_path, "in use by another Runstream server")
    finally:
        assert first.terminate() == 0
    # The lock goes with the server: the file is free for the next one.
    second = ServerProcess(port=free_port(), store_path=first.store_path)
    second.start()
    assert second.terminate() == 0


def test_a_store_another_program_holds_open_is_refused_and_a_running_one_is_kept(
    tmp_path: Path,
) -> None:
    store = tmp_path / "held.db"
    make_store(store, runs=3)
    # A sqlite3 shell of its own, in another process, reading the file as the server starts.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
            " c.execute('BEGIN'); c.execute('SELECT count(*) FROM runs').fetchone();"
            " print('open', flush=True); sys.stdin.read()",
            str(store),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        refusal = serve_refuses(str(store))  # after SQLite's 5 s wait for the lock
        assert_one_line_refusal(refusal, store, "is open in another program")
    finally:
        holder.communicate("")
    # And the other way round: while a server has the file, another program cannot read it
    # (nothing it read could be trusted to be whole), and the server's runs stay as they were.
    server = ServerProcess(port=free_port(), store_path=store)
    server.start()
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            sqlite3.connect(store, timeout=0.1).execute("SELECT count(*) FROM runs").fetchone()
    finally:
        assert server.terminate() == 0
    assert sqlite3.connect(store).execute("SELECT count(*) FROM runs").fetchone() == (3,)


@pytest.mark.parametrize(
    "url", ["postgres://db.internal/runs", "sqlite:///var/runs.db", "http://cache:8080/x"]
)
def test_a_store_url_of_an_unsupported_scheme_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.chdir(tmp_path)
    refusal = serve_refuses(url)
    scheme = url.split("://")[0]
    assert refusal.returncode == 2
    assert "Traceback" not in refusal.stderr
    assert refusal.stderr.strip().splitlines() == [refusal.last_line]
    assert f"unsupported store scheme {scheme}://" in refusal.last_line
    assert list(tmp_path.iterdir()) == []  # no directory named "postgres:" or the like


def test_a_password_in_a_refused_url_is_not_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    refusal = serve_refuses("postgres://admin:s3cret-pw@db:5432/runs")
    assert refusal.returncode == 2
    assert "s3cret-pw" not in refusal.stderr


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("redis:/:s3cret-pw@127.0.0.1:6379/0", "redis: is not followed by //"),
        ("rediss:/127.0.0.1:6380", "rediss: is not followed by //"),
        ("redis:127.0.0.1:6379", "redis: is not followed by //"),
        ("REDIS://:s3cret-pw@127.0.0.1:6379/0", "write the scheme in lower case: redis://"),
    ],
)
def test_a_redis_url_with_a_typo_is_refused_not_taken_for_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, said: str
) -> None:
    """`redis:/HOST` (a slash short) was a SQLite file in directories named after the URL,
    password and all: a replica that shared nothing with the others, logging the password."""
    monkeypatch.chdir(tmp_path)
    refusal = serve_refuses(url)
    assert refusal.returncode == 2
    assert said in refusal.last_line
    assert "s3cret-pw" not in refusal.stderr
    assert list(tmp_path.iterdir()) == []


# --- 13: a store the server cannot write ----------------------------------------------------


def test_a_read_only_file_is_refused() -> None:
    with nobody_dir() as directory:
        store = directory / "ro.db"
        make_store(store, runs=1)
        os.chown(store, NOBODY, NOBODY)
        store.chmod(0o444)
        refusal = serve_refuses(str(store), as_nobody=True)
        assert_one_line_refusal(refusal, store, "cannot be opened for writing", "Permission denied")


def test_a_new_file_in_a_read_only_directory_is_refused() -> None:
    with nobody_dir() as directory:
        directory.chmod(0o555)
        store = directory / "new.db"
        refusal = serve_refuses(str(store), as_nobody=True)
        assert_one_line_refusal(refusal, store, "cannot be opened for writing", "Permission denied")
        assert not store.exists()


def test_a_writable_file_in_a_read_only_directory_is_refused() -> None:
    """SQLite needs to create its -wal file beside the database."""
    with nobody_dir() as directory:
        store = directory / "rw.db"
        make_store(store, runs=1)
        for leftover in directory.glob("rw.db-*"):
            leftover.unlink()
        os.chown(store, NOBODY, NOBODY)
        directory.chmod(0o555)
        refusal = serve_refuses(str(store), as_nobody=True)
        assert_one_line_refusal(
            refusal, store, "cannot be opened for writing", "directory must be writable"
        )


def test_a_store_on_a_read_only_file_system_is_refused() -> None:
    with small_filesystem() as mount_point:
        store = mount_point / "runstream.db"
        make_store(store, runs=1)
        remount(mount_point, "ro")
        refusal = serve_refuses(str(store))
        assert_one_line_refusal(refusal, store, "Read-only file system")


def test_an_immutable_store_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "immutable.db"
    make_store(store, runs=1)
    with immutable(store):
        refusal = serve_refuses(str(store))
    assert_one_line_refusal(refusal, store, "cannot be opened for writing", "not permitted")


# --- a store in a directory that does not exist ------------------------------------------------


async def test_a_store_in_a_missing_directory_is_created_and_the_log_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Created, as `serve --help` and the README say, but never silently: a mistyped path
    shows in the log at start rather than runs going where nobody looks."""
    store = tmp_path / "data" / "deeper" / "runs.db"
    caplog.set_level(logging.INFO, logger="runstream.store")
    server = RunstreamServer(ServerConfig(address="127.0.0.1:0", store_path=store))
    await server.start()
    try:
        assert store.exists()
    finally:
        await server.stop(grace=0)
    said = [r.getMessage() for r in caplog.records if "did not exist" in r.getMessage()]
    assert said == [f"store {store}: its directory {store.parent} did not exist and was created"]
    caplog.clear()
    again = RunstreamServer(ServerConfig(address="127.0.0.1:0", store_path=store))
    await again.start()
    await again.stop(grace=0)
    assert "did not exist" not in caplog.text  # an existing directory goes unmentioned


async def test_a_new_store_file_is_created_and_the_log_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A mistyped file name in an existing directory (`run.db` for `runs.db`) started an
    empty store without a word (review rv65d)."""
    store = tmp_path / "run.db"
    caplog.set_level(logging.INFO, logger="runstream.store")
    for _ in range(2):
        server = RunstreamServer(ServerConfig(address="127.0.0.1:0", store_path=store))
        await server.start()
        await server.stop(grace=0)
    said = [r.getMessage() for r in caplog.records if "did not exist" in r.getMessage()]
    assert said == [f"store {store} did not exist: a new, empty store was created"]  # once


@pytest.mark.parametrize("room", [0, 64 * 1024], ids=["no-room", "room-for-the-wal"])
@pytest.mark.parametrize("name", ["new.db", "data/deeper/new.db"])
def test_a_store_refused_on_a_full_disk_leaves_nothing_behind(name: str, room: int) -> None:
    """A refused start left the empty file and the directories it created, and printed the
    directory's INFO line before the refusal (review rv65d). With some room left, SQLite
    creates the file and its -wal before the schema finds the disk full: both go too."""
    with small_filesystem("1m") as mount_point:
        filler = fill(mount_point)
        os.truncate(filler, filler.stat().st_size - room)
        store = mount_point / name
        assert refused_at_info(store) == [
            f"runstream: store {store} cannot be written: the disk is full "
            "(database or disk is full)"
        ]
        assert [p.name for p in mount_point.iterdir()] == ["filler"]


async def test_the_upgrade_that_indexes_end_times_gives_its_log_space_back(
    tmp_path: Path,
) -> None:
    """The first open of a store from before ``retained_end_us`` fills it in one
    transaction, through the write-ahead log, which then kept that size (143 MB beside a
    227 MB store, found in review) for as long as the server ran."""
    path = tmp_path / "old.db"
    store = SqliteEventStore(path)
    await store.open()
    await store.close()
    ended_run = run_pb2.Run(workflow="wf", status=run_pb2.RUN_STATUS_SUCCEEDED, last_seq=1)
    ended_run.end_time.FromDatetime(datetime(2026, 1, 1, tzinfo=UTC))
    with contextlib.closing(sqlite3.connect(path)) as conn:  # as the release before left it
        conn.execute("DROP INDEX runs_retained")
        conn.execute("DROP INDEX runs_retained_by_tenant")
        conn.execute("ALTER TABLE runs DROP COLUMN retained_end_us")
        for i in range(2000):
            ended_run.run_id = f"r{i}"
            ended_run.display_name = f"{i}" * 1000
            conn.execute(
                "INSERT INTO runs (run_id, workflow, status, create_time_us, labels, last_seq, "
                "snapshot) VALUES (?, 'wf', ?, ?, '{}', 1, ?)",
                (ended_run.run_id, ended_run.status, i, ended_run.SerializeToString()),
            )
            conn.execute("INSERT INTO events VALUES (?, 1, 1, NULL, x'00')", (ended_run.run_id,))
        conn.commit()
    store = SqliteEventStore(path)
    await store.open()
    try:
        assert path.with_name("old.db-wal").stat().st_size < 100_000
        await store.backup(tmp_path / "copy.db")
        with contextlib.closing(sqlite3.connect(tmp_path / "copy.db")) as copy:
            filled = copy.execute("SELECT count(*) FROM runs WHERE retained_end_us > 0")
            assert filled.fetchone() == (2000,)
    finally:
        await store.close()
