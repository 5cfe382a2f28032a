"""The job list that scales (issue 16 item 4): search, filters, sorts and
paging of the jobs list (and search and sort of the scripts list) in the
pages and the API, the job index in the state directory (a corrupt one is
rebuilt), and bulk cancel / remove with one confirmation. Through the real
app in multi-user mode: real PAM users, their workers, the local scheduler."""
import json
import os
import time

import pytest
import webtest

import flightjobd
from support import api_login, state_dir, wait_finished, wait_for

pytestmark = pytest.mark.root

HOUR = 3600
BASE = time.mktime((2024, 5, 10, 12, 0, 0, 0, 0, 0)) - time.timezone  # 2024-05-10T12:00:00Z


def iso(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def login(a, user):
    """A TestApp of its own for the user (its own cookies), and its CSRF header."""
    web = webtest.TestApp(a.bottle, extra_environ={"REMOTE_ADDR": "127.0.0.1"})
    return web, api_login(web, user)


def write_record(user, n, name, script, scheduler_id, state, submitted, ended=None):
    """A finished job's record as the worker writes it (made by the daemon's
    own constructor, new_job_record, then ended), owned by the user; its id
    sorts as its submission time does (new_id's)."""
    jid = "%s-%06d" % (time.strftime("%Y%m%d-%H%M%S", time.gmtime(submitted)), n)
    d = os.path.join(state_dir(user), "jobs", jid)
    os.makedirs(d, 0o700)
    plan = {"script": {"id": "s-" + script, "name": script}, "answers": {}, "options": [], "ignored_options": []}
    meta = flightjobd.new_job_record(jid, plan, "local", ["run", "script.sh"], iso(submitted))
    meta.update(job_name=name, scheduler_id=scheduler_id, state=state, raw_state=state, reason="None",
                reason_text="", exit_code=0, started_at=iso(submitted + 60), ended_at=iso(ended or submitted + 600),
                results_dir=user.home, updated_at=iso(submitted + 600))
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f)
    with open(os.path.join(d, "script.sh"), "w") as f:
        f.write("#!/bin/bash\necho hi\n")
    for root, dirs, files in os.walk(os.path.join(user.home, ".local")):
        for entry in dirs + files:
            os.lchown(os.path.join(root, entry), user.uid, user.gid)
        os.lchown(root, user.uid, user.gid)
    return jid


# name, script, scheduler id, state, submitted (hours after BASE), ended (hours after BASE)
JOBS = [("alpha-run", "Simulation", "7", "COMPLETED", 0, 50),
        ("beta", "simulation", "12", "FAILED", 24, 30),
        ("Gamma", "Analysis", "100", "CANCELLED", 48, 49),
        ("delta", "analysis", "9_2", "COMPLETED", 72, 73),
        ("epsilon", "Post process", "11", "UNKNOWN", 96, 97)]


@pytest.fixture
def alice_jobs(multi_app, unix_users):
    """(app, alice's TestApp, her CSRF header, alice, {name: job id}) with JOBS as her records."""
    a, _ = multi_app()
    alice = unix_users.create()
    ids = {name: write_record(alice, n, name, script, sid, state, BASE + sub * HOUR, BASE + end * HOUR)
           for n, (name, script, sid, state, sub, end) in enumerate(JOBS)}
    web, h = login(a, alice)
    return a, web, h, alice, ids


def names(listing):
    return [j["job_name"] for j in listing["jobs"]]


def test_search_matches_name_script_scheduler_id_and_state_in_any_case(alice_jobs):
    a, web, h, alice, ids = alice_jobs
    assert names(web.get("/api/jobs").json) == ["epsilon", "delta", "Gamma", "beta", "alpha-run"]
    assert names(web.get("/api/jobs?q=GAMMA").json) == ["Gamma"]  # the job's name
    assert names(web.get("/api/jobs?q=simulation").json) == ["beta", "alpha-run"]  # the script's
    assert names(web.get("/api/jobs?q=9_2").json) == ["delta"]  # the scheduler id
    assert names(web.get("/api/jobs?q=failed").json) == ["beta"]  # the state
    assert names(web.get("/api/jobs?q=nothing-like-it").json) == []
    r = web.get("/api/jobs?q=%20Analysis%20").json  # spaces around are no part of it
    assert names(r) == ["delta", "Gamma"] and r["total"] == 2 and r["query"]["q"] == " Analysis "


