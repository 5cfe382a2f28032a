"""A script's job name follows its name; its answers changed later, the
script made again from them, the user's edits to its text never lost."""
import re

import flightjobd

EDITED = "#!/bin/bash\n#SBATCH --job-name=\"mine\"\necho my own edit\n"


def directive(content, option):
    m = re.search(r'^#SBATCH --%s="?([^"\n]*)"?$' % option, content, re.M)
    return m and m.group(1)


# the job name: the script's name made safe for --job-name


def test_job_name_of():
    assert flightjobd.job_name_of("My analysis (v2)!") == "My-analysis-v2"
    assert flightjobd.job_name_of("  ..run.. ") == "run"
    assert flightjobd.job_name_of("数据") == ""
    assert len(flightjobd.job_name_of("x" * 300)) == 64


def test_question_steps_keep_a_question_with_the_one_it_depends_on():
    qs = [{"id": c} for c in "abcd"] + [{"id": "e"}, {"id": "f", "ask_when": {"question": "e", "equals": True}},
                                        {"id": "g", "ask_when": {"question": "f", "equals": "x"}}, {"id": "h"}]
    steps = [[q["id"] for q in step] for step in flightjobd.question_steps(qs)]
    assert steps == [["a", "b", "c", "d"], ["e", "f", "g", "h"]]
    assert [[q["id"] for q in s] for s in flightjobd.question_steps(qs, 3)] == [["a", "b", "c"], ["d"], ["e", "f", "g"], ["h"]]


def test_created_script_job_name_defaults_to_its_name(client):
    s = client.create_script("serial", name="Protein fold #3")
    assert s["answers"]["job_name"] == "Protein-fold-3"
    assert directive(s["content"], "job-name") == "Protein-fold-3"
    chosen = client.create_script("serial", name="Other", answers={"job_name": "picked"})
    assert chosen["answers"]["job_name"] == "picked"
    nothing_safe = client.create_script("serial", name="数据")
    assert nothing_safe["answers"]["job_name"] == "serial-job"  # the template's default


def test_create_page_job_name_follows_the_name_unless_changed(client):
    page = client.web.get("/templates/serial/create")
    f = page.forms[1]
    assert f["q_job_name"].value == "Serial-job" and f["job_name_auto"].value == "Serial-job"
    f["name"] = "weekly run"
    script = f.submit("action", value="create", status=303).follow()
    sid = script.request.path.split("/")[-1]
    assert client.api("GET", "/api/scripts/" + sid).json["answers"]["job_name"] == "weekly-run"
    f = client.web.get("/templates/serial/create").forms[1]
    f["name"], f["q_job_name"] = "second", "my_own"
    sid = f.submit("action", value="create", status=303).follow().request.path.split("/")[-1]
    assert client.api("GET", "/api/scripts/" + sid).json["answers"]["job_name"] == "my_own"


def test_copy_gets_its_new_names_job_name_unless_the_user_chose_one(client):
    s = client.create_script("serial", name="base run")
    copy = client.api("POST", "/api/scripts/%s/copy" % s["id"], {"name": "base run 2"}, status=201).json
    assert copy["answers"]["job_name"] == "base-run-2" and directive(copy["content"], "job-name") == "base-run-2"
    # a script's text edited by its user: only the --job-name line changes
    edited = client.api("PATCH", "/api/scripts/" + s["id"], {"content": s["content"] + "echo mine\n"}).json
    copy = client.api("POST", "/api/scripts/%s/copy" % s["id"], {"name": "third"}, status=201).json
    assert copy["answers"]["job_name"] == "third" and directive(copy["content"], "job-name") == "third"
    assert copy["content"] == edited["content"].replace('--job-name="base-run"', '--job-name="third"')
    # a job name the user chose is kept
    own = client.create_script("serial", name="own", answers={"job_name": "keepme"})
    copy = client.api("POST", "/api/scripts/%s/copy" % own["id"], {"name": "own copy"}, status=201).json
    assert copy["answers"]["job_name"] == "keepme" and copy["content"] == own["content"]


def test_copy_of_an_old_script_with_the_templates_default_job_name(client):
    s = client.create_script("serial", name="old", answers={"job_name": "serial-job"})
    copy = client.api("POST", "/api/scripts/%s/copy" % s["id"], {"name": "new one"}, status=201).json
    assert copy["answers"]["job_name"] == "new-one" and directive(copy["content"], "job-name") == "new-one"


# answers changed later


