"""A worker's answer past flightjobd.SPOOL bytes is spooled to a file as it
arrives (Lines' spill) and checked a value at a time (spooled_answer):
what is refused, what is sent on from the file, what is parsed whole."""
import json
import tempfile
import threading

import pytest

import flightjobd

LIST = {"jobs": [], "broken": [], "total": 0, "page": 1, "per_page": 50, "query": {}, "columns": ["name"]}


def spooled(text):
    f = tempfile.TemporaryFile()
    f.write(text.encode() if isinstance(text, str) else text)
    f.seek(0)
    return f


def answer(op, text, raw=True):
    return flightjobd.spooled_answer(op, spooled(text), 8 << 20, raw, 0.2)


def test_lines_spill_a_long_line_to_a_file_and_hand_it_over_from_its_start():
    lines = flightjobd.Lines(1000, spill=100)
    assert lines.push(b"short\n" + b"x" * 60) == [(bytearray(b"short"), False)]
    (line, cut), = lines.push(b"y" * 60 + b"\nnext")
    assert not isinstance(line, bytearray) and not cut
    assert line.read() == b"x" * 60 + b"y" * 60
    assert isinstance(lines.line, bytearray) and lines.line == b"next"
    lines.push(b"z" * 2000)  # past the limit: the rest dropped, never written
    assert lines.overflow and lines.line.tell() == 1000


def test_an_honest_answer_is_sent_on_from_its_file_numbers_split_between_pieces_and_all():
    text = json.dumps(dict(LIST, jobs=[], total=12345678901234, page=1))
    f = answer("jobs.list", text)
    assert hasattr(f, "read") and f.read() == text.encode()
    # elements decoded from pieces of 4 KiB that double: a number at a piece's end read whole
    pick = [{"id": "%05d" % i, "can": True} for i in range(20000)] + [{"id": "x" * 4070, "can": True}]
    assert answer("jobs.pick", json.dumps(pick)).read() == json.dumps(pick).encode()
    assert answer("whoami", ' {"n": %s} ' % ("9" * 4200)).read().strip().startswith(b'{"n": 999')
    assert answer("jobs.list", json.dumps(LIST), raw=False) == LIST  # a page: parsed whole


@pytest.mark.parametrize("text, words", [
    (json.dumps({"jobs": [{"id": "x" * 1000}] * 3000, "broken": []}), "not its answer"),  # a record's fields missing
    (json.dumps({"jobs": ["x" * (8 << 20)]}), "not its answer"),  # a string where a job goes: refused unread
    (json.dumps([{}] * 1000000), "not its answer"),  # a list where an object goes
    (json.dumps(dict(LIST, total="12")), "not its answer"),
    ('{"jobs": [], "jobs": []}', "not its answer"),  # a key twice
    ('{"jobs": [] "broken": []}', "not JSON"),
    (json.dumps(LIST)[:-1], "not JSON"),
    (json.dumps(LIST) + " []", "not JSON"),
    ("[" * 100000 + "]" * 100000, "not its answer"),
    (json.dumps(dict(LIST, jobs=[{"tasks": [[]] * 400000}])), "too large to read"),  # dense: refused undecoded
], ids=["fields missing", "a string for a job", "a list for the answer", "a wrong total", "a key twice", "no comma",
        "cut short", "more after it", "nested deep", "dense"])
def test_an_answer_of_the_wrong_shape_or_no_json_is_a_clear_503(text, words):
    with pytest.raises(flightjobd.Unavailable) as e:
        answer("jobs.list", text)
    assert words in e.value.message


def test_a_value_past_the_bound_is_parsed_whole_one_answer_at_a_time():
    big = dict(LIST, query={"q": "x" * (2 << 20)})  # past SMALL_ANSWER: checked whole
    got = answer("jobs.list", json.dumps(big))
    assert isinstance(got, flightjobd.RawJSON) and json.loads(got) == big
    assert answer("jobs.list", json.dumps(big), raw=False) == big
    with pytest.raises(flightjobd.Unavailable):
        answer("jobs.list", json.dumps(dict(big, total=None)))
    taken = threading.Event()

    def hold():
        with flightjobd.BIG_PARSE:
            taken.set()
            done.wait(5)
    done = threading.Event()
    t = threading.Thread(target=hold)
    t.start()
    try:
        taken.wait(5)
        with pytest.raises(flightjobd.Busy) as e:  # another answer is being parsed whole: a bounded wait
            answer("jobs.list", json.dumps(big))
        assert "another large answer" in e.value.message
    finally:
        done.set()
        t.join()