def test_state_and_date_filters(alice_jobs):
    a, web, h, alice, ids = alice_jobs
    assert names(web.get("/api/jobs?state=COMPLETED").json) == ["delta", "alpha-run"]
    # submitted 2024-05-10, -11, -12, -13, -14 (UTC): both ends included
    assert names(web.get("/api/jobs?from=2024-05-11&to=2024-05-13").json) == ["delta", "Gamma", "beta"]
    assert names(web.get("/api/jobs?from=2024-05-13").json) == ["epsilon", "delta"]
    assert names(web.get("/api/jobs?to=2024-05-10").json) == ["alpha-run"]
    assert names(web.get("/api/jobs?from=2024-05-11&to=2024-05-13&q=analysis&state=CANCELLED").json) == ["Gamma"]


# equal ones keep newest first both ways
DESCENDING = {"script": ["beta", "alpha-run", "epsilon", "delta", "Gamma"],
              "state": ["epsilon", "beta", "delta", "alpha-run", "Gamma"]}


@pytest.mark.parametrize("sort, ascending", [
    ("job", ["alpha-run", "delta", "epsilon", "beta", "Gamma"]),  # 7, 9_2, 11, 12, 100: as numbers
    ("name", ["alpha-run", "beta", "delta", "epsilon", "Gamma"]),  # any case
    ("script", ["delta", "Gamma", "epsilon", "beta", "alpha-run"]),  # equal ones: newest first
    ("state", ["Gamma", "delta", "alpha-run", "beta", "epsilon"]),
    ("submitted", ["alpha-run", "beta", "Gamma", "delta", "epsilon"]),
    ("started", ["alpha-run", "beta", "Gamma", "delta", "epsilon"]),
    ("ended", ["beta", "Gamma", "alpha-run", "delta", "epsilon"])])
def test_each_sort_both_ways(alice_jobs, sort, ascending):
    a, web, h, alice, ids = alice_jobs
    up = web.get("/api/jobs?sort=%s&order=asc" % sort).json
    assert names(up) == ascending and up["query"]["sort"] == sort and up["query"]["order"] == "asc"
    down = names(web.get("/api/jobs?sort=%s&order=desc" % sort).json)
    assert down == DESCENDING.get(sort, ascending[::-1])
    # with no order: times newest first, the others A to Z
    plain = names(web.get("/api/jobs?sort=" + sort).json)
    assert plain == (down if sort in ("job", "submitted", "started", "ended") else ascending)


def test_paging_with_per_page(alice_jobs):
    a, web, h, alice, ids = alice_jobs
    first = web.get("/api/jobs?per_page=2&sort=name&order=asc").json
    assert names(first) == ["alpha-run", "beta"] and first["total"] == 5 and first["per_page"] == 2
    assert names(web.get("/api/jobs?per_page=2&page=3&sort=name&order=asc").json) == ["Gamma"]
    assert names(web.get("/api/jobs?per_page=2&page=4").json) == []
    # the page: the chosen number per page, links to the next page keeping search and sort
    page = web.get("/jobs?per_page=2&sort=name&order=asc&q=a")
    assert [r["data-job"] for r in page.html.select("tr[data-job]")] == [ids["alpha-run"], ids["beta"]]
    assert page.html.find(id="per_page").find("option", selected=True)["value"] == "2"
    nxt = page.html.find("a", rel="next")["href"]
    assert nxt.startswith("/jobs?") and "q=a" in nxt and "sort=name" in nxt and "page=2" in nxt
    assert [r["data-job"] for r in web.get(nxt).html.select("tr[data-job]")] == [ids["delta"], ids["Gamma"]]


@pytest.mark.parametrize("query, field", [
    ("sort=size", "sort"), ("order=up", "order"), ("from=2024-13-01", "from"), ("to=yesterday", "to"),
    ("from=2024-02-30", "from"), ("from=2024-05-12&to=2024-05-11", "from"), ("per_page=0", "per_page"),
    ("per_page=501", "per_page"), ("per_page=ten", "per_page"), ("page=0", "page"), ("page=-1", "page"),
    ("q=" + "x" * 201, "q"), ("q=a%0Ab", "q"), ("state=BOGUS", "state"), ("q=%FF", "q")])