def test_change_answers_renders_the_script_again(client):
    s = client.create_script("serial", name="calc")
    r = client.api("PUT", "/api/scripts/%s/answers" % s["id"], {"answers": {"output_file": "calc-%j.log"}},
                   headers={"If-Match": s["etag"]}, status=200)
    new = r.json
    assert r.headers["ETag"] == new["etag"] == '"2"'
    assert new["answers"]["output_file"] == "calc-%j.log" and new["answers"]["job_name"] == "calc"
    assert directive(new["content"], "output") == "calc-%j.log"
    bad = client.api("PUT", "/api/scripts/%s/answers" % s["id"], {"answers": {"notify": True}}, status=422).json["error"]
    assert "email" in bad["fields"] and client.api("GET", "/api/scripts/" + s["id"]).json == new
    assert client.api("PUT", "/api/scripts/%s/answers" % s["id"], {"answers": {"nope": 1}}, status=422)
    client.api("PUT", "/api/scripts/%s/answers" % s["id"], {"answers": {}, "text": "bogus"}, status=400)


def test_edited_text_is_a_conflict_never_lost(client):
    s = client.create_script("serial", name="calc")
    edited = client.api("PATCH", "/api/scripts/" + s["id"], {"content": EDITED}).json
    r = client.api("PUT", "/api/scripts/%s/answers" % s["id"], {"answers": {"job_name": "renamed"}}, status=409).json["error"]
    assert r["code"] == "edited" and "edited this script" in r["message"]
    assert r["current"]["content"] == EDITED and directive(r["rendered"], "job-name") == "renamed"
    assert client.api("GET", "/api/scripts/" + s["id"]).json == edited  # nothing changed
    mine = client.api("PUT", "/api/scripts/%s/answers" % s["id"], {"answers": {"job_name": "renamed"}, "text": "mine"},
                      headers={"If-Match": edited["etag"]}).json
    assert mine["content"] == EDITED and mine["answers"]["job_name"] == "renamed"
    # still edited: the next change of answers asks again
    client.api("PUT", "/api/scripts/%s/answers" % s["id"], {"answers": {"job_name": "again"}}, status=409)
    new = client.api("PUT", "/api/scripts/%s/answers" % s["id"], {"answers": {"job_name": "again"}, "text": "rendered"}).json
    assert "my own edit" not in new["content"] and directive(new["content"], "job-name") == "again"
    # as rendered now: no conflict
    plain = client.api("PUT", "/api/scripts/%s/answers" % s["id"], {"answers": {"job_name": "third"}}).json
    assert directive(plain["content"], "job-name") == "third" and plain["version"] == new["version"] + 1


def test_stale_answers_are_refused_and_change_nothing(client):
    s = client.create_script("serial", name="calc")
    client.api("PATCH", "/api/scripts/" + s["id"], {"notes": "changed elsewhere"})
    r = client.api("PUT", "/api/scripts/%s/answers" % s["id"], {"answers": {"job_name": "x"}},
                   headers={"If-Match": s["etag"]}, status=412).json["error"]
    assert "changed elsewhere" in r["message"] and r["current"]["version"] == 2
    assert client.api("GET", "/api/scripts/" + s["id"]).json["answers"]["job_name"] == "calc"


def test_imported_script_has_no_answers_to_change(client):
    s = client.api("POST", "/api/import", {"name": "imp", "content": "#!/bin/bash\necho hi\n"},
                   status=201).json
    r = client.api("PUT", "/api/scripts/%s/answers" % s["id"], {"answers": {}}, status=409).json["error"]
    assert "imported" in r["message"]
    assert client.web.get("/scripts/%s/answers" % s["id"], status=409)
    assert "Edit answers" not in client.web.get("/scripts/" + s["id"]).text


def test_check_answers_for_a_step(client):
    r = client.api("POST", "/api/templates/serial/check", {"answers": {"job_name": "bad name", "notify": "true"}}).json
    assert set(r["errors"]) == {"job_name", "email"}
    assert client.api("POST", "/api/templates/serial/check", {"answers": {}}).json == {"errors": {}}


# the pages


def answers_form(page):
    return [f for f in page.forms.values() if "etag" in f.fields and f.action.endswith("/answers")][0]


def test_edit_answers_page_saves_and_renders(client):
    s = client.create_script("serial", name="page run")
    page = client.web.get("/scripts/" + s["id"])
    assert 'href="/scripts/%s/answers"' % s["id"] in page.text
    f = answers_form(client.web.get("/scripts/%s/answers" % s["id"]))
    assert f["q_job_name"].value == "page-run" and f["q_output_file"].value == s["answers"]["output_file"]
    f["q_job_name"] = "bad name"
    r = f.submit("action", value="save", status=422)
    assert "use only letters" in r.text and 'value="bad name"' in r.text
    f = answers_form(r)
    f["q_job_name"] = "good_name"
    f.submit("action", value="save", status=303)
    assert directive(client.api("GET", "/api/scripts/" + s["id"]).json["content"], "job-name") == "good_name"


