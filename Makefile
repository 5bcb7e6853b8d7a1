# Developer tasks for tfp_vi_estimators.  Needs only python3 and make:
# every target that runs code first builds ./.venv (see `venv`).
#
#   make report  set up the venv, then run the main job: the report (--quick) into ./report
#   make demo    set up the venv, then fit one posterior with each estimator
#   make test    set up the venv, then run the test suite (RUN_SLOW=1 adds slow tests)
#   make lint    ruff check + ruff format --check + lint-imports (layer contracts)
#   make docs    build the documentation site into ./site (strict)
#   make bench   speed of tfp_vi_estimators against tfp.vi

PYTHON ?= python3
VENV   := .venv
STAMP  := .venv.stamp
VPY    := $(VENV)/bin/python

# Quieter TensorFlow start-up; override with `make test TF_CPP_MIN_LOG_LEVEL=0`.
TF_CPP_MIN_LOG_LEVEL ?= 2
export TF_CPP_MIN_LOG_LEVEL

.PHONY: venv report demo test lint docs bench clean

# pyvenv.cfg is a real file written by `python -m venv` (bin/python is a symlink
# whose mtime is the interpreter's), so a deleted and recreated venv is newer
# than the stamp and triggers a reinstall.
$(VENV)/pyvenv.cfg:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the venv is new or setup.py changed.  The stamp is touched
# last, so an interrupted install is retried on the next run.
$(STAMP): setup.py $(VENV)/pyvenv.cfg
	$(VPY) -m pip install --upgrade pip
	$(VPY) -m pip install -e '.[test,docs,report]'
	touch $(STAMP)

venv: $(STAMP)

report: venv
	$(VPY) -m tfp_vi_estimators report --quick --out report

demo: venv
	$(VPY) -m tfp_vi_estimators demo

# pytest's exit 5 (no tests collected) fails the target like any other failure.
test: venv
	$(VPY) -m pytest -q
	@if [ "$${RUN_SLOW:-}" = "1" ]; then \
		echo "== slow tests (RUN_SLOW=1) =="; \
		$(VPY) -m pytest -q -m slow || { rc=$$?; \
			if [ $$rc -eq 5 ]; then \
				echo "error: RUN_SLOW=1 but no test is marked slow (pytest exit 5)" >&2; \
			fi; \
			exit $$rc; }; \
	fi

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

docs: venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

bench: venv
	$(VPY) benchmarks/speed_vs_tfp.py

clean:
	rm -rf site build *.egg-info