def test_bad_parameters_are_400_naming_them(alice_jobs, query, field):
    a, web, h, alice, ids = alice_jobs
    r = web.get("/api/jobs?" + query, status=400)
    assert r.json["error"]["code"] == "bad_request" and list(r.json["error"]["fields"]) == [field]
    assert r.json["error"]["message"].startswith(field)
    # the page: the error naming it, what was typed kept, the list as by default
    page = web.get("/jobs?q=beta&" + query, status=400)
    assert page.html.find(id="list-error").text.startswith(field)
    if field != "q":
        assert page.html.find(id="q")["value"] == "beta"
    assert len(page.html.select("tr[data-job]")) == 5
    assert "Traceback" not in page.text


def test_jobs_page_search_form_and_sort_links_without_javascript(alice_jobs):
    a, web, h, alice, ids = alice_jobs
    page = web.get("/jobs")
    form = page.forms["job-search"]
    assert form.method.lower() == "get" and form.action == "/jobs"
    form["q"] = "analysis"
    form["from"] = form["to"] = "2024-05-12"
    found = form.submit()
    assert [r["data-job"] for r in found.html.select("tr[data-job]")] == [ids["Gamma"]]
    assert found.html.find(id="q")["value"] == "analysis" and found.html.find(id="from")["value"] == "2024-05-12"
    # a column's header sorts by it, keeping the search; once more, the other way
    link = found.html.find("a", attrs={"data-sort": "name"})["href"]
    assert "q=analysis" in link and "sort=name" in link and "order" not in link
    by_name = web.get("/jobs?sort=name")
    assert [r["data-job"] for r in by_name.html.select("tr[data-job]")][:2] == [ids["alpha-run"], ids["beta"]]
    th = by_name.html.find("a", attrs={"data-sort": "name"}).parent
    assert th["aria-sort"] == "ascending" and "order=desc" in th.a["href"]
    none = web.get("/jobs?q=%3Cscript%3Ex")  # escaped when shown again
    assert "No jobs match" in none.text and 'value="&lt;script&gt;x"' in none.text
    assert "<script>x" not in none.text


def test_home_lists_unfinished_jobs_then_the_newest_with_counts_and_a_first_step(alice_jobs):
    """The home page (issue 27 item 1): the unfinished jobs first, then the
    newest finished, HOME_JOBS in all; counts of running and pending; the
    free cores of the scheduler's summary; one first step while the user
    has no script, to the templates."""
    a, web, h, alice, ids = alice_jobs
    for n in range(5):  # more finished jobs than the home shows, newer than JOBS
        ids["late%d" % n] = write_record(alice, 10 + n, "late%d" % n, "Later", "20%d" % n, "COMPLETED",
                                         BASE + (200 + n) * HOUR)
    for n, (name, state) in enumerate((("old-run", "RUNNING"), ("old-wait", "PENDING"))):
        jid = write_record(alice, 20 + n, name, "Long", "30%d" % n, state, BASE - (10 - n) * HOUR)
        path = os.path.join(state_dir(alice), "jobs", jid, "meta.json")
        with open(path) as f:
            meta = json.load(f)
        meta.update(scheduler="slurm", ended_at=None, started_at=None if state == "PENDING" else meta["started_at"])
        with open(path, "w") as f:  # a Slurm record: read-only here, so its state stays as written
            json.dump(meta, f)
        ids[name] = jid
    page = web.get("/")
    rows = [r["data-job"] for r in page.html.select("table[data-activity-jobs] tr[data-job]")]
    assert rows == [ids[n] for n in ("old-wait", "old-run", "late4", "late3", "late2", "late1", "late0", "epsilon")]
    assert len(rows) == flightjobd.HOME_JOBS
    counts = page.html.find(id="jobs-counts")
    assert counts.find(attrs={"data-count": "RUNNING"}).text == "1" and counts.find(attrs={"data-count": "PENDING"}).text == "1"
    assert page.html.select(".home-jobs .section-head a")[0].text.strip() == "All 12 jobs"
    assert page.html.select("tr[data-partition=local] [data-field=cores]")[0].text.endswith(" of %d" % os.cpu_count())
    step = page.html.select(".first-step a.button.primary")
    assert [(b.text, b["href"]) for b in step] == [("Create your first job script", "/templates")]
    assert len(page.html.select("main .primary")) == 1  # the one obvious button
    web.post_json("/api/scripts", {"template": "serial", "name": "mine", "answers": {}}, headers=h)
    assert not web.get("/").html.select(".first-step")


