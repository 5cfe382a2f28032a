"""Extra sbatch options at a submit (issue 27, item 4): the checker
(check_extra_options) on its own; through the app and the local scheduler
(the API, the pages, the job record, submit again); the option table
against the real sbatch (every name, what each takes, how an abbreviation
reads); and on the real cluster, options reaching Slurm and a refusal in
sbatch's own words beside the field."""
import os
import re
import subprocess

import pytest

import flightjobd
from support import UnixUsers
from test_slurm import Site

check = flightjobd.check_extra_options
ASKED = {"time": "the question “Time limit”", "mem": "the question “Memory”"}


def refused(text, asked=ASKED):
    with pytest.raises(flightjobd.Invalid) as e:
        check(text, asked)
    assert e.value.fields["extra_options"] in e.value.message
    return e.value.fields["extra_options"]


# the checker

@pytest.mark.parametrize("text, options", [
    ("--comment=hello", ["--comment=hello"]),
    ("--gres gpu:1\n--constraint=skylake", ["--gres=gpu:1", "--constraint=skylake"]),
    ("-C a&b\n-qlow\n-L lic:2", ["--constraint=a&b", "--qos=low", "--licenses=lic:2"]),
    ("  --mail-type=END,FAIL  \r\n\n# a comment\n--mail-user=me@example.org # who", [
        "--mail-type=END,FAIL", "--mail-user=me@example.org"]),
    ("--exclusive\n--hold\n--nice\n-k", ["--exclusive", "--hold", "--nice", "--no-kill"]),
    ("--exclusive=user\n--nice=10", ["--exclusive=user", "--nice=10"]),
    ("--comment='two words'\n--job-name \"a 'b'\"", ["--comment=two words", "--job-name=a 'b'"]),
    ("--comment=", ["--comment="]),
    ("--comment --wrap=ls\n-C--export=ALL", ["--comment=--wrap=ls", "--constraint=--export=ALL"]),  # values, one word
    ("--tasks-per-node=2", ["--ntasks-per-node=2"]),  # two names of one option: the one name
    ("", []), ("\n\n", []), (None, []), (["--comment=x", "--qos=y"], ["--comment=x", "--qos=y"]),
])
def test_good_options_become_whole_names(text, options):
    assert check(text, ASKED) == options


@pytest.mark.parametrize("text, options", [
    ("--jo=x", ["--job-name=x"]), ("--mail-t END", ["--mail-type=END"]), ("--com=c", ["--comment=c"]),
    ("--exclusiv", ["--exclusive"]), ("--tasks-per=2", ["--ntasks-per-node=2"]),
])
def test_an_abbreviation_sbatch_takes_is_taken_by_its_whole_name(text, options):
    assert check(text, {}) == options


@pytest.mark.parametrize("text, words", [
    ("--co=x", "--co could be any of --comment, --constraint, --container"),
    ("--ex", "--ex could be any of --exclude, --exclusive, --export"),
    ("--clus=x", "--clus could be any of --cluster-constraint, --clusters"),
    ("--wr=rm -rf", "--wrap is not allowed here: it runs a command line"),  # an abbreviation of a refused one
    ("--exp=ALL", "--exp could be any of --export, --export-file"),
])
def test_an_ambiguous_abbreviation_or_a_refused_one_is_refused(text, words):
    assert words in refused(text)


@pytest.mark.parametrize("text, words", [
    ("--nosuch=1", "Line 1 (--nosuch=1): --nosuch is not an option of sbatch."),
    ("-Z", "-Z is not an option of sbatch"),
    ("gres=gpu:1", "gres=gpu:1 is not an option: an option starts with - or --"),
    ("--=x", "an option's name is missing after --"),
    ("--hold=x", "--hold takes no value"),
    ("-Hx", "--hold takes no value"),
    ("--comment", "--comment needs a value (--comment=VALUE)"),
    ("--comment a b", "one option a line: b is more than --comment"),
    ("--qos=a --comment=b", "one option a line: --comment=b is more than --qos"),
    ("--comment=a\n--comment=b", "Line 2 (--comment=b): --comment is given on line 1 already."),
    ("--time=10", "--time is set by the question “Time limit”: answer it there"),
    ("-t 10", "--time is set by the question “Time limit”"),
    ("--mem 4G", "--mem is set by the question “Memory”"),
    ("--nodelist=/etc/hosts", "--nodelist with a / reads a file of node names"),
    ("-x ./nodes", "--exclude with a / reads a file of node names"),
    ("--comment=a\x1bb", "--comment has a control character in its value"),
])
def test_a_bad_line_is_refused_naming_it_and_why(text, words):
    assert words in refused(text)


