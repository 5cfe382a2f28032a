"""Import a script from the home (the picker) or pasted text, its #SBATCH
lines as the submission defaults, and run it where it is: as real users,
through their workers, on the local scheduler. (The Slurm run in place:
tests/test_slurm.py::test_imported_script_runs_where_it_is.)"""
import html
import os
import threading
import time
import urllib.parse

import pytest
import webtest

import flightjobd
from support import api_login as login, makedirs_as, wait_finished

pytestmark = pytest.mark.root
XSS = '"><img src=x onerror=alert(1)>'

SCRIPT = "#!/bin/bash\n#SBATCH --job-name=analyse\n#SBATCH --time=0-00:10:00\n#SBATCH --mem=200M\n" \
         "#SBATCH -N 1\n#SBATCH --partition=nosuch\npwd > where.txt\necho ran $(cat input.dat)\n"


def put(user, rel, data, mode=0o644):
    """A file of the user's home, made as the user would (every new
    directory and the file owned by them)."""
    path = os.path.join(user.home, rel)
    makedirs_as(os.path.dirname(path), user, 0o755)
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    os.chmod(path, mode)
    os.chown(path, user.uid, user.gid)
    return path


def link(user, rel, target):
    path = os.path.join(user.home, rel)
    os.symlink(target, path)
    os.lchown(path, user.uid, user.gid)
    return path


def scripts(web, h):
    return web.get("/api/scripts", headers=h).json["scripts"]


@pytest.fixture
def alice(multi_app, unix_users):
    """(web, headers, alice, app) logged in as a new user alice."""
    a, web = multi_app()
    alice = unix_users.create()
    return web, login(web, alice), alice, a


def test_pick_a_file_in_the_home_and_import_it(alice):
    web, h, alice, _ = alice
    put(alice, "proj/run.sh", SCRIPT)
    put(alice, "proj/input.dat", "42\n")
    put(alice, "notes.txt", "x")
    # the picker, without JavaScript: folders and files are links
    page = web.get("/scripts")
    assert page.html.find("a", string="Import a script you have")["href"] == "/import"
    page = web.get("/import")
    assert alice.home in page.text
    page = page.click(href=r"^/import\?path=proj$")
    rows = [a.text for a in page.html.find(id="home-files").find_all("a")]
    assert rows == ["input.dat", "run.sh"]
    page = page.click(href=r"^/import\?file=proj/run\.sh$")
    form = page.forms["import-file"]
    assert form["path"].value == "proj/run.sh" and not form["in_place"].checked
    done = form.submit(status=303).follow()
    sid = done.request.path.split("/")[-1]
    script = web.get("/api/scripts/" + sid).json
    assert script["content"] == SCRIPT and script["name"] == "run.sh" and script["template_name"] == "Imported"
    assert script["origin"]["file"] == os.path.join(alice.home, "proj/run.sh")
    assert script["origin"]["path"] == "proj/run.sh" and script["origin"]["in_place"] is False
    assert "Imported from %s/proj/run.sh" % alice.home in done.text
    # the JSON twin of the picker: the same directory, its entries typed
    listing = web.get("/api/import/files?path=proj", headers=h).json
    assert listing["path"] == "proj" and listing["parent"] == "" and listing["home"] == alice.home
    assert [(e["name"], e["type"], e["size"]) for e in listing["entries"]] == [
        ("input.dat", "file", 3), ("run.sh", "file", len(SCRIPT))]
    assert listing["more"] == 0 and listing["listed"] == flightjobd.LISTED_HOME
    # the copy made at import runs like any script: from the home
    job = web.post_json("/api/jobs", {"script": sid, "answers": {"partition": ""}}, headers=h).json
    job = wait_finished(web, job["id"])
    assert job["state"] == "COMPLETED" and job["results_dir"] == alice.home and job["script_file"] is None
    assert open(os.path.join(alice.home, "where.txt")).read() == alice.home + "\n"


