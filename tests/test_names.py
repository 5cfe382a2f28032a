"""Never a 500 on any byte sequence in a name, path, answer or file.

A name on disk is any bytes but NUL and "/": not UTF-8, control characters,
a lone surrogate's bytes. Every page and API route that shows one answers
200 with it written as text (\\xHH for each byte that is no text, or is a
control character, or a backslash that would read as such an escape), and
the link it lists for it leads to it. Text read from a user's files (a
hand-edited meta.json carrying lone surrogates, notes that are not UTF-8)
is shown with U+FFFD where it is no text. What a client sends that is no
text is refused with a 400.
"""
import json
import os
import urllib.parse

import flightjobd

# bytes on disk -> the text shown for them
NAMES = [
    (b"\xff\xfe.txt", "\\xff\\xfe.txt"),
    (b"ctl\x01\x1b[31m\x7f.txt", "ctl\\x01\\x1b[31m\\x7f.txt"),
    (b"new\nline\ttab.txt", "new\\x0aline\\x09tab.txt"),
    (b"surrogate\xed\xa0\x80.txt", "surrogate\\xed\\xa0\\x80.txt"),
    (b"c1\xc2\x85.txt", "c1\\xc2\\x85.txt"),
    (b"back\\xff.txt", "back\\x5cxff.txt"),  # a backslash, then "xff": not the byte ff
    (b"back\\slash \\x2f.txt", "back\\slash \\x2f.txt"),  # no escape to read: as it is
    ("é ünïcode.txt".encode(), "é ünïcode.txt"),
    (b"<b>&amp;\"'.txt", "<b>&amp;\"'.txt"),
]


def finished_job(client, tmp_path):
    """A finished job whose results directory is tmp_path/work."""
    work = tmp_path / "work"
    work.mkdir()
    s = client.create_script()
    client.api("PATCH", "/api/scripts/" + s["id"], {
        "content": '#!/bin/bash\n#SBATCH --chdir="%s"\n#SBATCH --output=job.out\necho done\n' % work})
    job = client.wait_job(client.submit(s["id"])["id"])
    assert job["state"] == "COMPLETED"
    return s, job, os.fsencode(str(work))


def content_of(raw):
    return b"content of " + raw


def test_text_forms_of_names_round_trip():
    for raw, text in NAMES:
        name = os.fsdecode(raw)
        assert flightjobd.name_text(name) == text
        assert os.fsencode(flightjobd.name_path(text)) == raw
    for text in ("a\\x00b", "a\\x2fb", "a\\xFFb", "a\\x", "\\\\x41"):  # nothing an escape of ours: as it is
        assert flightjobd.name_path(text) == text


