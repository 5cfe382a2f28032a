"""A job's results as one .zip: written by the worker as the user, relayed
by root a piece at a time; the whole directory or chosen files, a size limit
from the config, symlinks never followed, FIFOs never opened."""
import base64
import contextlib
import http.client
import io
import os
import pwd
import time
import zipfile

import pytest

import flightjobd
from support import children, wait_finished, wait_for
from test_hostile import QUICK, job_in, served_meanwhile
import test_hostile

daemon = test_hostile.daemon  # the fixture: a root multi-user daemon, two users logged in


def finished_job(client, tmp_path, make):
    """A finished job whose results directory is tmp_path/work, filled by
    make(work) before it runs; its JSON."""
    work = tmp_path / "work"
    work.mkdir()
    make(work)
    s = client.create_script("serial", name="archive", answers={"working_dir": str(work)})
    client.api("PATCH", "/api/scripts/" + s["id"], {"content": (
        '#!/bin/bash\n#SBATCH --chdir="%s"\n#SBATCH --output=job.out\necho done\n' % work)})
    job = client.submit(s["id"])
    wait_finished(client.web, job["id"])
    return client.api("GET", "/api/jobs/" + job["id"]).json


def unzip(body):
    """name -> bytes of every file in a .zip (directories end in /)."""
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        assert z.testzip() is None
        return {i.filename: z.read(i) for i in z.infolist()}


def tree(work):
    (work / "result.txt").write_bytes(b"data\n")
    (work / "sub").mkdir()
    (work / "sub" / "deep.bin").write_bytes(os.urandom(3 << 20))  # several pieces of the stream
    (work / "empty").mkdir()
    (work / "odd name 'é' \"q\" & ;.txt").write_bytes(b"odd\n")
    with open(os.path.join(os.fsencode(str(work)), b"bad-\xff\n.txt"), "wb") as f:  # no UTF-8, a newline
        f.write(b"bytes\n")
    (work / ".hidden").mkdir()
    (work / ".hidden" / "cache.bin").write_bytes(b"x" * (4 << 20))  # never walked, never counted
    os.mkfifo(str(work / "fifo"))


def test_whole_results_directory_unzips_to_exactly_its_files(client, tmp_path):
    job = finished_job(client, tmp_path, tree)
    work = tmp_path / "work"
    r = client.api("GET", "/api/jobs/%s/archive" % job["id"])
    assert r.content_type == "application/zip"
    assert r.headers["Content-Disposition"] == "attachment; filename*=UTF-8''job-%s-results.zip" % job["scheduler_id"]
    files = unzip(r.body)
    note = files.pop("SKIPPED-by-flight-job.txt").decode()
    assert "fifo: not a regular file (a FIFO, socket or device)" in note
    assert "1 hidden files and directories (names starting with a dot)" in note
    assert files == {"job.out": b"done\n", "result.txt": b"data\n", "sub/deep.bin": (work / "sub" / "deep.bin").read_bytes(),
                     "empty/": b"", "odd name 'é' \"q\" & ;.txt": b"odd\n", "bad-_xff_x0a.txt": b"bytes\n"}
    assert "bad-\\xff\\x0a.txt: stored as bad-_xff_x0a.txt" in note
    # the page's "Download all" link is the same archive
    page = client.web.get("/jobs/" + job["id"])
    assert 'href="/jobs/%s/archive"' % job["id"] in page.text and "Download all as .zip" in page.text
    assert unzip(client.web.get("/jobs/%s/archive" % job["id"]).body).keys() == files.keys() | {"SKIPPED-by-flight-job.txt"}
    # a subdirectory's page offers its own
    sub = client.web.get("/jobs/%s/files/sub" % job["id"])
    assert 'href="/jobs/%s/archive?path=sub"' % job["id"] in sub.text
    assert unzip(client.web.get("/jobs/%s/archive?path=sub" % job["id"]).body) == {"sub/deep.bin": files["sub/deep.bin"]}