def test_pasted_import_and_its_sbatch_lines_as_the_defaults(alice):
    web, h, alice, _ = alice
    script = web.post_json("/api/import", {"content": SCRIPT.replace("\n", "\r\n")}, headers=h, status=201).json
    assert script["name"] == "analyse" and script["content"] == SCRIPT
    assert script["origin"]["path"] is None and script["origin"]["file"] is None
    sub = web.get("/api/scripts/%s/submission" % script["id"], headers=h).json
    defaults = {q["id"]: q["default"] for q in sub["questions"]}
    assert defaults["time"] == "0-00:10:00" and defaults["mem"] == "200M" and defaults["nodes"] == "1"
    # a directive that is no valid answer (a partition the cluster has not) keeps the question's default
    assert defaults["partition"] == "" and defaults["ntasks"] == ""
    assert {q["id"] for q in sub["questions"] if q.get("from_script")} == {"time", "mem", "nodes"}
    page = web.get("/scripts/%s/submit" % script["id"])
    assert "the defaults below are the values of its own" in page.html.find(id="from-script").text
    assert page.forms[1]["q_time"].value == "0-00:10:00"
    # the paste form: bad input names the field and keeps what was typed
    page = web.get("/import")
    form = page.forms["import-paste"]
    form["name"] = "mine"
    form["content"] = ""
    r = form.submit(status=422)
    assert "Script: Choose a file of your home directory, or paste" in r.text
    assert r.forms["import-paste"]["name"].value == "mine"
    r.forms["import-paste"]["content"] = "#!/bin/bash\necho hi\n"
    r.forms["import-paste"]["name"] = "x" * 201
    r2 = r.forms["import-paste"].submit(status=422)
    assert "Name: one line of at most 200 characters." in r2.text
    assert r2.forms["import-paste"]["content"].value == "#!/bin/bash\necho hi\n"
    made = web.post_json("/api/import", {"content": "echo hi\n", "in_place": True}, headers=h, status=422).json
    assert "in_place" in made["error"]["fields"]
    made = web.post_json("/api/import", {"content": "x", "path": "a"}, headers=h, status=422).json
    assert "path" in made["error"]["fields"]
    web.post_json("/api/import", {"content": "x", "bogus": 1}, headers=h, status=400)
    assert len(scripts(web, h)) == 1


def test_run_in_place_runs_the_file_as_it_is_in_its_directory(alice):
    web, h, alice, _ = alice
    data = os.path.join(alice.home, "big data")
    put(alice, "big data/run.sh", SCRIPT.replace("--partition=nosuch", "--output=out-%j.txt"))
    put(alice, "big data/input.dat", "42\n")
    page = web.get("/import?file=" + "big%20data/run.sh")
    form = page.forms["import-file"]
    form["in_place"].checked = True
    form["name"] = "in place"
    script_page = form.submit(status=303).follow()
    sid = script_page.request.path.split("/")[-1]
    assert "Runs where it is" in script_page.html.find(id="in-place").text
    assert "?edit=content" not in script_page.text
    # the summary says where it runs and which file
    summary = web.get("/scripts/%s/submit" % sid).forms[1].submit("action", value="review")
    assert data + "/run.sh" in summary.html.find(id="runs-in-place").text
    assert "--chdir=" + data in summary.text
    job = wait_finished(web, summary.forms[1].submit("action", value="submit", status=303)
                        .follow().request.path.split("/")[-1])
    assert job["state"] == "COMPLETED", job
    assert job["results_dir"] == data and job["run_in"] == data and job["script_file"] == data + "/run.sh"
    assert job["stdout_path"] == os.path.join(data, "out-%s.txt" % job["scheduler_id"])
    assert open(job["stdout_path"]).read() == "ran 42\n"
    assert open(os.path.join(data, "where.txt")).read() == data + "\n"
    # no copy of the data: nothing of the job manager's holds it
    state = os.path.join(alice.home, ".local", "share", "flight-job")
    held = [os.path.join(r, n) for r, _, files in os.walk(state) for n in files]
    assert not any(n.endswith(("input.dat", "where.txt")) for n in held)
    assert not any(open(p, "rb").read() == b"42\n" for p in held)
    page = web.get("/jobs/" + job["id"])
    assert "Ran where it is" in page.text and data in page.html.find(id="ran-in-place").text
    # the file as it is at each submit: changed where it is, the next job runs the new text
    put(alice, "big data/run.sh", "#!/bin/bash\n#SBATCH --output=second-%j.txt\necho second\n")
    job2 = wait_finished(web, web.post_json("/api/jobs", {"script": sid, "answers": {}}, headers=h).json["id"])
    assert open(os.path.join(data, "second-%s.txt" % job2["scheduler_id"])).read() == "second\n"
    snapshot = web.get("/api/jobs/%s?script=1" % job2["id"], headers=h).json
    assert "echo second" in snapshot["script_content"]
    # editing the copy here is refused with the field named (the file is what runs); notes may change
    r = web.patch_json("/api/scripts/" + sid, {"content": "echo other\n"}, headers=h, status=422).json
    assert "content" in r["error"]["fields"] and "edit that file" in r["error"]["message"]
    web.patch_json("/api/scripts/" + sid, {"notes": "fine"}, headers=h)
    # the file gone: a submit says why and makes no job
    os.unlink(os.path.join(data, "run.sh"))
    jobs_before = web.get("/api/jobs", headers=h).json["total"]
    r = web.post_json("/api/jobs", {"script": sid, "answers": {}}, headers=h, status=409).json
    assert "cannot be used now" in r["error"]["message"] and data + "/run.sh" in r["error"]["message"]
    assert web.get("/api/jobs", headers=h).json["total"] == jobs_before
    # a copy of it is a script of its own, run from its own content
    copy = web.post_json("/api/scripts/%s/copy" % sid, {"name": "mine now"}, headers=h, status=201).json
    assert copy["origin"]["in_place"] is False
    web.patch_json("/api/scripts/" + copy["id"], {"content": "echo edited\n"}, headers=h)


