"""The map in flightjobd.py's docstring is true, and stays so.

Read from the file's syntax tree alone (no root, no daemon, no import of
flightjobd): the banner sections come in the order of the docstring's table
of contents; a section uses only names defined in sections above it (a Store
part only methods of the parts above it); no class is over MAX_CLASS lines,
no function over MAX_FUNCTION, no section over MAX_SECTION; a page handler,
an API handler and a worker operation never share a name.
"""
import ast
import collections
import os
import re

FILE = os.environ.get("FLIGHTJOB_STRUCTURE_FILE") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "flightjobd.py")
MAX_CLASS, MAX_FUNCTION, MAX_SECTION = 450, 150, 800
BANNER_RE = re.compile(r"^# (.+?) #{4,}$")

# (name, the section that uses it) -> why it may be used there although it
# is defined further down. The one place such an exception is allowed.
EXCEPTIONS = {}


def _source():
    with open(FILE, encoding="utf-8") as f:
        return f.read()


SOURCE = _source()
TREE = ast.parse(SOURCE)
LINES = SOURCE.split("\n")
BANNERS = [(n + 1, BANNER_RE.match(line).group(1)) for n, line in enumerate(LINES) if BANNER_RE.match(line)]


def section(lineno):
    """The title of the section line lineno is in (None: above the first)."""
    title = None
    for start, name in BANNERS:
        if start > lineno:
            break
        title = name
    return title


ORDER = {name: n for n, (_, name) in enumerate(BANNERS)}


def toc():
    """The docstring's table of contents: its entries' names, in order."""
    doc = ast.get_docstring(TREE)
    block = doc.split("Each section uses only those above it.\n\n", 1)[1].split("\n\n", 1)[0]
    return [re.split(r"\s{2,}", line.strip())[0] for line in block.split("\n") if re.match(r"^    \S", line)]


def matches(entry, title):
    if entry.endswith(": ..."):
        return title.startswith(entry[:-3])
    return title == entry or (", " in entry and title in entry.split(", ") and entry not in ORDER)


def test_sections_come_in_the_table_of_contents_order():
    entries = toc()
    places = []
    for _, title in BANNERS:
        found = [n for n, entry in enumerate(entries) if matches(entry, title)]
        assert found, "section %r is not in the docstring's table of contents" % title
        places.append((found[0], title))
    assert places == sorted(places, key=lambda p: p[0]), \
        "sections out of the table of contents' order: %s" % [t for _, t in places]
    missing = [e for e in entries if not any(matches(e, t) for _, t in BANNERS)]
    assert not missing, "table of contents entries with no section: %s" % missing


def _module_names():
    """Name -> the lines of the module-level statements that define it."""
    out = collections.defaultdict(list)
    for node in TREE.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out[node.name].append(node.lineno)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                out[(a.asname or a.name).split(".")[0]].append(node.lineno)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                for n in ast.walk(target):  # names bound, not those a subscript or attribute uses
                    if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                        out[n.id].append(node.lineno)
    return out