def test_scripts_list_search_and_sort(multi_app, unix_users):
    a, _ = multi_app()
    alice = unix_users.create()
    web, h = login(a, alice)
    for name in ("Zebra", "apple", "Mango"):
        web.post_json("/api/scripts", {"template": "serial", "name": name}, headers=h, status=201)
        time.sleep(1.1)  # updated_at is to the second
    listed = lambda q: [s["name"] for s in web.get("/api/scripts?" + q).json["scripts"]]  # noqa: E731
    assert listed("") == ["Mango", "apple", "Zebra"]  # last changed first
    assert listed("sort=name") == ["apple", "Mango", "Zebra"]
    assert listed("sort=name&order=desc") == ["Zebra", "Mango", "apple"]
    assert listed("sort=created&order=asc") == ["Zebra", "apple", "Mango"]
    assert listed("q=AN") == ["Mango"]
    assert listed("q=SERIAL") == ["Mango", "apple", "Zebra"]  # the template's name
    r = web.get("/api/scripts?sort=size", status=400)
    assert list(r.json["error"]["fields"]) == ["sort"]
    page = web.get("/scripts?sort=name&order=desc")
    assert [a.text for a in page.html.select("td.wrap a")] == ["Zebra", "Mango", "apple"]
    page = web.get("/scripts?q=zeb&sort=name")
    assert [a.text for a in page.html.select("td.wrap a")] == ["Zebra"]
    assert page.html.find(id="q")["value"] == "zeb"
    assert "q=zeb" in page.html.find("a", attrs={"data-sort": "created"})["href"]
    bad = web.get("/scripts?q=e&order=sideways", status=400)
    assert bad.html.find(id="list-error").text.startswith("order") and bad.html.find(id="q")["value"] == "e"


# bulk cancel and remove

SLEEPER = "#!/bin/bash\nsleep 300\n"


def running_job(web, h):
    sid = web.post_json("/api/scripts", {"template": "serial", "name": "sleeper"}, headers=h).json["id"]
    web.patch_json("/api/scripts/" + sid, {"content": SLEEPER}, headers=dict(h, **{"If-Match": '"1"'}))
    jid = web.post_json("/api/jobs", {"script": sid, "answers": {}}, headers=h).json["id"]
    wait_for(lambda: web.get("/api/jobs/" + jid).json["state"] == "RUNNING", 60, "job running")
    return jid


def test_bulk_cancel_and_remove_with_one_confirmation_without_javascript(alice_jobs):
    a, web, h, alice, ids = alice_jobs
    one, two = running_job(web, h), running_job(web, h)
    page = web.get("/jobs?state=RUNNING")
    bulk = page.forms["bulk"]
    assert bulk.method.lower() == "get" and bulk.action == "/jobs/bulk"
    boxes = page.html.select('input[type=checkbox][name=id][form=bulk]')
    assert sorted(b["value"] for b in boxes) == sorted([one, two])
    # the selection goes to a page that asks once, naming each job
    confirm = web.get("/jobs/bulk?action=cancel&id=%s&id=%s&id=%s" % (one, two, ids["beta"]))
    items = {li["data-job"]: li.text for li in confirm.html.select("#bulk-confirm li")}
    assert "cannot be cancelled: it has already finished" in items[ids["beta"]]
    assert "cannot" not in items[one] and "cannot" not in items[two]
    assert web.get("/api/jobs/" + one).json["state"] == "RUNNING"  # asking changed nothing
    form = [f for f in confirm.forms.values() if f.action == "/jobs/bulk"][0]
    assert form.method.lower() == "post" and form["csrf"].value
    assert sorted(f.value for f in form.fields["id"]) == sorted([one, two])
    done = form.submit()
    assert "2 of 2 jobs cancelled." in done.text
    for jid in (one, two):
        assert wait_finished(web, jid)["state"] == "CANCELLED"
    # remove: the finished go, the record of one not finished stays, said why
    three = running_job(web, h)
    output = web.get("/api/jobs/" + one).json["stdout_path"]
    assert os.path.exists(output)
    r = web.post_json("/api/jobs/bulk", {"action": "remove", "ids": [one, ids["beta"], three, ids["beta"]]},
                      headers=h).json
    outcome = {j["id"]: (j["done"], j["why"]) for j in r["jobs"]}
    assert len(r["jobs"]) == 3 and outcome[one] == (True, None) and outcome[ids["beta"]] == (True, None)
    assert outcome[three] == (False, "it has not finished: cancel it first, or wait")
    listed = {j["id"] for j in web.get("/api/jobs?per_page=500").json["jobs"]}
    assert one not in listed and ids["beta"] not in listed and three in listed and two in listed
    assert os.path.exists(output)  # results are never touched
    r = web.post_json("/api/jobs/bulk", {"action": "cancel", "ids": [three]}, headers=h).json
    assert r["jobs"][0]["done"] is True
    wait_finished(web, three)


