"""Templates, questions and scripts, through the real app and worker."""
import json
import os
import re
import subprocess

import pytest

import flightjobd
from support import ROOT

TEMPLATES = sorted(os.listdir(os.path.join(ROOT, "share", "job-templates")))
XSS = '<script>alert("x")</script>'


# questions


def q(kind, **kw):
    return dict({"id": "x", "text": "Thing", "description": "d", "type": kind, "default": ""}, **kw)


@pytest.mark.parametrize("question, good, bad, words", [
    (q("text", pattern="^[a-z]+$", pattern_error="lowercase letters only"), "abc", "ABC", "lowercase letters only"),
    (q("text"), "any thing", "two\nlines", "one line"),
    (q("multiline"), "two\nlines", "nul\x00", "control characters"),
    (q("integer", min=1, max=10), "7", "11", "at most 10"),
    (q("integer", min=1, max=10), 3, "2.5", "whole number"),
    (q("integer"), "-4", True, "number"),
    (q("number", min=0), "2.5", "-1", "at least 0"),
    (q("number"), 1e3, "nan", "enter a number"),
    (q("select", options=[{"value": "a", "label": "A"}]), "a", "b", "not one of the choices"),
    (q("multiselect", options=[{"value": "a", "label": "A"}, {"value": "b", "label": "B"}]), ["b", "a"], ["c"], "not one of the choices"),
    (q("boolean"), "true", "maybe", "answer yes or no"),
    (q("time"), "1-02:03:04", "1:2:3:4", "use D-HH:MM:SS, HH:MM:SS or minutes"),
    (q("time"), "90", "25:00:99", "use D-HH:MM:SS"),
    (q("email"), "a@b.org", "not-an-email", "email address"),
    (q("path"), "~/run dir", "bad\x07path", "one line"),
    (q("text", required=True), "x", "", "an answer is required"),
])
def test_question_types_accept_and_refuse(question, good, bad, words):
    flightjobd.convert_answer(question, good, "/home/u")
    with pytest.raises(ValueError) as e:
        flightjobd.convert_answer(question, bad, "/home/u")
    assert words in str(e.value)


def test_typed_values_and_paths():
    c = flightjobd.convert_answer
    assert c(q("integer"), "42", "/h") == 42
    assert c(q("boolean"), "on", "/h") is True
    assert c(q("multiselect", options=[{"value": "a", "label": "A"}, {"value": "b", "label": "B"}]), ["b", "a"], "/h") == ["a", "b"]
    assert c(q("path"), "~", "/home/u") == "/home/u"
    assert c(q("path"), "~/x/../y", "/home/u") == "/home/u/y"
    assert c(q("path"), "rel dir", "/home/u") == "/home/u/rel dir"
    assert flightjobd.time_limit_seconds("1-00:00:00") == 86400
    assert flightjobd.time_limit_seconds("2:30") == 150
    assert flightjobd.time_limit_seconds("5") == 300


def test_error_message_names_the_question():
    with pytest.raises(flightjobd.Invalid) as e:
        flightjobd.check_answers([q("time", text="Time limit")], {"x": "soon"}, "/h")
    assert e.value.fields == {"x": "Time limit: use D-HH:MM:SS, HH:MM:SS or minutes"}


def test_ask_when_hides_and_shows():
    qs = [q("boolean", id="notify", default=False),
          q("email", id="email", required=True, ask_when={"question": "notify", "equals": True}),
          q("select", id="kind", default="a", options=[{"value": v, "label": v} for v in "abc"]),
          q("text", id="extra", ask_when={"question": "kind", "one_of": ["b", "c"]})]
    assert flightjobd.visible_questions(qs, None) == {"notify", "kind"}
    assert flightjobd.visible_questions(qs, {"notify": "true", "kind": "c"}) == {"notify", "email", "kind", "extra"}
    # a hidden required question needs no answer; a shown one does
    flightjobd.check_answers(qs, {"notify": False}, "/h")
    with pytest.raises(flightjobd.Invalid) as e:
        flightjobd.check_answers(qs, {"notify": True}, "/h")
    assert list(e.value.fields) == ["email"]