def test_the_picker_never_leaves_the_home(alice, unix_users):
    web, h, alice, _ = alice
    bob = unix_users.create()
    put(bob, "secret.sh", "#!/bin/bash\necho bob secret\n", 0o644)  # readable by all: only the gate keeps it
    put(alice, "ok.sh", "echo ok\n")
    for path in ("..", "../..", "../../etc", "/etc", bob.home, "a/../../..", "ok.sh/..", "%2e%2e"):
        r = web.get("/api/import/files", {"path": path}, headers=h, expect_errors=True)
        assert r.status_int == 404 and "secret" not in r.text, (path, r)
        r = web.get("/import", {"path": path}, expect_errors=True)
        assert r.status_int == 404 and "secret.sh" not in r.text, (path, r)
    for path in ("../" + os.path.basename(bob.home) + "/secret.sh", bob.home + "/secret.sh", "/etc/passwd",
                 "../../etc/passwd", "x/../../../etc/passwd"):
        r = web.post_json("/api/import", {"path": path}, headers=h, expect_errors=True)
        assert r.status_int == 422 and "path" in r.json["error"]["fields"], (path, r)
        r = web.post("/import", {"csrf": h["X-CSRF-Token"], "source": "file", "path": path}, expect_errors=True)
        assert r.status_int == 422 and "bob secret" not in r.text and "root:" not in r.text
        assert 'value="%s"' % path in r.text  # what was asked for is kept
    assert scripts(web, h) == []


