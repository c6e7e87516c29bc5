# Ops Lab: one path for people and CI. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
# Notebooks run in nbval's lax mode: every cell must run without error. They are committed
# without outputs, so there is nothing stored to compare: cells assert their own claims.
NBVAL := --nbval-lax --nbval-cell-timeout=300
PYTEST_ARGS ?=

.PHONY: help setup system-deps venv lab test lint format test-app test-notebooks check-clean serve clean test-jupyterlab exercises grade learner-dist test-notebooks-docker \
	book book-instructor test-book bench hub collect

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: system-deps venv  ## install system packages and the Python environment

system-deps:  ## nginx, Prometheus, podman... (apt when root/sudo; otherwise prints how)
	bash scripts/install-system-deps.sh

venv: $(VENV)/.installed  ## the Python virtual environment in .venv

$(VENV)/.installed: requirements.txt pyproject.toml binder/jupyterlab-overrides.json \
		sample_app/ops/k8s/requirements-checkov.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	# JupyterLab's defaults for this course: no "get official Jupyter news?" box over the outputs.
	mkdir -p $(VENV)/share/jupyter/lab/settings
	cp binder/jupyterlab-overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	# checkov (section 08) in a venv of its own: its many pins stay out of .venv.
	$(BIN)/python -c 'from opslab.k8s import checkov_binary; checkov_binary()'
	touch $@

lab: setup  ## set everything up and open the course in JupyterLab
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/00-setup.ipynb

test: setup  ## set everything up and run every check: lint, tests, notebooks, both books, browser
	$(MAKE) --no-print-directory lint test-app test-notebooks test-notebooks-docker book \
		book-instructor test-book check-clean

lint:  ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format:  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Two passes: the tests that neither time anything nor touch machine-wide state, $(JOBS) at a
# time (pytest-xdist, a module per worker), then the `alone` ones (tests/conftest.py ALONE)
# one by one with nothing beside them.
JOBS ?= 2
PARALLEL := -n $(JOBS) --dist loadfile
test-app:  ## pytest: the sample app and the toolkit (the book's browser test is test-book)
	$(BIN)/pytest tests --ignore=tests/book -m "not alone" $(PARALLEL) $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(BIN)/pytest tests --ignore=tests/book -m alone $(PYTEST_ARGS) || [ $$? -eq 5 ]

# Each notebook runs once per `make test`: opslab.nbexec fails on any cell error (as nbval's lax
# mode does) and, strict, keeps the executed notebooks in the book's cache, so the two book
# builds after it publish these outputs without running anything again. Notebooks that
# measure timings ("opslab": {"measures": true}) run alone; the others two at a time. As a
# learner's machine does (and a CI image may not), Python writes bytecode: section 04 counts
# the __pycache__ that keeps a rotated secret.
NBEXEC_ARGS ?=
test-notebooks:  ## run every notebook top to bottom once (sections, exercises, solutions)
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m opslab.nbexec notebooks exercises solutions \
		--jobs $(JOBS) $(NBEXEC_ARGS)

# The container section again, on Docker Engine (test-notebooks takes the first engine found:
# podman here). The tests run their container parts on both engines by themselves.
CONTAINER_NOTEBOOKS := notebooks/02-container-images.ipynb
test-notebooks-docker:  ## nbval: the container section on Docker Engine (skipped without it)
	@if $(BIN)/python -c 'import sys; from opslab.caps import check, strict_mode; \
		sys.exit(0 if check("docker-engine").available or strict_mode() else 1)'; then \
		OPSLAB_ENGINE=docker $(BIN)/pytest $(NBVAL) $(CONTAINER_NOTEBOOKS) $(PYTEST_ARGS); \
	else echo "Docker Engine is not installed: the container section ran on podman only"; fi

# The book runs every notebook (cached in _build/.jupyter_cache) and fails on any cell error or
# Sphinx warning. Strict: a missing tool is an error, so no published page has skipped cells.
book: venv  ## build the learner book into _build/html (OPSLAB_*_URL: launch buttons)
	OPSLAB_STRICT=1 $(BIN)/python -m opslab.book build