def test_bulk_needs_csrf_and_is_bounded(alice_jobs):
    a, web, h, alice, ids = alice_jobs
    web.post("/jobs/bulk", {"action": "remove", "id": ids["beta"]}, status=403)
    web.post_json("/api/jobs/bulk", {"action": "remove", "ids": [ids["beta"]]}, status=403)
    web.post_json("/api/jobs/bulk", {"action": "remove", "ids": [ids["beta"]]},
                  headers={"X-CSRF-Token": "forged"}, status=403)
    assert web.get("/api/jobs/" + ids["beta"]).json["state"] == "FAILED"  # still there
    many = ["x%03d" % i for i in range(flightjobd.BULK_IDS + 1)]
    r = web.post_json("/api/jobs/bulk", {"action": "remove", "ids": many}, headers=h, status=400)
    assert list(r.json["error"]["fields"]) == ["id"]
    web.get("/jobs/bulk?action=remove&" + "&".join("id=" + i for i in many), status=400)
    for body in ({"action": "delete", "ids": [ids["beta"]]}, {"action": "remove", "ids": []},
                 {"action": "remove", "ids": "all"}, {"action": "remove", "ids": [1]}):
        web.post_json("/api/jobs/bulk", body, headers=h, status=400)
    web.get("/jobs/bulk?action=remove", status=400)  # nothing selected
    assert web.get("/api/jobs").json["total"] == 5


def test_bulk_refuses_another_users_ids_and_bad_ids_job_by_job(alice_jobs, unix_users):
    a, web, h, alice, ids = alice_jobs
    bob = unix_users.create()
    bobs = write_record(bob, 1, "bobs", "bobs script", "55", "COMPLETED", BASE)
    web_bob, h_bob = login(a, bob)
    assert web_bob.get("/api/jobs").json["total"] == 1
    r = web.post_json("/api/jobs/bulk", {"action": "remove", "ids": [bobs, "../" + bobs, ids["delta"]]},
                      headers=h).json
    outcome = {j["id"]: (j["done"], j["why"]) for j in r["jobs"]}
    assert outcome[bobs] == (False, "No such job.") and outcome["../" + bobs] == (False, "No such job.")
    assert outcome[ids["delta"]] == (True, None)
    assert [j["id"] for j in web_bob.get("/api/jobs").json["jobs"]] == [bobs]
    assert os.path.isdir(os.path.join(state_dir(bob), "jobs", bobs))
    page = web.get("/jobs/bulk?action=cancel&id=" + bobs)
    assert "None of the selected jobs can be cancelled" in page.text and page.html.find("form", action="/jobs/bulk") is None


# the index

def index_path(user):
    return os.path.join(state_dir(user), flightjobd.INDEX_FILE)


def read_index(user):
    """(the header, {job id: row}) of the user's job index (JSON, a line each)."""
    with open(index_path(user)) as f:
        lines = [json.loads(line) for line in f]
    return lines[0], {line[0]: line[1:] for line in lines[1:]}


def index_text(header, rows):
    return "\n".join([json.dumps(header)] + [json.dumps([job_id] + row) for job_id, row in rows.items()]) + "\n"


@pytest.mark.parametrize("row", [
    ("COMPLETED", "simulation", "simulation", "1234", "completed", 1715342400, 1715342460, 1715343000,
     1715343000123456789, 837),
    ("FAILED", "café ☃", "analysis", "9_2", "timeout", None, None, None, 0, 0),
    ("UNKNOWN", "bad-\udcff-bytes", "", "", "", -86400, None, 2 ** 62, -5, 2 ** 63 - 1),
    ("CANCELLED", "", "x" * 70000, "4294967295_12", "cancelled", 0, 0, 0, -2 ** 63, 1)])
