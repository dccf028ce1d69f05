# The two commands: `make demo` (run the main job on the embedded default) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
ENV := source scripts/airflow-env.sh &&

.PHONY: demo preview what-if transition-demo test lint airflow bench soak lock clean sandbox-powerschool sandbox-learning explain score retention

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(ENV) $(PY) scripts/demo.py

# A preview (dry run) of the demo district's import on the demo's state: nothing is sent;
# the report goes to var/previews/demo/<run>/ (PREVIEW_ARGS=--email also emails it).
preview: $(VENV)/.installed
	$(ENV) $(PY) scripts/preview.py $(PREVIEW_ARGS)

# A past run's staged inputs through other mappings or settings, compared with what it produced
# (include/mappings/README.md); nothing is sent. WHAT_IF_ARGS="--set co_teacher_class_limit=2".
what-if: $(VENV)/.installed
	$(ENV) $(PY) scripts/what_if.py $(WHAT_IF_ARGS)

# Existing Learning users moved onto their Import IDs, then the first import (sandboxes, var/transition-demo/).
# A real district: scripts/transition.py plan <district> [--csv FILE], then apply --plan ID --approve.
transition-demo: $(VENV)/.installed
	$(ENV) $(PY) scripts/transition.py demo

# The end-to-end tests run DAGs with dag.test(), which needs Airflow's metadata database:
# migrate it first (idempotent, a few seconds). The tests get one of their own (SQLite under
# .airflow-test/ unless SIS_LEARNING_METADATA_URL says otherwise), not `make airflow`'s .airflow/:
# a run a test leaves unfinished on purpose (killed mid-way, waiting for approval) would hold
# the demo DAG's next runs in "queued" there (one run at a time per district).
test: export AIRFLOW_HOME := $(CURDIR)/.airflow-test
test: $(VENV)/.installed lint
	$(ENV) $(VENV)/bin/airflow db migrate > .airflow-migrate.log 2>&1 || { cat .airflow-migrate.log; exit 1; }
	$(ENV) $(PY) -m pytest -n 2 --dist loadgroup tests

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check dags plugins sandbox scripts tests bench docker
	$(VENV)/bin/ruff check --preview --select AIR3 dags plugins
	$(VENV)/bin/ruff format --check dags plugins sandbox scripts tests bench docker

airflow: $(VENV)/.installed
	$(ENV) $(PY) scripts/airflow_standalone.py

# Be a teacher: enter a score in the demo's Learning (make airflow running) and watch PowerTeacher get it.
score: $(VENV)/.installed
	@$(ENV) $(PY) scripts/teacher.py $(if $(CLASS),--class-id "$(CLASS)") $(if $(STUDENT),--student "$(STUDENT)") $(if $(SCORE),--score "$(SCORE)")

# Why is this student, teacher, parent or class (not) in Learning? make explain ID=<DCID, number, login or email>
explain: $(VENV)/.installed
	@test -n "$(ID)" || { echo "usage: make explain ID=<DCID, number, login or email> [DISTRICT=demo]"; exit 2; }
	@$(ENV) AIRFLOW__LOGGING__LOGGING_LEVEL=WARNING $(PY) scripts/explain.py --district "$(or $(DISTRICT),demo)" "$(ID)"

# Remove a district's staged rows older than its retention settings (the report task does it after each successful run).
retention: $(VENV)/.installed
	@$(ENV) AIRFLOW__LOGGING__LOGGING_LEVEL=WARNING $(PY) scripts/retention.py --district "$(or $(DISTRICT),demo)" $(if $(DRY_RUN),--dry-run) $(if $(DAYS),--days "$(DAYS)") $(if $(CHANGES_DAYS),--changes-days "$(CHANGES_DAYS)")

bench: $(VENV)/.installed
	$(ENV) $(PY) bench/run.py

# 20 imports of the demo district under random faults, each checked against a clean import
# (docs/reliability.md); bounded (SOAK_MAX_MINUTES, default 14), loopback only.
soak: $(VENV)/.installed
	$(ENV) $(PY) bench/soak.py

sandbox-powerschool: $(VENV)/.installed
	$(ENV) $(PY) -m sandbox.powerschool --dataset demo

sandbox-learning: $(VENV)/.installed
	$(ENV) $(PY) -m sandbox.learning

# Re-pin the runtime lock from the virtualenv (keeps the header comment of requirements.txt).
lock:
	{ grep '^#' requirements.txt; $(PY) -m pip freeze | grep -viE '^(pytest|ruff|execnet|iniconfig|pytest-)'; } > requirements.lock.tmp && mv requirements.lock.tmp requirements.txt

clean:
	rm -rf .airflow var .sandbox