@pytest.mark.parametrize("name", sorted(flightjobd.EXTRA_REFUSED))
def test_each_refused_option_says_why(name):
    kind = flightjobd.SBATCH_OPTIONS[name][1]
    message = refused("--%s%s" % (name, "=x" if kind == "=" else ""))
    assert "--%s is not allowed here: %s." % (name, flightjobd.EXTRA_REFUSED[name]) in message
    short = flightjobd.SBATCH_OPTIONS[name][0]
    if short:  # its short letter too
        assert "--%s is not allowed here" % name in refused("-%s%s" % (short, "x" if kind == "=" else ""))


def test_every_option_of_sbatch_is_allowed_or_refused_with_a_reason():
    names = set(flightjobd.SBATCH_OPTIONS) - set(flightjobd.ALIASES)
    assert flightjobd.EXTRA_ALLOWED | set(flightjobd.EXTRA_REFUSED) == names
    assert not flightjobd.EXTRA_ALLOWED & set(flightjobd.EXTRA_REFUSED)
    for must_refuse in ("wrap", "export", "export-file", "chdir", "output", "error", "input", "uid", "gid",
                        "get-user-env", "parsable", "test-only", "batch", "container", "nodefile", "bbf"):
        assert must_refuse in flightjobd.EXTRA_REFUSED


def test_every_bad_line_is_named_at_once_and_the_good_ones_are_not():
    message = refused("--comment=ok\n--wrap=x\n\n--gres gpu:1\n--nosuch")
    assert "Line 2 (--wrap=x)" in message and "Line 5 (--nosuch)" in message
    assert "Line 1" not in message and "Line 4" not in message


def test_bounds():
    assert "at most 50 lines" in refused("\n".join("--comment=%d" % n for n in range(51)))
    assert "8000 characters" in refused("--comment=" + "x" * 8000)
    assert refused(42) == "give text, one option a line"


@pytest.mark.parametrize("options", [
    ["--comment=a b\"c\\d#e'f", "--qos=x", "--comment2="],
    ["--comment=#", "--job-name= lead", "--comment=\\", "--exclusive"],
])
def test_options_written_back_as_lines_read_as_they_were(options):
    text = flightjobd.extra_options_text(options)
    assert text.count("\n") == len(options) - 1
    words = [flightjobd.split_directive(line) for line in text.split("\n")]
    assert [w[0] for w in words] == options and all(len(w) == 1 for w in words)


# through the app, on the local scheduler

EXTRA = "--comment='hello there'\n--mail-type=END"


def test_preview_and_submit_by_the_api_keep_the_options(client):
    s = client.create_script()
    plan = client.api("POST", "/api/scripts/%s/preview" % s["id"], {"extra_options": EXTRA}).json
    assert plan["extra_options"] == ["--comment=hello there", "--mail-type=END"]
    assert {"--comment=hello there", "--mail-type=END"} <= set(plan["options"])  # (the local command has none)
    job = client.api("POST", "/api/jobs", {"script": s["id"], "answers": {},
                                          "extra_options": EXTRA.split("\n")}, status=201).json
    assert job["extra_options"] == ["--comment=hello there", "--mail-type=END"]
    assert {"--comment=hello there", "--mail-type=END"} <= set(job["options"])
    sub = client.api("GET", "/api/scripts/%s/submission?from_job=%s" % (s["id"], job["id"])).json
    assert sub["from_job"]["extra_options"] == '"--comment=hello there"\n--mail-type=END'
    page = client.web.get("/jobs/" + job["id"])
    assert page.html.select_one("#extra-options code").text == "'--comment=hello there' --mail-type=END"


def test_the_local_scheduler_says_which_it_does_not_use(client):
    s = client.create_script()
    plan = client.api("POST", "/api/scripts/%s/preview" % s["id"], {
        "extra_options": "--gres=gpu:1\n--comment=c\n--mail-type=END\n--array=1-2\n--job-name=n"}).json
    assert plan["ignored_options"] == ["the local scheduler sends no email (--mail-type=END)",
                                       "the local scheduler does not use it (--gres=gpu:1)",
                                       "the local scheduler does not use it (--comment=c)"]


def test_a_bad_option_is_a_422_naming_its_line_with_the_answers_own(client):
    s = client.create_script()
    r = client.api("POST", "/api/jobs", {"script": s["id"], "answers": {"mem": "lots"},
                                        "extra_options": "--comment=ok\n--output=/tmp/x"}, status=422).json
    fields = r["error"]["fields"]
    assert "mem" in fields and fields["extra_options"].startswith("Line 2 (--output=/tmp/x): --output is not allowed")
    r = client.api("POST", "/api/scripts/%s/preview" % s["id"], {"extra_options": "--time=5"}, status=422).json
    assert "set by the question “Time limit”" in r["error"]["fields"]["extra_options"]
    assert client.api("GET", "/api/jobs").json["total"] == 0