def test_edit_answers_page_conflict_keep_mine_or_take_new(client):
    s = client.create_script("serial", name="page run")
    client.api("PATCH", "/api/scripts/" + s["id"], {"content": EDITED})
    f = answers_form(client.web.get("/scripts/%s/answers" % s["id"]))
    f["q_job_name"] = "newname"
    r = f.submit("action", value="save", status=409)
    assert "edited this script" in r.text and "echo my own edit" in r.text and "newname" in r.text
    assert "Keep my text" in r.text and "Take the new text" in r.text
    assert answers_form(r)["q_job_name"].value == "newname"  # what they typed is kept
    assert client.api("GET", "/api/scripts/" + s["id"]).json["content"] == EDITED
    answers_form(r).submit("text", value="mine", status=303)
    kept = client.api("GET", "/api/scripts/" + s["id"]).json
    assert kept["content"] == EDITED and kept["answers"]["job_name"] == "newname"
    f = answers_form(client.web.get("/scripts/%s/answers" % s["id"]))
    f["q_job_name"] = "newer"
    r = f.submit("action", value="save", status=409)
    answers_form(r).submit("text", value="rendered", status=303)
    taken = client.api("GET", "/api/scripts/" + s["id"]).json
    assert "my own edit" not in taken["content"] and directive(taken["content"], "job-name") == "newer"


def test_edit_answers_page_stale_form_is_409_and_keeps_what_was_typed(client):
    s = client.create_script("serial", name="page run")
    f = answers_form(client.web.get("/scripts/%s/answers" % s["id"]))
    client.api("PATCH", "/api/scripts/" + s["id"], {"notes": "meanwhile"})
    f["q_job_name"] = "typed_here"
    r = f.submit("action", value="save", status=409)
    assert "changed elsewhere" in r.text and "Your answers are below" in r.text
    f = answers_form(r)
    assert f["q_job_name"].value == "typed_here" and f["etag"].value == '"2"'
    assert client.api("GET", "/api/scripts/" + s["id"]).json["answers"]["job_name"] == "page-run"
    f.submit("action", value="save", status=303)
    assert client.api("GET", "/api/scripts/" + s["id"]).json["answers"]["job_name"] == "typed_here"


def test_create_page_is_cut_into_steps_all_on_the_page(client):
    text = client.web.get("/templates/mpi/create").text
    assert "data-steps" in text and text.count('class="step"') == 4 and "Step 4 of 4" in text
    for q in ("q_working_dir", "q_launcher", "q_notify", "notes", "name"):
        assert 'name="%s"' % q in text  # every step on the one page without JavaScript


def test_answers_pages_escape_what_they_show(client):
    xss = '<script>alert("x")</script>'
    s = client.create_script("serial", name=xss, answers={"working_dir": "~/" + xss})
    client.api("PATCH", "/api/scripts/" + s["id"], {"content": "#!/bin/bash\necho '%s'\n" % xss})
    page = client.web.get("/scripts/%s/answers" % s["id"])
    assert xss not in page.text and "&lt;script&gt;" in page.text
    f = answers_form(page)
    f["q_job_name"] = "other"
    conflict = f.submit("action", value="save", status=409)
    assert xss not in conflict.text and "echo &#x27;&lt;script&gt;" in conflict.text


def test_create_page_sent_back_keeps_a_chosen_job_name_and_follows_an_untouched_one(client):
    f = client.web.get("/templates/serial/create").forms[1]
    f["name"], f["q_job_name"], f["q_output_file"] = "named", "chosen", "bad|file"
    r = f.submit("action", value="create", status=422)
    f = r.forms[1]
    assert f["q_job_name"].value == "chosen" and "job_name_auto" not in f.fields
    f["q_output_file"], f["name"] = "ok.out", "renamed"
    sid = f.submit("action", value="create", status=303).follow().request.path.split("/")[-1]
    assert client.api("GET", "/api/scripts/" + sid).json["answers"]["job_name"] == "chosen"
    f = client.web.get("/templates/serial/create").forms[1]
    f["name"], f["q_output_file"] = "follow me", "bad|file"
    f = f.submit("action", value="create", status=422).forms[1]
    assert f["q_job_name"].value == f["job_name_auto"].value == "follow-me"
    f["q_output_file"], f["name"] = "ok.out", "followed again"
    sid = f.submit("action", value="create", status=303).follow().request.path.split("/")[-1]
    assert client.api("GET", "/api/scripts/" + sid).json["answers"]["job_name"] == "followed-again"


def test_check_needs_answers(client):
    client.api("POST", "/api/templates/serial/check", {"answers": ["x"]}, status=422)
    client.api("POST", "/api/templates/nosuch/check", {"answers": {}}, status=404)