def test_a_packed_row_reads_back_as_the_row_it_was_made_from(row):
    """What the worker keeps of a finished job (PackedRow) gives back every
    field of its JobRow, odd names, no times and the extremes included."""
    row = flightjobd.JobRow(*row)
    packed = flightjobd.PackedRow.pack(row)
    assert packed.unpacked() == row
    assert [getattr(packed, field) for field in row._fields] == list(row)
    assert flightjobd.PackedRow.pack(row) == packed and len(packed) < 100 + sum(map(len, row[1:5])) * 3
    # the search looks in each text alone: never across the end of one and the start of the next
    texts = row[1:5]
    probes = {t[i:i + 3] for t in texts for i in range(min(len(t), 40))} | {"zzz", "a9", "l9", "ne9"}
    probes |= {a[-2:] + b[:2] for a in texts for b in texts if a and b}
    for probe in probes:
        expected = any(probe in t for t in texts)
        assert flightjobd.row_has(packed, probe, probe.encode("utf-8", "surrogatepass")) == expected, probe
        assert flightjobd.row_has(row, probe, probe.encode("utf-8", "surrogatepass")) == expected, probe


def test_a_record_stamped_past_2262_is_listed_shown_and_removed(alice_jobs, multi_app):
    """A meta.json whose mtime is past what 64 bits of nanoseconds hold (a
    restored backup, a clock gone wrong; ext4 takes dates to 2446) is one
    job like any other: it was a 500 on every list (red team)."""
    a, web, h, alice, ids = alice_jobs
    path = os.path.join(state_dir(alice), "jobs", ids["beta"], "meta.json")
    os.utime(path, ns=(10 ** 19, 10 ** 19))  # 2286-11-20
    assert os.stat(path).st_mtime_ns == 10 ** 19
    fresh, _ = multi_app()  # a fresh worker reads every record
    web1, h1 = login(fresh, alice)
    assert sorted(j["id"] for j in web1.get("/api/jobs").json["jobs"]) == sorted(ids.values())
    assert names(web1.get("/api/jobs?q=beta").json) == ["beta"]
    assert web1.get("/jobs?q=beta").status_int == 200
    assert web1.get("/api/jobs/%s" % ids["beta"]).json["job_name"] == "beta"
    assert web1.delete("/api/jobs/%s" % ids["beta"], headers=h1).status_int == 204
    assert sorted(j["id"] for j in web1.get("/api/jobs").json["jobs"]) == sorted(
        i for name, i in ids.items() if name != "beta")