def test_a_symlink_to_another_users_file_is_refused(alice, unix_users):
    web, h, alice, _ = alice
    bob = unix_users.create()
    secret = put(bob, "secret.sh", "#!/bin/bash\necho bob secret\n", 0o644)
    os.chmod(bob.home, 0o755)  # bob's home open to all: the gate alone stands between
    link(alice, "bobs.sh", secret)
    link(alice, "passwd", "/etc/passwd")
    link(alice, "bobhome", bob.home)
    put(alice, "mine/real.sh", "echo mine\n")
    link(alice, "inside.sh", os.path.join(alice.home, "mine/real.sh"))
    entries = {e["name"]: e for e in web.get("/api/import/files", headers=h).json["entries"]}
    assert entries["bobs.sh"]["type"] == "link" and entries["bobs.sh"]["inside"] is False
    assert "target" not in entries["bobs.sh"] and entries["bobhome"]["inside"] is False
    assert entries["inside.sh"]["inside"] is True and entries["inside.sh"]["target"] == "file"
    page = web.get("/import")
    assert "a link out of your home: cannot be used" in page.text
    assert not page.html.find("a", href="/import?file=bobs.sh")
    for path in ("bobs.sh", "passwd", "bobhome/secret.sh"):
        r = web.post_json("/api/import", {"path": path, "in_place": True}, headers=h, status=403).json
        assert "leads outside your home directory" in r["error"]["fields"]["path"]
    web.get("/api/import/files?path=bobhome", headers=h, status=403)
    web.get("/import?path=bobhome", status=403)
    # a link inside the home is followed, and recorded as the real file
    s = web.post_json("/api/import", {"path": "inside.sh", "in_place": True}, headers=h, status=201).json
    assert s["content"] == "echo mine\n" and s["origin"]["path"] == "mine/real.sh"
    # the file of a run-in-place script swapped for a link out of the home: refused at submit, no job
    os.unlink(os.path.join(alice.home, "mine/real.sh"))
    link(alice, "mine/real.sh", secret)
    r = web.post_json("/api/jobs", {"script": s["id"], "answers": {}}, headers=h, status=409).json
    assert "leads outside your home directory" in r["error"]["message"] and "bob secret" not in str(r)
    web.get("/api/scripts/%s/submission" % s["id"], headers=h, status=409)
    assert web.get("/api/jobs", headers=h).json["total"] == 0
    assert len(scripts(web, h)) == 1


def test_a_fifo_is_refused_at_once_while_another_user_is_served(multi_app, unix_users):
    a, web = multi_app()
    alice, bob = unix_users.create(), unix_users.create()
    h = login(web, alice)
    bweb = webtest.TestApp(a.bottle, extra_environ={"REMOTE_ADDR": "127.0.0.1"})
    bh = login(bweb, bob)
    fifo = os.path.join(alice.home, "pipe.sh")
    os.mkfifo(fifo, 0o600)
    os.chown(fifo, alice.uid, alice.gid)
    entries = {e["name"]: e for e in web.get("/api/import/files", headers=h).json["entries"]}
    assert entries["pipe.sh"]["type"] == "other"
    assert "not a regular file: cannot be imported" in web.get("/import").text
    served = []

    def bob_meanwhile():
        for _ in range(5):
            start = time.time()
            bweb.get("/api/scripts", headers=bh)
            served.append(time.time() - start)
    thread = threading.Thread(target=bob_meanwhile)
    start = time.time()
    thread.start()
    r = web.post_json("/api/import", {"path": "pipe.sh", "in_place": True}, headers=h, status=422).json
    took = time.time() - start
    thread.join(30)
    assert took < 5 and "is not a regular file" in r["error"]["fields"]["path"]
    assert len(served) == 5 and max(served) < 5
    # a directory is refused the same way
    put(alice, "d/x.sh", "echo\n")
    r = web.post_json("/api/import", {"path": "d"}, headers=h, status=422).json
    assert "not a regular file" in r["error"]["fields"]["path"]
    assert scripts(web, h) == []


def test_a_socket_or_a_link_loop_is_refused_naming_the_path(alice):
    """Red team: a socket in the home gave a 503 ("could not read from your
    home directory") and a symlink loop a 403 naming no field; the page
    lost what was typed. Both are refused naming `path`, the name kept."""
    import socket
    web, h, alice, _ = alice
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(os.path.join(alice.home, "sock.sh"))
    os.lchown(os.path.join(alice.home, "sock.sh"), alice.uid, alice.gid)
    link(alice, "loop1.sh", "loop2.sh")
    link(alice, "loop2.sh", "loop1.sh")
    try:
        for name, status, words in (("sock.sh", 422, "is not a regular file (a socket)"),
                                    ("loop1.sh", 403, "leads round in a loop")):
            for in_place in (False, True):
                r = web.post_json("/api/import", {"path": name, "in_place": in_place}, headers=h, status=status).json
                assert words in r["error"]["fields"]["path"], r
            r = web.post("/import", {"csrf": h["X-CSRF-Token"], "source": "file", "path": name, "name": "kept"},
                         status=status)
            assert words in r.text and r.forms["import-file"]["name"].value == "kept"
        assert scripts(web, h) == []
    finally:
        sock.close()


