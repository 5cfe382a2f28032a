"""Submit again with a job's answers, copy a script, save a script as the
user's own template: through the real app, worker and local scheduler."""
import os
import shutil

import pytest

import flightjobd

XSS = '<script>alert("x")</script>'
QUICK = "#!/bin/bash\necho quick\n"


def write_template(base, tid, submission, name="Mine"):
    """A user's template with the given [[submission_question]] tables."""
    d = base / tid
    d.mkdir(parents=True, exist_ok=True)
    (d / "template.toml").write_text('name = "%s"\nsynopsis = "s"\ndescription = "d"\n' % name + submission)
    (d / "script.sh").write_text(QUICK)


SIZES = ('[[submission_question]]\nid = "time"\ntext = "Time limit"\ndescription = "d"\ntype = "time"\n'
         'default = "0-01:00:00"\noption = "time"\n\n'
         '[[submission_question]]\nid = "size"\ntext = "Size"\ndescription = "d"\ntype = "select"\n'
         'options = [%s]\ndefault = "a"\n')
EXTRA = '\n[[submission_question]]\nid = "extra"\ntext = "Extra"\ndescription = "d"\ntype = "text"\ndefault = ""\n'


def finished_job(client, script_id, answers):
    job = client.submit(script_id, answers)
    return client.wait_job(job["id"])


def defaults(submission):
    return {q["id"]: q["default"] for q in submission["questions"]}


# submit again with a job's answers


def test_submission_from_a_job_gives_its_answers_and_says_so(client):
    s = client.create_script()
    client.api("PATCH", "/api/scripts/" + s["id"], {"content": QUICK})
    job = finished_job(client, s["id"], {"time": "0-00:05:00", "mem": "100M"})
    plain = client.api("GET", "/api/scripts/%s/submission" % s["id"]).json
    assert plain["from_job"] is None and defaults(plain)["time"] == "0-01:00:00"
    again = client.api("GET", "/api/scripts/%s/submission?from_job=%s" % (s["id"], job["id"])).json
    assert defaults(again)["time"] == "0-00:05:00" and defaults(again)["mem"] == "100M"
    assert again["from_job"] == {"id": job["id"], "scheduler_id": job["scheduler_id"],
                                 "submitted_at": job["submitted_at"], "dropped": [],
                                 "label": "Job %s" % job["scheduler_id"], "refused": None, "extra_options": ""}
    # the page: where the values came from, and one click back to the defaults
    page = client.web.get("/scripts/%s/submit?from_job=%s" % (s["id"], job["id"]))
    source = page.html.find(id="values-source")
    assert "Values from the answers of job %s, submitted" % job["scheduler_id"] in source.text
    assert "ago" in source.text
    reset = source.find("a", string="Reset to the defaults")
    assert reset["href"] == "/scripts/%s/submit" % s["id"]
    form = page.forms[1]
    assert form["q_time"].value == "0-00:05:00" and form["from_job"].value == job["id"]
    fresh = client.web.get(reset["href"])
    assert "Values: the defaults." in fresh.html.find(id="values-source").text
    assert fresh.forms[1]["q_time"].value == "0-01:00:00" and "from_job" not in fresh.forms[1].fields
    # updating the form keeps saying where it started; review then submit sends those answers
    r = form.submit("action", value="update")
    assert "Values from the answers of job" in r.text
    summary = r.forms[1].submit("action", value="review")
    assert "0-00:05:00" in summary.text
    done = summary.forms[1].submit("action", value="submit", status=303).follow()
    second = client.api("GET", "/api/jobs/" + done.request.path.split("/")[-1]).json
    assert second["answers"]["time"] == "0-00:05:00" and second["answers"]["mem"] == "100M"
    # the job page offers both
    job_page = client.web.get("/jobs/" + job["id"])
    links = {a["href"] for a in job_page.html.find_all("a")}
    assert {"/scripts/%s/submit?from_job=%s" % (s["id"], job["id"]), "/scripts/%s/submit" % s["id"]} <= links
    assert "Submit the script again with these answers" in job_page.text


def test_from_job_must_be_a_job_of_this_script(client):
    s = client.create_script(name="one")
    other = client.create_script(name="two")
    client.api("PATCH", "/api/scripts/" + other["id"], {"content": QUICK})
    job = finished_job(client, other["id"], {})
    for bad in ("nosuch", "..%2f..%2fetc", "a.b", job["id"]):  # missing, refused by the gate, another script's
        r = client.api("GET", "/api/scripts/%s/submission?from_job=%s" % (s["id"], bad), status=404)
        assert r.json["error"]["code"] == "not_found"
        client.web.get("/scripts/%s/submit?from_job=%s" % (s["id"], bad), status=404)