book-instructor: venv  ## the book with the solutions, into _build/instructor/_build/html
	OPSLAB_STRICT=1 $(BIN)/python -m opslab.book build --instructor

test-book:  ## open the built book (and a real JupyterLab) in headless Chromium
	$(BIN)/pytest tests/book -m "not alone" $(PARALLEL) $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(BIN)/pytest tests/book -m alone $(PYTEST_ARGS) || [ $$? -eq 5 ]

test-jupyterlab:  ## a real JupyterLab in Chromium: run a section, turn a panel, restart the kernel
	$(BIN)/pytest tests/book/test_jupyterlab.py $(PYTEST_ARGS)

exercises:  ## regenerate exercises/ and the autograder zip from solutions/ (otter assign)
	$(BIN)/python -m opslab.grade_class exercises

SUBMISSIONS ?= tests/grading/submissions
grade:  ## grade a folder of notebooks in a sandbox (root): -> grades.csv, grades.png, grades-feedback/
	$(BIN)/python -m opslab.grade_class grade $(SUBMISSIONS) --out grades.csv

learner-dist: venv  ## the course without solutions or hidden tests: _build/learner (+ .tar.gz)
	$(BIN)/python -m opslab.dist

# Not part of `make test`: figures, not checks. BENCH_COURSE=1 also times every notebook.
bench: venv  ## serving req/s and p99 as ratios to a bare ASGI app: _build/bench/report.md
	$(BIN)/python -m opslab.bench --out _build/bench $(if $(filter 1,$(BENCH_COURSE)),--course)

# A class on this machine (root): JupyterHub on loopback, each learner a Unix user with a
# private home, cgroup limits and a PID namespace; the nbgitpuller link it prints clones the
# learner distribution. Put it behind TLS (nginx, section 03) before learners reach it.
HUB_PORT ?= 8080
LEARNERS ?=
hub: venv  ## a class's JupyterHub on 127.0.0.1:HUB_PORT (root); LEARNERS="ada bo" adds learners
	$(if $(LEARNERS),$(BIN)/python -m opslab.hub learners add $(LEARNERS))
	$(BIN)/python -m opslab.hub serve --port $(HUB_PORT)

# Then: make grade SUBMISSIONS=_build/hub/submissions/review (a checkpoint: its --autograder).
ASSIGNMENT ?= review
collect:  ## copy each hub learner's exercises/ASSIGNMENT.ipynb to _build/hub/submissions/ASSIGNMENT
	$(BIN)/python -m opslab.hub collect $(ASSIGNMENT) --out _build/hub/submissions/$(ASSIGNMENT)

# Everything the tests and notebooks start must be stopped by them.
LEFTOVERS := [s]ample_app serve|[n]ginx: master process .*opslab|[p]rometheus --config.file=.*opslab|[p]odman system service|[d]ockerd --config-file .*opslab|[j]upyterhub -f|[c]onfigurable-http-proxy|[j]upyterhub-singleuser
check-clean:  ## fail if a server started by the tests or notebooks is still running
	@sleep 1; if pgrep -af '$(LEFTOVERS)'; then echo "left running (see above)"; exit 1; fi
	@if ps -eo uid=,pid=,args= | awk '$$1 >= 1900000000 && $$1 < 1900000128' | grep .; then \
		echo "grading sandbox processes left running (see above)"; exit 1; fi
	@if command -v iptables >/dev/null && iptables -t nat -S 2>/dev/null | grep 'opslab private dockerd'; then \
		echo "the private dockerd's NAT rule was left (see above)"; exit 1; fi
	@echo "no servers left running"

# Unset, APP_ENV means production (fail closed): local runs ask for development explicitly.
serve: venv  ## run the sample app on PORT (default 8000), as development
	cd $(CURDIR) && APP_ENV=development $(BIN)/python -m sample_app serve --port $(PORT)

clean:  ## remove the venv, caches and local data
	rm -rf $(VENV) data .pytest_cache .ruff_cache _build
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