def test_a_file_over_the_script_bound_is_refused(multi_app, unix_users):
    a, web = multi_app(storage={"max_script_bytes": 4096})
    alice = unix_users.create()
    h = login(web, alice)
    put(alice, "big.sh", "#" * 4097)
    put(alice, "fits.sh", "#" * 4096)
    sparse = os.path.join(alice.home, "sparse.sh")
    with open(sparse, "wb") as f:
        f.truncate(10 << 30)  # 10 GB, no blocks: never read past the bound
    os.chown(sparse, alice.uid, alice.gid)
    for name in ("big.sh", "sparse.sh"):
        start = time.time()
        r = web.post_json("/api/import", {"path": name}, headers=h, status=413).json
        assert time.time() - start < 5
        assert "larger than 4096 bytes (storage.max_script_bytes)" in r["error"]["fields"]["path"]
    page = web.get("/import")
    assert page.text.count("too large to be a job script") == 2
    assert page.html.find("a", href="/import?file=fits.sh")
    r = web.post("/import", {"csrf": h["X-CSRF-Token"], "source": "file", "path": "big.sh", "name": "kept name"},
                 status=413)
    assert "larger than 4096 bytes" in r.text and r.forms["import-file"]["name"].value == "kept name"
    web.post_json("/api/import", {"path": "fits.sh"}, headers=h, status=201)
    # a binary file is no script
    put(alice, "prog", b"\x7fELF\x00\xff\xfe")
    r = web.post_json("/api/import", {"path": "prog"}, headers=h, status=422).json
    assert "is not text" in r["error"]["fields"]["path"]


def test_listing_is_bounded_and_names_are_escaped(alice):
    web, h, alice, _ = alice
    many = os.path.join(alice.home, "many")
    os.mkdir(many)
    for i in range(flightjobd.LISTED_HOME + 20):
        open(os.path.join(many, "f%04d" % i), "w").close()
    put(alice, XSS + ".sh", "echo x\n")
    listing = web.get("/api/import/files?path=many", headers=h).json
    assert len(listing["entries"]) == flightjobd.LISTED_HOME and listing["more"] == 20 and listing["truncated"]
    page = web.get("/import?path=many")
    assert "Only the first 1,000 entries of this folder are listed; 20 more are not shown." in page.text
    page = web.get("/import")
    assert XSS not in page.text and html.escape(XSS) + ".sh" in page.text
    s = web.post_json("/api/import", {"path": XSS + ".sh"}, headers=h, status=201).json
    assert s["name"] == XSS + ".sh"
    for url in ("/scripts/" + s["id"], "/scripts", "/import?file=" + urllib.parse.quote(XSS + ".sh")):
        assert XSS not in web.get(url).text, url


def test_a_folder_with_a_non_ascii_name_opens_in_the_picker(alice):
    """Red team: the picker read ?path= and ?file= as Bottle gives query
    values (each byte a character), so the page's own link to a folder
    named café (or any UTF-8 name) was a 404."""
    web, h, alice, _ = alice
    put(alice, "café/日本/run.sh", "echo ran\n")
    page = web.get("/import")
    href = "/import?path=" + urllib.parse.quote("café")
    assert page.html.find("a", href=href)
    page = web.get(href)
    assert page.html.find("a", href="/import?path=" + urllib.parse.quote("café/日本"))
    listing = web.get("/api/import/files?path=" + urllib.parse.quote("café/日本"), headers=h).json
    assert [e["path"] for e in listing["entries"]] == ["café/日本/run.sh"]
    page = web.get("/import?file=" + urllib.parse.quote("café/日本/run.sh"))
    assert page.forms["import-file"]["path"].value == "café/日本/run.sh"
    web.get("/api/import/files?path=%ff", headers=h, status=400)


def test_import_needs_the_csrf_token(alice):
    web, h, alice, _ = alice
    put(alice, "ok.sh", "echo ok\n")
    for token in (None, "", h["X-CSRF-Token"][:-1]):
        headers = {"X-CSRF-Token": token} if token is not None else {}
        r = web.post_json("/api/import", {"path": "ok.sh"}, headers=headers, status=403).json
        assert r["error"]["code"] == "forbidden"
        fields = {"source": "file", "path": "ok.sh"}
        if token is not None:
            fields["csrf"] = token
        r = web.post("/import", fields, expect_errors=True)
        assert r.status_int == 403 or "Send what you typed?" in r.text
    assert scripts(web, h) == []
    web.post_json("/api/import", {"path": "ok.sh"}, headers=h, status=201)