def test_chosen_files_only_by_api_and_by_the_page_form(client, tmp_path):
    job = finished_job(client, tmp_path, tree)
    listed = {f["name"] for f in client.api("GET", "/api/jobs/%s/files" % job["id"]).json["files"]}
    chosen = ["result.txt", "odd name 'é' \"q\" & ;.txt", "bad-\\xff\\x0a.txt"]  # as the listing names them
    assert set(chosen) <= listed
    files = unzip(client.api("POST", "/api/jobs/%s/archive" % job["id"], {"paths": chosen}).body)
    assert b"bad-\\xff\\x0a.txt: stored as bad-_xff_x0a.txt" in files.pop("SKIPPED-by-flight-job.txt")
    assert files == {"result.txt": b"data\n", "odd name 'é' \"q\" & ;.txt": b"odd\n", "bad-_xff_x0a.txt": b"bytes\n"}
    # a hidden one too, when chosen by name
    assert unzip(client.api("GET", "/api/jobs/%s/archive?path=.hidden" % job["id"]).body) == \
        {".hidden/cache.bin": b"x" * (4 << 20)}
    page = client.web.get("/jobs/" + job["id"])
    form = page.forms[[k for k, f in page.forms.items() if f.action.endswith("/archive")][0]]
    for box in form.fields["path"]:
        box.checked = box._value in ("result.txt", "sub")
    got = form.submit()
    assert got.content_type == "application/zip"
    assert unzip(got.body).keys() == {"result.txt", "sub/deep.bin"}
    # nothing ticked: the page again, saying so
    again = client.form("/jobs/%s/archive" % job["id"], {}, status=422)
    assert "Choose at least one file to download." in again.text


def test_over_the_limit_is_a_clear_error_before_anything_is_sent(make_app, tmp_path):
    client = make_app(storage={"max_archive_bytes": 1 << 20})
    job = finished_job(client, tmp_path, tree)
    r = client.api("GET", "/api/jobs/%s/archive" % job["id"], status=413)
    message = r.json["error"]["message"]
    assert message.startswith("The files chosen add up to 3.0 MiB (")
    assert "more than the 1.0 MiB (1,048,576 bytes) one archive may hold (storage.max_archive_bytes)" in message
    assert r.json["error"]["fields"] == {"paths": "more than 1.0 MiB in all"}
    # a sparse file counts by its apparent size
    with open(str(tmp_path / "work" / "sparse"), "wb") as f:
        f.truncate(10 << 30)
    r = client.api("POST", "/api/jobs/%s/archive" % job["id"], {"paths": ["sparse"]}, status=413)
    assert "add up to 10.0 GiB (10,737,418,240 bytes in 1 files)" in r.json["error"]["message"]
    # under it, fine; the page form says the same, with the ticked files still ticked
    assert unzip(client.api("POST", "/api/jobs/%s/archive" % job["id"], {"paths": ["result.txt"]}).body) == \
        {"result.txt": b"data\n"}
    page = client.form("/jobs/%s/archive" % job["id"], {"path": "sub"}, status=413)
    assert "(storage.max_archive_bytes)" in page.text
    boxes = page.forms[[k for k, f in page.forms.items() if f.action.endswith("/archive")][0]].fields["path"]
    assert {b._value for b in boxes if b.checked} == {"sub"}


@pytest.mark.parametrize("bad", ["../etc/passwd", "/etc/passwd", "sub/../../x", "nothing-here"])
def test_chosen_names_go_through_the_path_gate(client, tmp_path, bad):
    job = finished_job(client, tmp_path, tree)
    r = client.api("POST", "/api/jobs/%s/archive" % job["id"], {"paths": ["result.txt", bad]}, status=404)
    assert r.json["error"]["message"] == "No such file in the job's results: %s." % bad
    assert "paths" in r.json["error"]["fields"]
    r = client.api("GET", "/api/jobs/%s/archive?path=%s" % (job["id"], bad), status=404)
    client.api("POST", "/api/jobs/%s/archive" % job["id"], {"paths": "result.txt"}, status=422)