def test_index_is_written_and_a_corrupt_one_rebuilt(alice_jobs, multi_app, caplog):
    caplog.set_level("INFO", logger="flightjobd")
    a, web, h, alice, ids = alice_jobs
    expected = web.get("/api/jobs?sort=name").json["jobs"]
    header, rows = read_index(alice)
    assert header == {"format": flightjobd.INDEX_FORMAT} and sorted(rows) == sorted(ids.values())
    assert os.stat(index_path(alice)).st_uid == alice.uid
    assert rows[ids["Gamma"]][:5] == ["CANCELLED", "gamma", "analysis", "cancelled", "100"]
    # a fresh worker uses the rows whose record has not changed since: it does not read the record
    trusted = dict(rows, **{ids["beta"]: ["FAILED", "only-in-the-index"] + rows[ids["beta"]][2:]})
    with open(index_path(alice), "w") as f:
        f.write(index_text(header, trusted))
    fresh, _ = multi_app()
    web1, _ = login(fresh, alice)
    assert [j["id"] for j in web1.get("/api/jobs?q=only-in-the-index").json["jobs"]] == [ids["beta"]]
    # one whose record changed (its mtime differs) is read again; a file that cannot be used is made again
    stale = dict(rows, **{ids["beta"]: ["FAILED", "renamed"] + rows[ids["beta"]][2:6] + [rows[ids["beta"]][7] + 1,
                                                                                          rows[ids["beta"]][8]]})
    bad_row = ["RUNNING", "", "", "", None, None, None, 0, 0]
    for corrupt in ("not json{", "", "[]", "\xff\xfe", index_text({"format": 99}, rows), index_text(header, stale),
                    index_text(header, dict(rows, **{ids["beta"]: bad_row})),
                    index_text(header, dict(rows, **{ids["beta"]: rows[ids["beta"]][:5]})),
                    index_text(header, dict(rows, **{"../x": rows[ids["beta"]]})),
                    # integers a row cannot hold (a time, the record's mtime or size past 64 bits)
                    index_text(header, dict(rows, **{ids["beta"]: rows[ids["beta"]][:4] + [2 ** 70]
                                                     + rows[ids["beta"]][5:]})),
                    index_text(header, dict(rows, **{ids["beta"]: rows[ids["beta"]][:7] + [-2 ** 64]
                                                     + rows[ids["beta"]][8:]})),
                    index_text(header, dict(rows, **{ids["beta"]: rows[ids["beta"]][:8] + [2 ** 63]})),
                    index_text(header, rows) + "\n\n" + "x" * 100):
        with open(index_path(alice), "w", encoding="latin-1") as f:
            f.write(corrupt)
        fresh, _ = multi_app()  # a fresh worker reads it
        web2, h2 = login(fresh, alice)
        assert web2.get("/api/jobs?sort=name").json["jobs"] == expected, corrupt
        assert names(web2.get("/api/jobs?q=beta").json) == ["beta"]
        assert read_index(alice) == (header, rows), corrupt
    # a record changed by hand after it was indexed: the fresh worker reads the record
    meta_path = os.path.join(state_dir(alice), "jobs", ids["beta"], "meta.json")
    meta = json.load(open(meta_path))
    meta.update(job_name="beta-renamed", state="COMPLETED")
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    fresh, _ = multi_app()
    web3, _ = login(fresh, alice)
    assert names(web3.get("/api/jobs?q=renamed").json) == ["beta-renamed"]
    assert names(web3.get("/api/jobs?state=FAILED").json) == []
    assert read_index(alice)[1][ids["beta"]][:2] == ["COMPLETED", "beta-renamed"]
    # a directory where the index goes, or an unwritable one: the list is served all the same
    caplog.clear()
    os.unlink(index_path(alice))
    os.mkdir(index_path(alice))
    fresh2, _ = multi_app()
    web4, _ = login(fresh2, alice)
    assert web4.get("/api/jobs").json["total"] == 5
    assert web4.get("/jobs").status_int == 200
    # and only logged: the worker's warning, in root's log under the user's name
    wait_for(lambda: [r for r in caplog.records if r.getMessage().startswith("worker of %s: " % alice.name)
                      and "the job index could not be written" in r.getMessage()], 10, "the warning in the log")


# the columns a user chooses (issue 27 item 3)

def column_heads(page):
    """{column: shown} of the list's table, from its header."""
    return {th["data-col"]: not th.has_attr("hidden") for th in page.html.select("table.list thead th[data-col]")}


def test_the_columns_chosen_are_kept_for_the_user_across_logins_and_without_javascript(alice_jobs, unix_users):
    a, web, h, alice, ids = alice_jobs
    page = web.get("/jobs?q=a&per_page=25")
    heads = column_heads(page)
    assert heads["raw"] is heads["partition"] is heads["nodes"] is False and heads["reason"] and heads["name"]
    cells = page.html.select("tr[data-job] td[data-col=raw]")
    assert cells and all(td.has_attr("hidden") for td in cells)  # every row's cell hides with its heading
    # the form, as a browser without JavaScript sends it: the boxes ticked are the columns shown
    form = page.forms["columns"]
    assert form.method.lower() == "post" and form.action == "/jobs/columns"
    for box in form.fields["column"]:
        box.checked = box._value in ("raw", "partition", "nodes", "elapsed")
    done = form.submit(status=303)
    assert done.headers["Location"].endswith("/jobs?q=a&per_page=25")  # the list it was chosen on
    kept = os.path.join(state_dir(alice), flightjobd.SETTINGS_FILE)
    assert os.stat(kept).st_uid == alice.uid  # in her home, written as her
    assert json.load(open(kept))["job_columns"] == ["raw", "partition", "nodes", "elapsed"]
    # a new login (another browser, no cookie of the old one) shows the same columns
    again, _ = login(a, alice)
    heads = column_heads(again.get("/jobs"))
    assert [c for c, shown in heads.items() if shown] == ["select", "job", "state", "raw", "partition", "nodes",
                                                          "elapsed"]
    assert again.get("/api/jobs").json["columns"] == ["raw", "partition", "nodes", "elapsed"]
    row = again.get("/jobs").html.select_one("tr[data-job='%s']" % ids["beta"])
    assert row.select_one("td[data-col=raw]").text == "FAILED" and not row.select_one("td[data-col=raw]").has_attr("hidden")
    # another user's are their own
    bob = unix_users.create()
    write_record(bob, 1, "bobs", "bobs script", "55", "COMPLETED", BASE)
    web_bob, h_bob = login(a, bob)
    assert not column_heads(web_bob.get("/jobs"))["raw"]
    # the API: known columns only, named when not; with the CSRF token only
    r = web.post_json("/api/jobs/columns", {"columns": ["raw", "shoe size"]}, headers=h, status=422)
    assert "shoe size" in r.json["error"]["message"] and list(r.json["error"]["fields"]) == ["columns"]
    web.post_json("/api/jobs/columns", {"columns": "raw"}, headers=h, status=422)
    web.post_json("/api/jobs/columns", {"columns": ["name"]}, status=403)
    web.post("/jobs/columns", {"column": "name"}, status=403)
    assert web.post_json("/api/jobs/columns", {"columns": ["time", "name", "name"]}, headers=h).json == {
        "columns": ["name", "time"]}
    assert web.get("/api/jobs").json["columns"] == ["name", "time"]
    # a settings file made unusable by hand: the defaults, never an error
    with open(kept, "w") as f:
        f.write('{"job_columns": ["../../etc"]}')
    assert web.get("/api/jobs").json["columns"] == [c for c, (_, on) in flightjobd.JOB_COLUMNS.items() if on]