def test_any_name_in_results_is_listed_shown_and_downloadable(client, tmp_path):
    script, job, work = finished_job(client, tmp_path)
    jid = job["id"]
    for raw, _ in NAMES:
        with open(os.path.join(work, raw), "wb") as f:
            f.write(content_of(raw))
    os.mkdir(os.path.join(work, b"dir\xff"))
    with open(os.path.join(work, b"dir\xff", b"in\xfe\x01.txt"), "wb") as f:
        f.write(b"inside")
    listing = client.api("GET", "/api/jobs/%s/files" % jid).json
    listed = {f["name"]: f for f in listing["files"]}
    for raw, text in NAMES:
        assert listed[text]["path"] == text and listed[text]["size"] == len(content_of(raw))
        r = client.api("GET", "/api/jobs/%s/files/%s" % (jid, urllib.parse.quote(text)), status=200)
        assert r.body == content_of(raw)
        assert r.headers["Content-Disposition"] == "attachment; filename*=UTF-8''" + urllib.parse.quote(text)
        tail = client.api("GET", "/api/jobs/%s/files/%s?tail=4" % (jid, urllib.parse.quote(text)), status=200)
        assert tail.body == content_of(raw)[-4:]
    assert listed["dir\\xff"]["type"] == "dir"
    inside = client.api("GET", "/api/jobs/%s/files/dir%%5Cxff?list=1" % jid).json["files"]
    assert [(f["name"], f["path"]) for f in inside] == [("in\\xfe\\x01.txt", "dir\\xff/in\\xfe\\x01.txt")]
    # the job page: each name shown as its text, escaped for HTML, and every link it gives leads there
    page = client.web.get("/jobs/" + jid)
    for _, text in NAMES:
        assert text in page.html.get_text()
    links = {a["href"] for a in page.html.select("a[href]") if a["href"].startswith(("/jobs/%s/files/" % jid,
                                                                                     "/jobs/%s/download/" % jid))}
    assert len(links) == 2 * (len(NAMES) + 1) + 1  # view and download for each file and job.out, view for dir
    shown = dict((text, raw) for raw, text in NAMES)
    for href in links:
        r = client.web.get(href, status=200)
        raw = shown.get(urllib.parse.unquote(href.rsplit("/", 1)[1]))
        if raw is None:  # job.out, dir
            continue
        if "/download/" in href:
            assert r.body == content_of(raw)
        else:  # the file's own page, its text shown
            assert content_of(raw).decode("utf-8", "replace") in r.html.get_text()
    view = client.web.get("/jobs/%s/files/dir%%5Cxff" % jid)
    assert "in\\xfe\\x01.txt" in view.html.get_text()
    assert client.web.get("/jobs/%s/download/dir%%5Cxff/in%%5Cxfe%%5Cx01.txt" % jid).body == b"inside"
    # escapes of nothing of ours, and what no name can be, are only missing files
    for path in ("a%5Cx00b", "..%5Cx2f..%5Cx2fetc%5Cx2fpasswd", "%5CxFF%5CxFE.txt"):
        client.api("GET", "/api/jobs/%s/files/%s" % (jid, path), status=404)
        client.web.get("/jobs/%s/files/%s" % (jid, path), status=404)


def test_text_that_is_no_text_in_a_users_files_is_shown_replaced(client, tmp_path):
    script, job, work = finished_job(client, tmp_path)
    state = tmp_path / "state"
    meta_path = state / "scripts" / script["id"] / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta.update(name="bad \ud800 name \x1b[31m", answers=dict(meta["answers"], job_name="\udcff\x07"))
    meta_path.write_text(json.dumps(meta))  # as a hand edit may leave it: lone surrogates, escaped
    bodies = flightjobd.script_bodies(meta)  # the files meta.json names
    (state / "scripts" / script["id"] / bodies["notes"]).write_bytes(b"notes \xff\xfe \x1b end")
    (state / "scripts" / script["id"] / bodies["content"]).write_bytes(b"#!/bin/bash\necho \xff\xc3\n")
    job_meta_path = state / "jobs" / job["id"] / "meta.json"
    job_meta = json.loads(job_meta_path.read_text())
    job_meta.update(script_name="job of \udfff", stdout_path=os.fsdecode(work + b"/out\xff.txt"),
                    answers={"time": "\ud800"})
    job_meta_path.write_text(json.dumps(job_meta))
    with open(work + b"/out\xff.txt", "wb") as f:
        f.write(b"output \xff\n")
    sid, jid = script["id"], job["id"]
    for path in ("/scripts", "/scripts/" + sid, "/scripts/%s?edit=content" % sid, "/scripts/%s?edit=notes" % sid,
                 "/scripts/%s?edit=name" % sid, "/scripts/%s/submit" % sid, "/scripts/%s/delete" % sid,
                 "/jobs", "/jobs/" + jid, "/jobs/%s/cancel" % jid, "/jobs/%s/remove" % jid):
        page = client.web.get(path, status=200)
        assert "\ud800" not in page.text and "\udfff" not in page.text, path
    assert "bad \ufffd name" in client.web.get("/scripts/" + sid).text
    assert "notes \ufffd\ufffd" in client.web.get("/scripts/" + sid).text
    job_page = client.web.get("/jobs/" + jid).html.get_text()
    assert "job of \ufffd" in job_page and "out\\xff.txt" in job_page and "output \ufffd" in job_page
    for path in ("/api/scripts", "/api/scripts/" + sid, "/api/jobs", "/api/jobs/" + jid):
        client.api("GET", path, status=200)
    got = client.api("GET", "/api/scripts/" + sid).json
    assert got["notes"] == "notes \ufffd\ufffd \x1b end" and got["content"] == "#!/bin/bash\necho \ufffd\ufffd\n"
    assert client.api("GET", "/api/jobs/" + jid).json["stdout_path"].endswith("/out\\xff.txt")