def test_symlinks_are_not_followed(client, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"outside\n")

    def make(work):
        (work / "result.txt").write_bytes(b"data\n")
        os.symlink(str(secret), str(work / "link-out"))
        os.symlink("result.txt", str(work / "link-in"))
        os.symlink(str(tmp_path), str(work / "dir-out"))
    job = finished_job(client, tmp_path, make)
    files = unzip(client.api("GET", "/api/jobs/%s/archive" % job["id"]).body)
    note = files.pop("SKIPPED-by-flight-job.txt").decode()
    assert files == {"job.out": b"done\n", "result.txt": b"data\n"}
    for name in ("link-out", "link-in", "dir-out"):
        assert "%s: a symbolic link, not followed" % name in note
    assert b"outside" not in b"".join(files.values())
    # a results file named as the note keeps its name; the note goes beside it
    (tmp_path / "work" / "SKIPPED-by-flight-job.txt").write_bytes(b"mine\n")
    files = unzip(client.api("GET", "/api/jobs/%s/archive" % job["id"]).body)
    assert files["SKIPPED-by-flight-job.txt"] == b"mine\n" and b"link-out" in files["_SKIPPED-by-flight-job.txt"]
    os.unlink(str(tmp_path / "work" / "SKIPPED-by-flight-job.txt"))
    # chosen by name, or through a symlinked directory: not followed either
    for chosen in (["link-out"], ["dir-out/secret.txt"]):
        files = unzip(client.api("POST", "/api/jobs/%s/archive" % job["id"], {"paths": chosen}).body)
        assert list(files) == ["SKIPPED-by-flight-job.txt"] and b"outside" not in files["SKIPPED-by-flight-job.txt"]


def test_csrf_is_needed_for_the_post(client, tmp_path):
    job = finished_job(client, tmp_path, tree)
    r = client.api("POST", "/api/jobs/%s/archive" % job["id"], {"paths": ["result.txt"]},
                   headers={"X-CSRF-Token": "wrong"}, status=403)
    assert "CSRF" in r.json["error"]["message"]
    r = client.web.post("/jobs/%s/archive" % job["id"], {"path": "result.txt", "csrf": "wrong"}, status=403)
    assert r.content_type != "application/zip"


@pytest.mark.root
def test_another_users_file_and_a_fifo_are_left_alone_while_others_are_served(daemon):
    """Multi-user: alice's results hold a symlink to bob's file and a FIFO;
    her archive comes back at once without either, bob served meanwhile."""
    d, alice, bob = daemon()
    _, bob_job, bob_out = job_in(bob, "echo secret > mine.txt")
    _, job, out = job_in(alice, "echo hi > hello.txt\nmkfifo pipe\nln -s %s/mine.txt theirs" % bob_out)
    assert os.path.exists(os.path.join(out, "pipe"))
    with served_meanwhile(bob):
        started = time.monotonic()
        status, headers, body = alice.request("GET", "/api/jobs/%s/archive" % job["id"], timeout=10)
        assert status == 200 and time.monotonic() - started < QUICK, (status, body[:200])
        files = unzip(body)
        note = files.pop("SKIPPED-by-flight-job.txt").decode()
        assert files == {"job.out": b"", "job.err": b"", "hello.txt": b"hi\n"}
        assert "pipe: not a regular file" in note and "theirs: a symbolic link, not followed" in note
        # chosen by name: the FIFO is not opened either
        status, _, body = alice.request("POST", "/api/jobs/%s/archive" % job["id"], {"paths": ["pipe", "theirs"]},
                                        timeout=10)
        assert status == 200 and b"secret" not in body
    # bob's own archive is his
    status, _, body = bob.request("GET", "/api/jobs/%s/archive" % bob_job["id"])
    assert status == 200 and unzip(body)["mine.txt"] == b"secret\n"


@pytest.mark.root
def test_names_an_unzipper_could_misread_are_replaced_and_noted_while_others_are_served(daemon):
    """Issue 26, 7: entry names kept backslashes and drive letters (an
    unzipper that reads "\\" as a separator writes outside its folder):
    they, and control characters, are "_" in the archive, each noted."""
    d, alice, bob = daemon()
    names = {"a\\..\\..\\..\\evil.txt": "a_.._.._.._evil.txt", "C:\\Windows\\evil.txt": "__Windows_evil.txt",
             "D:x.txt": "_x.txt", "tab\there.txt": "tab_x09here.txt"}
    _, job, out = job_in(alice, "mkdir 'E:'\n" + "".join("echo x > $'%s'\n" % n.replace("\\", "\\\\").replace("\t", "\\t")
                                                            for n in names))
    assert set(os.listdir(out)) == set(names) | {"job.out", "job.err", "E:"}
    with served_meanwhile(bob):
        for status, _, body in (alice.request("GET", "/api/jobs/%s/archive" % job["id"]),
                                alice.request("POST", "/api/jobs/%s/archive" % job["id"], {"paths": list(names)})):
            assert status == 200
            files = unzip(body)
            note = files.pop("SKIPPED-by-flight-job.txt").decode()
            assert {n for n in files if n not in ("job.out", "job.err", "_/")} == set(names.values()), files
            assert not any("\\" in n or ":" in n for n in files)
            for name, safe in names.items():
                assert "%s: stored as %s (a backslash, a drive letter or a control character replaced)" % (
                    flightjobd.name_text(name), safe) in note, note