def test_answers_that_no_longer_fit_are_dropped_and_named(client, tmp_path):
    mine = tmp_path / "user-templates"
    write_template(mine, "mine", SIZES % '"a", "b"' + EXTRA)
    s = client.create_script("mine", name="sized")
    job = finished_job(client, s["id"], {"time": "0-00:07:00", "size": "b", "extra": "kept " + XSS})
    write_template(mine, "mine", SIZES % '"a", "c"')  # b is no choice any more; extra is gone
    again = client.api("GET", "/api/scripts/%s/submission?from_job=%s" % (s["id"], job["id"])).json
    assert defaults(again) == {"time": "0-00:07:00", "size": "a"}
    dropped = {d["id"]: d for d in again["from_job"]["dropped"]}
    assert set(dropped) == {"size", "extra"}
    assert dropped["size"]["value"] == "b" and "not one of the choices" in dropped["size"]["reason"]
    assert dropped["extra"]["reason"] == "no longer asked"
    page = client.web.get("/scripts/%s/submit?from_job=%s" % (s["id"], job["id"]))
    source = page.html.find(id="values-source")
    assert "no longer fit" in source.text and "Size: b" in source.text and "extra: kept" in source.text
    assert XSS not in page.text and "kept &lt;script&gt;" in page.text


# copy a script


def test_copy_is_a_new_independent_script(client):
    s = client.create_script(name="original", notes="my notes", answers={"job_name": "orig"})
    s = client.api("PATCH", "/api/scripts/" + s["id"], {"content": QUICK + "# mine\n"}).json
    r = client.api("POST", "/api/scripts/%s/copy" % s["id"], {"name": "the copy"}, status=201)
    copy = r.json
    assert r.headers["ETag"] == copy["etag"] == '"1"'
    assert copy["id"] != s["id"] and copy["name"] == "the copy"
    assert (copy["content"], copy["notes"], copy["template_id"], copy["answers"]) == \
        (s["content"], s["notes"], s["template_id"], s["answers"])
    client.api("PATCH", "/api/scripts/" + copy["id"], {"content": "#!/bin/bash\necho changed\n", "notes": "other"})
    assert client.api("GET", "/api/scripts/" + s["id"]).json == s  # the original is as it was
    client.api("DELETE", "/api/scripts/" + s["id"], status=204)
    assert client.api("GET", "/api/scripts/" + copy["id"]).json["notes"] == "other"


def test_copy_refuses_a_taken_or_bad_name_and_makes_nothing(client):
    s = client.create_script(name="Taken")
    for body, status, field in (({"name": "taken "}, 409, "name"), ({"name": ""}, 422, "name"),
                                ({"name": "two\nlines"}, 422, "name"), ({}, 422, "name")):
        r = client.api("POST", "/api/scripts/%s/copy" % s["id"], body, status=status)
        assert field in r.json["error"]["fields"]
    assert "Taken" in client.api("POST", "/api/scripts/%s/copy" % s["id"], {"name": "taken"}, status=409).text
    client.api("POST", "/api/scripts/nosuch/copy", {"name": "x"}, status=404)
    assert len(client.api("GET", "/api/scripts").json["scripts"]) == 1


def test_copy_through_the_page(client):
    s = client.create_script(name=XSS, notes="n")
    page = client.web.get("/scripts/%s?edit=copy" % s["id"])
    assert XSS not in page.text
    form = page.forms["copy-form"]
    assert form["name"].value == "Copy of " + XSS
    form["name"] = XSS  # taken: shown again with the error and what was typed
    r = form.submit(status=409)
    assert "you have a script" in r.text and XSS not in r.text and r.forms["copy-form"]["name"].value == XSS
    r.forms["copy-form"]["name"] = "copied"
    new = r.forms["copy-form"].submit(status=303).follow()
    assert "copied" in new.html.find("h1").text
    new_id = new.request.path.split("/")[-1]
    assert client.api("GET", "/api/scripts/" + new_id).json["notes"] == "n"


# save a script as my own template

TRICKY = ("#!/bin/bash\n#SBATCH --job-name=x\n% if True:\n  %end\n<% x = 1 %>\n\\% escaped\n  \\<% too\n"
          "echo {{name}} {{!raw}} {{{{ }} '{{' \"{{\"\n%%\necho 100%\nfor i in {1..3}; do echo $i; done\n"
          "echo trailing \\\\\n")


def test_save_as_template_round_trip(client, tmp_path):
    s = client.create_script(name="tricky", notes="notes " + XSS, answers={"job_name": "tricky-job"})
    s = client.api("PATCH", "/api/scripts/" + s["id"], {"content": TRICKY}).json
    t = client.api("POST", "/api/scripts/%s/save-as-template" % s["id"], {"name": "My tricky one"}, status=201).json
    assert (t["id"], t["name"], t["source"]) == ("my-tricky-one", "My tricky one", "user")
    serial = client.api("GET", "/api/templates/serial").json
    assert [q["id"] for q in t["questions"]] == [q["id"] for q in serial["questions"]]
    assert [q["id"] for q in t["submission_questions"]] == [q["id"] for q in serial["submission_questions"]]
    listed = {x["id"]: x for x in client.api("GET", "/api/templates").json["templates"]}
    assert listed["my-tricky-one"]["source"] == "user"
    assert sorted(os.listdir(tmp_path / "user-templates")) == ["my-tricky-one"]
    assert sorted(os.listdir(tmp_path / "user-templates" / "my-tricky-one")) == ["notes.md", "script.sh", "template.toml"]
    again = client.create_script("my-tricky-one", name="again", answers={"job_name": "tricky-job"})
    assert again["content"] == TRICKY and again["notes"] == s["notes"]
    assert client.create_script("my-tricky-one", name="defaults")["content"] == TRICKY
    # a script from the new template submits with the old one's submission questions
    sub = client.api("GET", "/api/scripts/%s/submission" % again["id"]).json
    assert [q["id"] for q in sub["questions"]] == [q["id"] for q in serial["submission_questions"]]