# templates


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_renders_with_defaults_and_passes_bash_n(client, template):
    script = client.create_script(template, name="defaults")
    r = subprocess.run(["bash", "-n"], input=script["content"], text=True, capture_output=True)
    assert r.returncode == 0, r.stderr
    assert "#SBATCH" in script["content"]


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_handles_odd_answers(client, template, tmp_path):
    odd = str(tmp_path / 'my "odd" dir\'s')
    t = client.api("GET", "/api/templates/" + template).json
    ids = {x["id"] for x in t["questions"]}
    answers = {"working_dir": odd, "notify": True, "email": "me@example.org", "merge_output": False}
    answers = {k: v for k, v in answers.items() if k in ids}
    script = client.create_script(template, answers=answers)
    assert subprocess.run(["bash", "-n"], input=script["content"], text=True).returncode == 0
    assert dict(flightjobd.parse_directives(script["content"]))["chdir"] == odd


def write_template(base, tid, toml, script="#!/bin/bash\necho hi\n"):
    d = base / tid
    d.mkdir(parents=True)
    (d / "template.toml").write_text(toml)
    (d / "script.sh").write_text(script)


GOOD = 'name = "Mine"\nsynopsis = "s"\ndescription = "d"\n'


@pytest.mark.parametrize("toml, script, reason", [
    ("name = [", "#!/bin/bash\n", "not valid TOML"),
    (GOOD + "colour = 1\n", "#!/bin/bash\n", "unknown field colour"),
    (GOOD + '[[question]]\nid = "a"\ntext = "A"\ndescription = "d"\ntype = "colour"\ndefault = ""\n', "x", "unknown type"),
    (GOOD + '[[question]]\nid = "a"\ntext = "A"\ndescription = "d"\ntype = "text"\ndefault = ""\n'
     'ask_when = { question = "b", equals = "x" }\n', "x", "earlier question"),
    (GOOD + '[[question]]\nid = "a"\ntext = "A"\ndescription = "d"\ntype = "text"\n', "x", "default is missing"),
    (GOOD, "{{nosuchanswer}}", "does not render with the defaults"),
])
def test_broken_template_is_left_out_and_reported(make_app, tmp_path, toml, script, reason):
    client = make_app()
    write_template(tmp_path / "user-templates", "broken", toml, script)
    write_template(tmp_path / "user-templates", "fine", GOOD)
    listing = client.api("GET", "/api/templates").json
    ids = [t["id"] for t in listing["templates"]]
    assert "fine" in ids and "broken" not in ids and "serial" in ids
    assert [p["id"] for p in listing["problems"]] == ["broken"]
    assert reason in listing["problems"][0]["error"]
    page = client.web.get("/templates")
    assert "broken" in page.text and reason.split()[0] in page.text
    client.api("GET", "/api/templates/broken", status=404)


def test_later_template_directory_wins(make_app, tmp_path):
    client = make_app()
    write_template(tmp_path / "site-templates", "serial", GOOD.replace("Mine", "Site serial"))
    assert client.api("GET", "/api/templates/serial").json["name"] == "Site serial"
    write_template(tmp_path / "user-templates", "serial", GOOD.replace("Mine", "My serial"))
    assert client.api("GET", "/api/templates/serial").json["source"] == "user"


def test_template_code_runs_in_the_worker_not_the_daemon(make_app, tmp_path):
    client = make_app()
    write_template(tmp_path / "user-templates", "sneaky", GOOD,
                   "% import os\n#!/bin/bash\n# {{os.getpid()}}\n")
    content = client.create_script("sneaky")["content"]
    assert int(content.split("# ")[1]) == client.app.pool.pids()[client.app.daemon_user] != os.getpid()


# scripts through the API


def test_create_list_view_edit_delete_api(client):
    assert client.api("GET", "/api/scripts").json["scripts"] == []
    s = client.create_script("serial", name="Ünïcode 'quotes' ../../etc", notes="first notes")
    assert s["name"] == "Ünïcode 'quotes' ../../etc" and s["notes"] == "first notes"
    assert flightjobd.ID_RE.match(s["id"])
    listed = client.api("GET", "/api/scripts").json["scripts"]
    assert [x["id"] for x in listed] == [s["id"]] and "content" not in listed[0]
    got = client.api("GET", "/api/scripts/" + s["id"])
    assert got.headers["ETag"] == s["etag"] == '"1"'
    r = client.api("PATCH", "/api/scripts/" + s["id"], {"content": "#!/bin/bash\necho edited\n"},
                   headers={"If-Match": s["etag"]})
    assert r.json["content"] == "#!/bin/bash\necho edited\n" and r.json["etag"] == '"2"'
    r = client.api("PATCH", "/api/scripts/" + s["id"], {"notes": "new notes", "name": "renamed"})
    assert (r.json["notes"], r.json["name"], r.json["content"]) == ("new notes", "renamed", "#!/bin/bash\necho edited\n")
    client.api("DELETE", "/api/scripts/" + s["id"], status=204)
    client.api("GET", "/api/scripts/" + s["id"], status=404)
    client.api("DELETE", "/api/scripts/" + s["id"], status=404)