def test_pieces_are_bounded_and_an_unfinished_archive_can_be_dropped(client, tmp_path):
    """The worker's side: each piece at most 1 MiB; an archive closed early
    (the client went away) is gone, and one asked for again is a clear 404."""
    job = finished_job(client, tmp_path, tree)
    user = pwd.getpwuid(os.getuid()).pw_name
    first = client.app.pool.call(user, "jobs.archive", {"id": job["id"], "paths": ["sub"]})
    assert not first["eof"] and first["files"] == 1 and first["bytes"] == 3 << 20
    assert len(base64.b64decode(first["data"])) <= 1 << 20
    closed = client.app.pool.call(user, "jobs.archive", {"token": first["token"], "close": True})
    assert closed == {"token": first["token"], "closed": True}
    with pytest.raises(flightjobd.NotFound, match="no longer being written"):
        client.app.pool.call(user, "jobs.archive", {"token": first["token"]})


@pytest.mark.root
def test_a_large_archive_streams_through_root_in_pieces(daemon):
    """120 MB of results that do not compress, as one .zip through the real
    server: root's peak memory stays flat (pieces in flight, never the
    archive), another user is served meanwhile, and a reader that goes away
    half-way leaves the worker serving the next archive."""
    d, alice, bob = daemon()
    size = 120 << 20
    job = job_in(alice, "head -c %d /dev/urandom > big.bin" % size)[1]
    before = test_hostile.peak_kb(d.proc.pid)
    with served_meanwhile(bob):
        conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=60)
        conn.request("GET", "/api/jobs/%s/archive?path=big.bin" % job["id"], headers={"Cookie": alice.cookie})
        r = conn.getresponse()
        assert r.status == 200 and r.getheader("Content-Length") is None
        body = bytearray()
        while True:
            piece = r.read(1 << 20)
            if not piece:
                break
            body += piece
        conn.close()
    grown = test_hostile.peak_kb(d.proc.pid) - before
    print("root's peak RSS (VmHWM) grew %d KiB for a %d-byte archive" % (grown, len(body)))
    with zipfile.ZipFile(io.BytesIO(bytes(body))) as z:
        assert [(i.filename, i.file_size) for i in z.infolist()] == [("big.bin", size)]
        with z.open("big.bin") as f, open(os.path.join(alice.user.home, "out", "big.bin"), "rb") as mine:
            while True:
                a, b = f.read(1 << 20), mine.read(1 << 20)
                assert a == b
                if not a:
                    break
    assert grown < 40 << 10
    # half-way gone: the worker drops that archive and serves the next
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=60)
    conn.request("GET", "/api/jobs/%s/archive?path=big.bin" % job["id"], headers={"Cookie": alice.cookie})
    r = conn.getresponse()
    assert r.status == 200 and len(r.read(3 << 20)) == 3 << 20
    conn.close()
    status, _, body = alice.request("GET", "/api/jobs/%s/archive?path=job.out" % job["id"], timeout=30)
    assert status == 200 and list(unzip(body)) == ["job.out"]


@pytest.mark.slow  # 100,001 files made: make test, not the fast tier
def test_more_files_than_an_archive_may_hold_is_a_clear_413(client, tmp_path):
    """Past ARCHIVE_FILES (100,000) files and directories the walk stops and
    the archive is refused before a byte is sent, naming the bound."""
    def many(work):
        (work / "many").mkdir()
        for n in range(flightjobd.ARCHIVE_FILES + 1):
            os.close(os.open(str(work / "many" / str(n)), os.O_CREAT | os.O_WRONLY, 0o600))
    job = finished_job(client, tmp_path, many)
    r = client.api("GET", "/api/jobs/%s/archive?path=many" % job["id"], status=413)
    assert "more than 100000 files and directories" in r.json["error"]["message"], r.json
    assert r.json["error"]["fields"] == {"paths": "too many files"}
    page = client.web.post("/jobs/%s/archive" % job["id"], {"csrf": client.csrf, "path": "many"}, status=413)
    assert "more than 100000 files and directories" in page.text
    assert unzip(client.api("GET", "/api/jobs/%s/archive?path=job.out" % job["id"]).body) == {"job.out": b"done\n"}