def _locals(fn):
    """The names a function (or lambda) binds: its arguments and assignments."""
    out = {a.arg for a in ast.walk(fn.args) if isinstance(a, ast.arg)}
    for n in ast.walk(fn):
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            out.add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n is not fn:
            out.add(n.name)
        elif isinstance(n, ast.arg):
            out.add(n.arg)
        elif isinstance(n, ast.ExceptHandler) and n.name:
            out.add(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            out.update((a.asname or a.name).split(".")[0] for a in n.names)
    return out


def test_a_section_uses_only_names_defined_above_it():
    defined = {name: min(ORDER.get(section(line), -1) for line in lines)
               for name, lines in _module_names().items()}
    broken = set()

    def visit(node, shadowed):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            shadowed = shadowed | _locals(node)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in defined \
                and node.id not in shadowed:
            where = section(node.lineno)
            if defined[node.id] > ORDER.get(where, -1) and (node.id, where) not in EXCEPTIONS:
                broken.add("%s (line %d, in %r) is defined further down" % (node.id, node.lineno, where))
        for child in ast.iter_child_nodes(node):
            visit(child, shadowed)
    visit(TREE, frozenset())
    assert not broken, sorted(broken)


def _classes():
    return {node.name: node for node in TREE.body if isinstance(node, ast.ClassDef)}


def _store_parts():
    """The Store's parts (StorePart and the classes made from it)."""
    classes, parts = _classes(), {"StorePart"}
    for name, node in classes.items():
        if any(isinstance(b, ast.Name) and b.id in parts for b in node.bases):
            parts.add(name)
    return [classes[name] for name in parts]


def test_a_store_part_uses_only_methods_of_the_parts_above_it():
    parts = _store_parts()
    where = {}  # method -> the first section a part defines it in
    for part in parts:
        for node in part.body:
            if isinstance(node, ast.FunctionDef):
                place = ORDER[section(node.lineno)]
                where[node.name] = min(where.get(node.name, place), place)
    broken = set()
    for part in parts:
        for node in ast.walk(part):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self" \
                    and where.get(node.attr, -1) > ORDER[section(node.lineno)] \
                    and (node.attr, section(node.lineno)) not in EXCEPTIONS:
                broken.add("%s.%s (line %d) is a method of a part further down" % (part.name, node.attr, node.lineno))
    assert not broken, sorted(broken)


def test_no_class_function_or_section_is_too_long():
    long = ["class %s: %d lines" % (n.name, n.end_lineno - n.lineno + 1) for n in ast.walk(TREE)
            if isinstance(n, ast.ClassDef) and n.end_lineno - n.lineno + 1 > MAX_CLASS]
    long += ["function %s (line %d): %d lines" % (n.name, n.lineno, n.end_lineno - n.lineno + 1)
             for n in ast.walk(TREE) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
             and n.end_lineno - n.lineno + 1 > MAX_FUNCTION]
    ends = [start for start, _ in BANNERS[1:]] + [len(LINES) + 1]
    long += ["section %s: %d lines" % (title, end - start) for (start, title), end in zip(BANNERS, ends)
             if end - start > MAX_SECTION]
    assert not long, long


def _decorated(node, name):
    """The first call decorator `name(...)` of a function, or None."""
    return next((d for d in node.decorator_list if isinstance(d, ast.Call) and isinstance(d.func, ast.Name)
                 and d.func.id == name), None)


def test_pages_api_handlers_and_worker_operations_never_share_a_name():
    routes = [n for n in TREE.body if isinstance(n, ast.FunctionDef) and _decorated(n, "route")]
    assert routes
    for handler in routes:
        api = any(k.arg == "api" and getattr(k.value, "value", False) is True
                  for k in _decorated(handler, "route").keywords)
        assert handler.name.startswith("api_" if api else "page_"), \
            "%s: an API handler's name begins api_, a page handler's page_" % handler.name
    operations = [n for c in _classes().values() for n in c.body
                  if isinstance(n, ast.FunctionDef) and _decorated(n, "operation")]
    assert operations
    functions = collections.Counter(n.name for n in ast.walk(TREE) if isinstance(n, ast.FunctionDef))
    shared = sorted(n.name for n in routes + operations if functions[n.name] > 1)
    assert not shared, "named twice: %s" % shared
    twice = sorted(name for name, lines in _module_names().items() if len(lines) > 1)
    assert not twice, "module-level names defined twice: %s" % twice


def test_no_two_test_modules_share_a_name():
    """pytest (rootdir mode, no packages) cannot collect two test modules of
    one name in one run: the shard holding both would error at collection."""
    tests = os.path.dirname(os.path.abspath(__file__))
    names = collections.Counter(name for where, _, files in os.walk(tests) if "node_modules" not in where
                                for name in files if name.startswith("test_") and name.endswith(".py"))
    assert not [n for n, k in names.items() if k > 1], names
