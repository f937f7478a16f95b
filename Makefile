# The two commands a newcomer needs: `make quickstart` and `make test`.
# Each creates or updates .venv on first use (scripts/install.sh), then runs.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mentalchat-installed

.PHONY: quickstart test install bench clean

$(STAMP): pyproject.toml scripts/install.sh scripts/install_labelstudio.sh
	bash scripts/install.sh
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(PY) jobs/pipeline.py --config configs/quickstart.yaml --output runs/quickstart

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf runs .pytest_cache
