# flightjobd: `make run` to try it, `make test` to test it.
PYTHON ?= python3
VENV ?= .venv
LISTEN ?= 127.0.0.1:8080
PREFIX ?= /usr/local
# The interpreter the installed daemon runs with (its dependencies are
# vendored for it).
INSTALL_PYTHON ?= /usr/bin/python3
DESTDIR ?=
LIBDIR = $(PREFIX)/lib/flight-job
PY = $(VENV)/bin/python

.PHONY: run test test-fast test-unit test-unit-venv lint bench install clean

# The virtual environment, rebuilt when a requirements file changes.
$(VENV)/stamp: requirements.txt requirements-dev.txt requirements-e2e.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements-dev.txt -r requirements-e2e.txt
	touch $@

# -m, not the file as a script: CPython keeps a script's syntax tree alive
# while it runs (~8 MB for this file).
run: $(VENV)/stamp
	$(PY) -m flightjobd --config etc/flight-job.toml --listen $(LISTEN)

# The whole suite, in four shards side by side (tests/run-shards); CI adds
# UNIT_PYTHONS="python3.9 python3.13" to run make test-unit under each.
UNIT_PYTHONS ?=
test: $(VENV)/stamp
	tests/run-shards $(PY) $(UNIT_PYTHONS)

# The fast tier, to run after every edit (under a minute): as any user (not
# root), no daemon as root, no Slurm, no browser, no fuzz, no real jobs
# waited for. A test needing one of those is left out by its marker
# (tests/support.py marks root every test using a fixture that needs root).
FAST = -m "not root and not slurm and not e2e and not slow and not jobs" --ignore=tests/e2e --ignore=tests/test_fuzz.py \
	--ignore=tests/test_fuzz_server.py -p no:cacheprovider
test-fast: $(VENV)/stamp
	$(PY) -m pytest -q $(FAST) tests

# What depends on the interpreter, under another one: make test-unit
# PYTHON=python3.9 (its own venv, .venv-3.9, rebuilt when a requirements
# file changes). The fast tier in-process, then (as root) workers and the
# fork server started under that interpreter (FLIGHTJOB_TEST_WORKER_PYTHON),
# PAM through it, and local jobs supervised by it.
UNIT_VENV = .venv-$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
test-unit-venv:
	@v=$(UNIT_VENV); \
	if [ ! -f $$v/stamp ] || [ requirements-dev.txt -nt $$v/stamp ] || [ requirements.txt -nt $$v/stamp ]; then \
		$(PYTHON) -m venv $$v && $$v/bin/pip install -q -r requirements-dev.txt && touch $$v/stamp || exit 1; \
	fi

test-unit: test-unit-venv
	@v=$(UNIT_VENV); \
	$$v/bin/python -m pytest -q $(FAST) tests && \
	FLIGHTJOB_TEST_WORKER_PYTHON=$$(readlink -f $$v/bin/python) $$v/bin/python -m pytest -q -p no:cacheprovider \
		-m "not slow" tests/test_workers.py tests/test_fork_server.py tests/test_auth.py tests/test_jobs_local.py

lint: $(VENV)/stamp
	$(VENV)/bin/ruff check --target-version py39 flightjobd.py tests

bench: $(VENV)/stamp
	$(PY) tests/bench.py

# Installs the daemon with its Python dependencies vendored beside it.
install: $(VENV)/stamp
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)/etc/flight-job/templates \
		$(DESTDIR)/etc/pam.d $(DESTDIR)/lib/systemd/system
	install -m 755 flightjobd.py $(DESTDIR)$(LIBDIR)/flightjobd.py
	cp -R templates share $(DESTDIR)$(LIBDIR)/
	chmod -R u=rwX,go=rX $(DESTDIR)$(LIBDIR)
	$(VENV)/bin/pip install -q --no-compile --only-binary=:all: --target $(DESTDIR)$(LIBDIR)/vendor \
		--python-version $$($(INSTALL_PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])') \
		-r requirements.txt
	chmod -R u=rwX,go=rX $(DESTDIR)$(LIBDIR)/vendor
	ln -sf ../lib/flight-job/flightjobd.py $(DESTDIR)$(PREFIX)/sbin/flightjobd
	test -e $(DESTDIR)/etc/flight-job/flight-job.toml || install -m 644 etc/flight-job.toml $(DESTDIR)/etc/flight-job/flight-job.toml
	install -m 644 etc/pam.d/flight-job $(DESTDIR)/etc/pam.d/flight-job
	sed -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@PYTHON@|$(INSTALL_PYTHON)|g' systemd/flightjobd.service \
		> $(DESTDIR)/lib/systemd/system/flightjobd.service

clean:
	rm -rf $(VENV) .venv-3.* test-output .pytest_cache .ruff_cache