def test_what_a_client_sends_that_is_no_text_is_refused(client):
    sid = client.create_script()["id"]
    for body in (b'{"template": "serial", "name": "\\ud800"}', b'{"template": "serial", "name": "\xff"}'):
        r = client.web.post("/api/scripts", body, headers={"X-CSRF-Token": client.csrf,
                                                           "Content-Type": "application/json"}, status=400)
        assert r.json["error"]["code"] == "bad_request"
    client.api("POST", "/api/jobs", {"script": sid, "answers": {"time": "\ud800"}}, status=400)
    for fields in ({"field": "name", "text": b"\xed\xa0\x80"}, {"field": "notes", "text": b"\xff"}):
        page = client.web.post("/scripts/%s/edit" % sid, dict(fields, csrf=client.csrf), status=400)
        assert "not valid UTF-8" in page.text


def test_metadata_of_any_shape_is_a_broken_item_never_a_500(client, tmp_path):
    """A meta.json edited by hand may hold anything in any field: a value
    of another shape than the field's (SCRIPT_META, JOB_META) makes the item
    a 409 naming the field (a script: listed as broken), never a 500; a value
    of the field's shape is shown as it is. Every field of a record is in
    the table (the id is the directory's, whatever the file says), and each
    refuses at least one of the six values: the table cannot leave one out."""
    script, job, _ = finished_job(client, tmp_path)
    for kind, item, pages, shapes in (
            ("scripts", script["id"], ["/scripts", "/scripts/{}", "/scripts/{}/submit", "/scripts/{}/delete",
                                       "/api/scripts", "/api/scripts/{}", "/api/scripts/{}/submission"],
             dict(flightjobd.SCRIPT_META, content_file=lambda v: False, notes_file=lambda v: False)),
            ("jobs", job["id"], ["/jobs", "/jobs/{}", "/jobs/{}/remove", "/api/jobs", "/api/jobs/{}",
                                 "/api/jobs/{}/files", "/api/jobs/{}/output/stdout"], flightjobd.JOB_META)):
        path = tmp_path / "state" / kind / item / "meta.json"
        good = json.loads(path.read_text())
        assert set(good) - {"format", "id"} <= set(shapes), set(good) - set(shapes)
        for key in sorted(set(good) - {"format"}):
            refused = 0
            for bad in ("garbage", -5, None, [1], {"a": 1}, True):
                path.write_text(json.dumps(dict(good, **{key: bad})))
                for page in pages:
                    r = client.web.get(page.format(item), expect_errors=True)
                    assert r.status_int < 500, (key, bad, page, r.status_int)
                r = client.api("GET", "/api/%s/%s" % (kind, item), expect_errors=True)
                if key == "id" or shapes[key](bad):
                    assert r.status_int == 200 and r.json["id"] == item, (key, bad, r.status_int)
                    assert key == "id" or r.json.get(key, bad) == bad or key.endswith("_file"), (key, bad, r.json)
                    continue
                refused += 1
                assert r.status_int == 409, (key, bad, r.status_int)  # the field named
                assert "meta.json: %s is not what this version reads" % key in r.json["error"]["message"], r.json
                if kind == "scripts":  # in the script list, that item alone broken
                    assert [s["reason"] for s in client.api("GET", "/api/scripts").json["scripts"]] == [
                        "meta.json: %s is not what this version reads" % key]
            assert key == "id" or refused, "%s: no value of the six was refused" % key
        path.write_text(json.dumps(good))
        assert client.api("GET", "/api/%s/%s" % (kind, item)).json["id"] == item