def open_files(pid, name):
    """The descriptors of process pid open on a file called name."""
    found = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        with contextlib.suppress(OSError):
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)).endswith("/" + name):
                found.append(fd)
    return found


def start_archive(d, client, path):
    """An archive download begun through the real server, its headers read
    and its body left unread: (connection, response)."""
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=60)
    conn.request("GET", "/api/jobs/%s" % path, headers={"Cookie": client.cookie})
    r = conn.getresponse()
    assert r.status == 200, (r.status, r.read()[:300])
    return conn, r


def cut(download):
    """The client goes away: its socket closed (the response holds it too)."""
    download[1].close()
    download[0].close()


@pytest.mark.root
def test_archives_hold_download_slots_and_a_cut_one_is_dropped(daemon):
    """An archive being downloaded holds one of the user's download slots
    (server.downloads_per_user, 2): a third download of the user's waits
    its turn (server.turn_wait) and is 503 busy then, another user is served; a cut download frees its slot and
    the worker drops that archive (it no longer holds the file it was
    reading), without waiting for the next archive."""
    d, alice, bob = daemon()
    job = job_in(alice, "head -c %d /dev/urandom > big.bin" % (120 << 20))[1]
    worker = [p for p in children(d.proc.pid) if os.stat("/proc/%d" % p).st_uid == alice.user.uid]
    assert len(worker) == 1, worker
    first = start_archive(d, alice, "%s/archive?path=big.bin" % job["id"])
    second = start_archive(d, alice, "%s/archive" % job["id"])
    wait_for(lambda: len(open_files(worker[0], "big.bin")) == 2, 10, "both archives reading big.bin", 0.05)
    for path in ("/api/jobs/%s/archive?path=job.out" % job["id"], "/api/jobs/%s/files/job.out" % job["id"]):
        status, seconds, data = alice.timed("GET", path)
        assert status == 503 and seconds < test_hostile.TURN + QUICK and "2 downloads in progress" in data["error"]["message"], data
    assert bob.timed("GET", "/api/scripts")[0] == 200
    assert len(first[1].read(2 << 20)) == 2 << 20
    cut(first)  # half-way: root closes the archive in the worker, which lets go of big.bin
    wait_for(lambda: len(open_files(worker[0], "big.bin")) == 1, 30, "the cut archive to be dropped", 0.05)
    status, _, body = alice.request("GET", "/api/jobs/%s/archive?path=job.out" % job["id"])
    assert status == 200 and list(unzip(body)) == ["job.out"]  # its slot is free again
    cut(second)
    wait_for(lambda: open_files(worker[0], "big.bin") == [], 30, "the second archive to be dropped", 0.05)


@pytest.mark.root
def test_an_archive_download_ends_at_the_download_timeout(daemon):
    """A reader that never reads: at server.download_timeout root closes
    the connection (fewer bytes than the archive: the client sees it cut),
    frees the thread and the slot, and the worker drops the archive."""
    d, alice, bob = daemon(server={"download_timeout": 4})
    job = job_in(alice, "head -c %d /dev/urandom > big.bin" % (64 << 20))[1]
    worker = [p for p in children(d.proc.pid) if os.stat("/proc/%d" % p).st_uid == alice.user.uid][0]
    started = time.monotonic()
    conn, r = start_archive(d, alice, "%s/archive?path=big.bin" % job["id"])
    wait_for(lambda: open_files(worker, "big.bin"), 10, "the archive to be read", 0.05)
    # the client reads nothing until the bound has passed, then all it can
    wait_for(lambda: time.monotonic() - started > 4, 10, "the download timeout", 0.1)
    got = 0
    with contextlib.suppress(http.client.IncompleteRead, ConnectionError, OSError):
        while True:
            piece = r.read(1 << 20)
            if not piece:
                break
            got += len(piece)
    cut((conn, r))
    assert got < 64 << 20, got  # cut: not the whole archive
    assert time.monotonic() - started < 4 + 20
    wait_for(lambda: open_files(worker, "big.bin") == [], 30, "the archive to be dropped", 0.05)
    for _ in range(2):  # both slots free
        status, _, body = alice.request("GET", "/api/jobs/%s/archive?path=job.out" % job["id"])
        assert status == 200 and list(unzip(body)) == ["job.out"]