def test_bad_answers_give_422_with_fields(client):
    r = client.api("POST", "/api/scripts", {"template": "serial", "name": "x",
                                            "answers": {"notify": True, "email": "nope", "working_dir": 3}}, status=422)
    fields = r.json["error"]["fields"]
    assert set(fields) == {"email", "working_dir"}
    assert "email address" in fields["email"]
    r = client.api("POST", "/api/scripts", {"template": "serial", "answers": {"colour": "red"}}, status=422)
    assert "colour" in r.json["error"]["fields"]
    client.api("POST", "/api/scripts", {"template": "nosuch"}, status=404)
    client.api("POST", "/api/scripts", {"template": "serial", "name": ""}, status=201)  # default name
    r = client.api("POST", "/api/scripts", {"template": "serial", "name": "a\nb"}, status=422)
    assert "name" in r.json["error"]["fields"]
    assert client.api("GET", "/api/scripts").json["scripts"][0]["name"] == "Serial job"


def test_stale_if_match_is_412_with_the_current_version(client):
    s = client.create_script()
    client.api("PATCH", "/api/scripts/" + s["id"], {"content": "one\n"}, headers={"If-Match": s["etag"]})
    r = client.api("PATCH", "/api/scripts/" + s["id"], {"content": "two\n"}, headers={"If-Match": s["etag"]}, status=412)
    assert r.json["error"]["current"]["content"] == "one\n"
    assert client.api("GET", "/api/scripts/" + s["id"]).json["content"] == "one\n"


def test_oversized_and_malformed_bodies(client):
    big = "x" * (client.app.config["server"]["max_body"] + 1)
    r = client.api("POST", "/api/scripts", {"template": "serial", "notes": big}, status=413)
    assert r.json["error"]["code"] == "too_large"
    s = client.create_script()
    limit = client.app.config["storage"]["max_script_bytes"]
    client.api("PATCH", "/api/scripts/" + s["id"], {"content": "y" * (limit + 1)}, status=413)
    r = client.web.post("/api/scripts", b"\xff\xfe{", headers={"X-CSRF-Token": client.csrf,
                                                              "Content-Type": "application/json"}, status=400)
    assert "not valid JSON" in r.json["error"]["message"]
    client.web.post("/api/scripts", "[1]", headers={"X-CSRF-Token": client.csrf,
                                                    "Content-Type": "application/json"}, status=400)
    client.web.post("/api/scripts", "[" * 100000, headers={"X-CSRF-Token": client.csrf,
                                                           "Content-Type": "application/json"}, status=400)


def test_ids_are_gated(client):
    for bad in ("..", "..%2f..%2fetc", "a.b", "x" * 80, "%00"):
        client.api("GET", "/api/scripts/" + bad, status=404)


def test_broken_script_directory_is_listed_as_broken(client, tmp_path):
    good = client.create_script(name="good")
    bad = client.create_script(name="bad")
    meta = tmp_path / "state" / "scripts" / bad["id"] / "meta.json"
    meta.write_text('{"format": 1, "name": ')
    old = client.create_script(name="old")
    meta = tmp_path / "state" / "scripts" / old["id"] / "meta.json"
    meta.write_text(json.dumps(dict(json.loads(meta.read_text()), format=0)))
    listing = client.api("GET", "/api/scripts").json["scripts"]
    by_id = {s["id"]: s for s in listing}
    assert by_id[good["id"]]["name"] == "good"
    assert by_id[bad["id"]]["broken"] and "cannot be read" in by_id[bad["id"]]["reason"]
    assert "format 0" in by_id[old["id"]]["reason"]
    page = client.web.get("/scripts")
    assert "good" in page.text and "Cannot be read" in page.text
    r = client.api("GET", "/api/scripts/" + bad["id"], status=409)
    assert "broken" in r.json["error"]["message"]


# scripts through the pages