def test_start_after_and_a_dependency_option_are_not_both_given(client):
    s = client.create_script()
    first = client.submit(s["id"])
    r = client.api("POST", "/api/scripts/%s/preview" % s["id"], {
        "after": {"job": first["id"], "type": "afterok"}, "extra_options": "--dependency=singleton"}, status=422)
    assert "--dependency is set by “Start after”" in r.json["error"]["fields"]["extra_options"]
    plan = client.api("POST", "/api/scripts/%s/preview" % s["id"], {"extra_options": "-d singleton"}).json
    assert "--dependency=singleton" in plan["options"]


def test_the_pages_keep_what_was_typed_and_show_it_in_the_command(client):
    s = client.create_script()
    page = client.web.get("/scripts/%s/submit" % s["id"])
    field = page.html.select_one("#field-extra_options")
    assert field.select_one("textarea").text == "" and "--gres" in field.text
    offered = field.select_one("details p").text.split(", ")
    assert "--gres" in offered and "--time-min" in offered and "--time" not in offered  # a question asks it
    typed = "--comment='keep me'\r\n--wrap=ls"
    bad = client.form("/scripts/%s/submit" % s["id"], {"action": "review", "q_time": "0-00:05:00",
                                                        "extra_options": typed}, status=422)
    assert bad.html.select_one("#extra_options").text == "--comment='keep me'\n--wrap=ls"
    assert "Line 2 (--wrap=ls): --wrap is not allowed" in bad.html.select_one("#field-extra_options .field-error").text
    assert bad.html.select_one("#q_time")["value"] == "0-00:05:00"
    summary = client.form("/scripts/%s/submit" % s["id"], {"action": "review", "extra_options": "--comment='keep me'"})
    assert summary.html.select_one("#extra-options").text == "'--comment=keep me'"
    form = next(f for f in summary.forms.values() if f.action.endswith("/submit"))
    assert form["extra_options"].value == "--comment='keep me'"
    back = form.submit("action", value="update")
    assert back.html.select_one("#extra_options").text == "--comment='keep me'"
    done = form.submit("action", value="submit").follow()
    assert done.html.select_one("#extra-options code").text == "'--comment=keep me'"
    again = done.click(linkid="again-with-answers")
    assert again.html.select_one("#extra_options").text == '"--comment=keep me"'


# the table against the real sbatch

def sbatch_reads(cluster, word):
    """What sbatch makes of one option word, from its own messages: (its
    whole name, "=" it needs a value / "" it takes none / "?" neither), or
    ("ambiguous", names) or ("unknown", None)."""
    def said(arg):
        r = subprocess.run(["sbatch", arg], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=60, env=dict(os.environ, SLURM_CONF=cluster.conf))
        return r.stderr
    first = said(word)
    m = re.search(r"option '--([a-z-]+)' requires an argument", first)
    if m:
        return m.group(1), "="
    if "is ambiguous" in first:
        return "ambiguous", sorted(re.findall(r"'--([a-z-]+)'", first.split("possibilities:")[1]))
    if "unrecognized option" in first:
        return "unknown", None
    m = re.search(r"option '--([a-z-]+)' doesn't allow an argument", said(word + "=x"))
    return (m.group(1), "") if m else (None, "?")


@pytest.mark.slurm
@pytest.mark.root
def test_the_option_table_is_sbatchs(slurm_cluster):
    cluster = slurm_cluster.ensure()
    names = set()
    for letter in "abcdefghijklmnopqrstuvwxyz":  # every name sbatch has, from its own lists
        name, found = sbatch_reads(cluster, "--" + letter)
        names.update(found if name == "ambiguous" else [name] if name not in ("unknown", None) else [])
    names |= {n for n in flightjobd.SBATCH_OPTIONS if n[0] in "jkl"}  # a letter of one option: checked below
    assert names == set(flightjobd.SBATCH_OPTIONS)
    wrong = []
    for name, (short, kind) in flightjobd.SBATCH_OPTIONS.items():
        got = sbatch_reads(cluster, "--" + name)
        if got != ((name, kind) if kind != "?" else (None, "?")):
            wrong.append((name, kind, got))
        if short:
            r = subprocess.run(["sbatch", "-" + short], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=60, env=dict(os.environ, SLURM_CONF=cluster.conf))
            if ("requires an argument" in r.stderr) != (kind == "=") or "invalid option" in r.stderr:
                wrong.append(("-" + short, kind, r.stderr))
    assert not wrong