@pytest.mark.parametrize("text", ["", "no newline at the end", "{{", "}}{{", "%", "\\", "\\\\\n", "a\r\nb\n",
                                  "  \t% x\n", "\\\\%\n", "{{'\n'}}\n", "é ☃ 𝄞\n", "\x7f\x01\n"])
def test_literal_template_renders_back_exactly(text):
    template = {"script_source": flightjobd.literal_template(text)}
    assert flightjobd.render_script(template, {}) == text


def test_save_as_template_refuses_clashes_and_bad_input(client, tmp_path):
    s = client.create_script(name="mine")
    url = "/api/scripts/%s/save-as-template" % s["id"]
    client.api("POST", url, {"name": "Kept", "id": "kept"}, status=201)
    before = sorted(os.listdir(tmp_path / "user-templates"))
    for body, status, field, words in (
            ({"name": "Other", "id": "serial"}, 409, "id", "Serial job"),  # a shipped template's id
            ({"name": "Other", "id": "kept"}, 409, "id", "kept"),  # the user's own
            ({"name": "kept", "id": "fresh"}, 409, "name", "Kept"),  # a template's name, whatever the case
            ({"name": "serial job", "id": "fresh"}, 409, "name", "Serial job"),
            ({"name": ""}, 422, "name", "name"), ({"name": "a\nb"}, 422, "name", "one line"),
            ({"name": "Fine", "id": "Bad/Id"}, 422, "id", "lowercase"), ({"name": "Fine", "id": ".x"}, 422, "id", "Id"),
            ({"name": "Fine", "id": "x" * 65}, 422, "id", "64"), ({"name": "☃☃"}, 422, "id", "Id"),
            ({"name": "Fine", "id": 3}, 422, "id", "Id")):
        r = client.api("POST", url, body, status=status)
        assert field in r.json["error"]["fields"], body
        assert words in r.json["error"]["message"], body
    client.api("POST", url, {"name": "x", "colour": "red"}, status=400)
    client.api("POST", "/api/scripts/nosuch/save-as-template", {"name": "x"}, status=404)
    assert sorted(os.listdir(tmp_path / "user-templates")) == before  # nothing half-made left


def test_save_as_template_when_the_source_template_is_gone(client, tmp_path):
    write_template(tmp_path / "user-templates", "gone", SIZES % '"a"')
    s = client.create_script("gone", name="orphan")
    shutil.rmtree(tmp_path / "user-templates" / "gone")
    r = client.api("POST", "/api/scripts/%s/save-as-template" % s["id"], {"name": "x"}, status=409)
    assert "gone" in r.json["error"]["message"]
    assert os.listdir(tmp_path / "user-templates") == []


def test_save_as_template_through_the_pages(client):
    s = client.create_script(name=XSS)
    page = client.web.get("/scripts/%s?edit=template" % s["id"])
    form = page.forms["save-template-form"]
    assert form["name"].value == XSS and XSS not in page.text
    form["name"], form["id"] = "Serial job", "serial"
    r = form.submit(status=409)
    assert "exists already" in r.text and r.forms["save-template-form"]["id"].value == "serial"
    f = r.forms["save-template-form"]
    f["name"], f["id"] = XSS + " tmpl", ""
    templates = f.submit(status=303)
    assert templates.headers["Location"].endswith("/templates")
    templates = templates.follow()
    card = templates.html.find(id="template-script-alert-x-script-tmpl")
    assert "Your own template" in card.text and XSS + " tmpl" in card.find("h2").text
    assert XSS not in templates.text
    assert "Your own template" not in templates.html.find(id="template-serial").text


# CSRF


def test_every_new_route_needs_the_csrf_token(client, tmp_path):
    s = client.create_script(name="guarded")
    for path, body in (("/api/scripts/%s/copy" % s["id"], {"name": "c"}),
                       ("/api/scripts/%s/save-as-template" % s["id"], {"name": "t"})):
        client.api("POST", path, body, status=403, headers={"X-CSRF-Token": "wrong"})
        client.web.post_json(path, body, status=403)
    for path, fields in (("/scripts/%s/copy" % s["id"], {"name": "c"}),
                         ("/scripts/%s/save-as-template" % s["id"], {"name": "t", "id": ""})):
        client.web.post(path, dict(fields, csrf="wrong"), status=403)
        client.web.post(path, fields, status=403)
    assert [x["name"] for x in client.api("GET", "/api/scripts").json["scripts"]] == ["guarded"]
    assert not os.path.exists(tmp_path / "user-templates")