def test_select_all_and_bulk_hold_then_release_job_by_job(alice_jobs):
    """The header's box (all=1) takes every job of the page without
    JavaScript; bulk hold holds the waiting ones and says of each other job
    why not; bulk release lets them go."""
    a, web, h, alice, ids = alice_jobs
    first = running_job(web, h)
    sid = web.get("/api/jobs/" + first).json["script_id"]
    waiting = [web.post_json("/api/jobs", {"script": sid, "answers": {}, "after": {"job": first}}, headers=h).json["id"]
               for _ in range(2)]
    for jid in waiting:
        wait_for(lambda: web.get("/api/jobs/" + jid).json["reason"] == "Dependency", 30, "waiting on the first")
    page = web.get("/jobs?state=PENDING")
    head = page.html.select_one("thead input#select-all")
    assert head["name"] == "all" and head["form"] == "bulk" and head["aria-label"]
    assert sorted(i["value"] for i in page.html.select("form#bulk input[name=page_id]")) == sorted(waiting)
    reasons = [td.text for td in page.html.select("tr[data-job] td[data-field=reason_text]")]
    assert reasons and all("waiting for" in r for r in reasons), reasons
    # all=1 with the page's ids, and one more job named: the page's jobs
    confirm = web.get("/jobs/bulk?action=hold&all=1&%s&id=%s" % ("&".join("page_id=" + i for i in waiting + [first]),
                                                                 ids["beta"]))
    items = {li["data-job"]: li.text for li in confirm.html.select("#bulk-confirm li")}
    assert set(items) == set(waiting + [first])
    assert "cannot be held: it has already started" in items[first]
    form = [f for f in confirm.forms.values() if f.action == "/jobs/bulk"][0]
    assert sorted(f.value for f in form.fields["id"]) == sorted(waiting)
    done = form.submit()
    assert "2 of 2 jobs held." in done.text
    for jid in waiting:
        job = web.get("/api/jobs/" + jid).json
        assert job["held"] and job["reason_text"] == "held by the user", job
    # release by the API: a job not held, or finished, is said why, the others go on
    r = web.post_json("/api/jobs/bulk", {"action": "release", "ids": waiting + [ids["beta"], first]}, headers=h).json
    outcome = {j["id"]: (j["done"], j["why"]) for j in r["jobs"]}
    assert outcome[waiting[0]] == outcome[waiting[1]] == (True, None)
    assert outcome[ids["beta"]] == (False, "it has already finished")
    assert outcome[first] == (False, "it has already started: only a waiting job can be released")
    for jid in waiting:
        assert not web.get("/api/jobs/" + jid).json["held"]
    hold_again = web.post_json("/api/jobs/bulk", {"action": "hold", "ids": waiting[:1]}, headers=h).json["jobs"]
    assert hold_again[0]["done"]
    assert web.post_json("/api/jobs/bulk", {"action": "hold", "ids": waiting[:1]}, headers=h).json["jobs"][0]["why"] \
        == "it is already held"
    web.post_json("/api/jobs/bulk", {"action": "cancel", "ids": waiting + [first]}, headers=h)