@pytest.mark.slurm
@pytest.mark.root
def test_abbreviations_read_as_sbatch_reads_them(slurm_cluster):
    cluster = slurm_cluster.ensure()
    prefixes = sorted({n[:k] for n in flightjobd.SBATCH_OPTIONS for k in range(2, len(n)) if k <= 5 or k == len(n) - 1})
    wrong = []
    for prefix in prefixes:
        name, found = sbatch_reads(cluster, "--" + prefix)
        try:
            ours = flightjobd.sbatch_option(prefix)
        except ValueError as e:
            if name != "ambiguous" or "could be any of" not in str(e):
                wrong.append((prefix, name, found, str(e)))
            continue
        kind = flightjobd.SBATCH_OPTIONS[ours][1]
        if (flightjobd.ALIASES.get(name, name), found) != ((ours, kind) if kind != "?" else (None, "?")):
            wrong.append((prefix, name, found, ours))
    assert not wrong and len(prefixes) > 200


# on the real cluster, through the app as a real user

@pytest.fixture(scope="module")
def site(slurm_cluster, runtime, pam_service):
    slurm_cluster.ensure(accounting=True)
    users = UnixUsers()
    s = Site(runtime, slurm_cluster, users.create())
    yield s
    s.close()
    slurm_cluster.run("scancel", "--user", s.user.name)
    users.remove_all()


@pytest.mark.slurm
@pytest.mark.root
def test_the_options_reach_slurm(site, slurm_cluster):
    sid = site.script("sleep 60")
    job = site.api("POST", "/api/jobs", {"script": sid, "answers": {}, "extra_options": (
        "--comment='hello from flightjob'\n--mail-type=END\n--begin=now+1hour\n-J extra-named")}, status=201)
    assert job["state"] == "PENDING" and job["scheduler_id"], job.get("reason_text")
    shown = flightjobd.parse_scontrol(slurm_cluster.run("scontrol", "show", "job", job["scheduler_id"]))
    assert shown["Comment"].strip() == "hello from flightjob" and shown["MailType"] == "END"
    assert shown["JobName"] == "extra-named"
    row = slurm_cluster.run("squeue", "--noheader", "--jobs", job["scheduler_id"], "--Format=Comment:60,Name:30")
    assert row.split() == ["hello", "from", "flightjob", "extra-named"]
    assert job["extra_options"] == ["--comment=hello from flightjob", "--mail-type=END", "--begin=now+1hour",
                                    "--job-name=extra-named"]
    page = site.pages.get("/jobs/" + job["id"])
    assert "--mail-type=END" in page.html.select_one("#extra-options").text
    site.api("POST", "/api/jobs/%s/cancel" % job["id"])


@pytest.mark.slurm
@pytest.mark.root
def test_an_option_slurm_refuses_is_shown_in_sbatchs_words_beside_the_field(site):
    sid = site.script("true")
    job = site.api("POST", "/api/jobs", {"script": sid, "answers": {},
                                         "extra_options": "--constraint=nosuch\n--comment=kept"}, status=201)
    assert job["state"] == "FAILED" and job["raw_state"] == "REFUSED"
    assert "Invalid feature specification" in job["reason_text"]
    page = site.pages.get("/jobs/" + job["id"])
    back = page.click(linkid="again-with-answers")
    field = back.html.select_one("#field-extra_options")
    assert "Invalid feature specification" in field.select_one(".field-error").text
    assert field.select_one("textarea").text == "--constraint=nosuch\n--comment=kept"
    assert not back.html.select_one("#field-time .field-error")


@pytest.mark.slurm
@pytest.mark.root
def test_a_refusal_naming_an_extra_option_stands_beside_the_field_not_a_question(site):
    """sbatch's words name --mem-per-cpu, and "cpu", which alone points at
    the smp template's question "CPU cores" (--cpus-per-task)."""
    sid = site.script("true", template="smp")
    job = site.api("POST", "/api/jobs", {"script": sid, "answers": {"mem": "100M"},
                                         "extra_options": "--mem-per-cpu=100M"}, status=201)
    assert job["state"] == "FAILED" and "mutually exclusive" in job["reason_text"]
    back = site.pages.get("/scripts/%s/submit?from_job=%s" % (sid, job["id"]))
    assert "mutually exclusive" in back.html.select_one("#field-extra_options .field-error").text
    assert len(back.html.select(".field-error")) == 1