def test_create_view_edit_delete_pages(client):
    page = client.web.get("/scripts")
    assert "no job scripts yet" in page.text and 'href="/templates"' in page.text
    templates = client.web.get("/templates")
    assert "Serial job" in templates.text and "/templates/serial/create" in templates.text
    form = client.web.get("/templates/serial/create")
    hidden_email = re.compile(r'id="field-email"[^>]*\bhidden>')
    assert hidden_email.search(form.text)
    f = form.forms[1]
    f["name"] = "From the page"
    f.set("q_notify", True, index=1)
    r = f.submit("action", value="update")  # the no-JavaScript way to reveal questions
    assert 'id="field-email"' in r.text and not hidden_email.search(r.text)
    f = r.forms[1]
    r = f.submit("action", value="create", status=422)  # email now required
    assert "an answer is required" in r.text and "From the page" in r.text
    f = r.forms[1]
    f["q_email"] = "me@example.org"
    script = f.submit("action", value="create", status=303).follow()
    assert "From the page" in script.text and "--mail-user" in script.text
    sid = script.request.path.split("/")[-1]
    notes = client.web.get("/scripts/%s?edit=notes" % sid)
    nf = [f for f in notes.forms.values() if "field" in f.fields and f["field"].value == "notes"][0]
    nf["text"] = "My notes " + XSS
    page = nf.submit(status=303).follow()
    assert "My notes &lt;script&gt;" in page.text and XSS not in page.text
    edit = client.web.get("/scripts/%s?edit=content" % sid)
    cf = [f for f in edit.forms.values() if "field" in f.fields and f["field"].value == "content"][0]
    cf["text"] = "#!/bin/bash\n\techo tabbed\n"
    cf.submit(status=303)
    assert client.api("GET", "/api/scripts/" + sid).json["content"] == "#!/bin/bash\n\techo tabbed\n"
    confirm = client.web.get("/scripts/%s/delete" % sid)
    assert "Delete the script" in confirm.text
    confirm.forms[1].submit(status=303)
    client.api("GET", "/api/scripts/" + sid, status=404)


def test_two_tabs_editing_get_a_conflict_showing_both(client):
    s = client.create_script(name="shared")
    tab1 = client.web.get("/scripts/%s?edit=content" % s["id"])
    tab2 = client.web.get("/scripts/%s?edit=content" % s["id"])
    pick = lambda page: [f for f in page.forms.values() if "field" in f.fields][0]  # noqa: E731
    f1, f2 = pick(tab1), pick(tab2)
    f1["text"] = "#!/bin/bash\necho first tab\n"
    f1.submit(status=303)
    f2["text"] = "#!/bin/bash\necho second tab\n"
    r = f2.submit(status=409)
    assert "changed elsewhere" in r.text
    assert "echo second tab" in r.text and "echo first tab" in r.text  # both versions shown
    assert client.api("GET", "/api/scripts/" + s["id"]).json["content"] == "#!/bin/bash\necho first tab\n"
    pick(r).submit(status=303)  # saving again, knowingly, wins
    assert "second tab" in client.api("GET", "/api/scripts/" + s["id"]).json["content"]


def test_xss_payloads_come_back_escaped(client):
    s = client.create_script(name=XSS, notes=XSS)
    client.api("PATCH", "/api/scripts/" + s["id"], {"content": "#!/bin/bash\necho '%s'\n" % XSS})
    for path in ("/scripts", "/scripts/" + s["id"], "/scripts/%s/delete" % s["id"], "/scripts/%s/submit" % s["id"]):
        text = client.web.get(path).text
        assert XSS not in text and "&lt;script&gt;" in text, path
    assert client.api("GET", "/api/scripts/" + s["id"]).headers["Content-Type"] == "application/json"


@pytest.mark.root
def test_another_user_cannot_touch_my_script(multi_app, unix_users):
    a, web = multi_app()
    alice, bob = unix_users.create(), unix_users.create()
    token = web.post_json("/api/login", {"username": alice.name, "password": alice.password}).json["csrf_token"]
    sid = web.post_json("/api/scripts", {"template": "serial"}, headers={"X-CSRF-Token": token}, status=201).json["id"]
    b = web.__class__(a.bottle)
    bt = b.post_json("/api/login", {"username": bob.name, "password": bob.password}).json["csrf_token"]
    h = {"X-CSRF-Token": bt}
    b.get("/api/scripts/" + sid, status=404)
    b.patch_json("/api/scripts/" + sid, {"notes": "mine now"}, headers=h, status=404)
    b.delete("/api/scripts/" + sid, headers=h, status=404)
    b.get("/scripts/" + sid, status=404)
    assert b.get("/api/scripts").json["scripts"] == []
    assert web.get("/api/scripts/" + sid).json["notes"] != "mine now"