def test_an_imported_script_saved_as_a_template(alice):
    web, h, alice, _ = alice
    s = web.post_json("/api/import", {"content": SCRIPT, "name": "mine"}, headers=h, status=201).json
    t = web.post_json("/api/scripts/%s/save-as-template" % s["id"], {"name": "From import"}, headers=h,
                      status=201).json
    assert t["id"] == "from-import" and t["questions"] == []
    assert [q["id"] for q in t["submission_questions"]] == [q["id"] for q in flightjobd.IMPORTED_SUBMISSION]
    made = web.post_json("/api/scripts", {"template": "from-import", "name": "again"}, headers=h, status=201).json
    assert made["content"] == SCRIPT


SWAPPER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
os.chdir(sys.argv[1])
print("swapping", flush=True)
while True:  # renameat2(RENAME_EXCHANGE): the directory d and the link swap -> /etc trade places at once
    libc.renameat2(-100, b"d", -100, b"swap", 2)
"""


def test_a_directory_swapped_for_a_link_out_is_never_followed(alice):
    """Issue 26 item 6: the path was resolved, then opened by name,
    following links: a directory swapped for a link to /etc in between
    (a process swapping the two as fast as it can) gave /etc/passwd in 51
    of 300 imports. The path is opened from the home's descriptor without
    following any link (openat2, or one component at a time): each import
    is the user's own file or refused, never /etc/passwd."""
    import subprocess
    import sys
    web, h, alice, _ = alice
    put(alice, "d/passwd", "echo mine\n")
    link(alice, "swap", "/etc")
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, alice.home], stdout=subprocess.PIPE)
    try:
        assert swapper.stdout.readline() == b"swapping\n"
        got = {"mine": 0, "refused": 0, "etc": 0}
        for _ in range(300):
            r = web.post_json("/api/import", {"path": "d/passwd"}, headers=h, expect_errors=True)
            if r.status_int == 201:
                got["etc" if "root:" in r.json["content"] else "mine"] += 1
            else:
                assert r.status_int == 403 and "path" in r.json["error"]["fields"], r
                got["refused"] += 1
    finally:
        swapper.kill()
        swapper.wait()
    print("300 imports of a path swapped with a link out:", got)
    assert got["etc"] == 0 and got["mine"] > 0 and got["refused"] > 0, got


@pytest.mark.parametrize("openat2", [flightjobd.OPENAT2, None], ids=["openat2", "walk"])
def test_open_beneath_never_follows_a_swapped_link(tmp_path, monkeypatch, openat2):
    """The same race in the worker's own steps, both ways of opening (openat2
    and the walk a part at a time, for kernels before 5.6): 2,000 opens."""
    import subprocess
    import sys
    monkeypatch.setattr(flightjobd, "OPENAT2", openat2)
    root = str(tmp_path)
    os.makedirs(os.path.join(root, "d"))
    with open(os.path.join(root, "d", "passwd"), "w") as f:
        f.write("mine\n")
    os.symlink("/etc", os.path.join(root, "swap"))
    os.symlink("d/passwd", os.path.join(root, "inside"))
    read = lambda full: flightjobd.read_file(full, 4096, flightjobd.open_beneath(root, full))  # noqa: E731
    assert read(flightjobd.resolve_inside(root, "inside", "out")) == b"mine\n"  # a link resolved first
    for path in ("inside", "swap/passwd"):  # unresolved: a link is never followed
        with pytest.raises(OSError):
            read(os.path.join(root, path))
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, root], stdout=subprocess.PIPE)
    got = {}
    try:
        assert swapper.stdout.readline() == b"swapping\n"
        for _ in range(2000):
            try:
                key = read(flightjobd.resolve_inside(root, "d/passwd", "out"))
            except (OSError, flightjobd.Forbidden) as e:
                key = type(e).__name__
            got[key] = got.get(key, 0) + 1
    finally:
        swapper.kill()
        swapper.wait()
    assert got.get(b"mine\n") and not [k for k in got if isinstance(k, bytes) and k != b"mine\n"], got
