# Two entry points for a fresh machine: `make run` and `make test`. Both are idempotent.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run baselines test bench lint format lock clean

# (Re)install only when the dependency set or the package metadata changed.
$(STAMP): constraints.txt setup.cfg pyproject.toml $(wildcard plugins/*/setup.cfg)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,bench]' $(patsubst %/setup.cfg,-e %,$(wildcard plugins/*/setup.cfg))
	touch $@

install: $(STAMP)

# The main job on the embedded default dataset (generated on first use).
run: install
	$(BIN)/vpr-bench run --method tscm --dataset synthetic --preset demo

# The two baselines TSCM is compared with, trained on the same demo (then: vpr-bench compare).
baselines: install
	$(BIN)/vpr-bench run --method gem --dataset synthetic --preset demo
	$(BIN)/vpr-bench run --method netvlad --dataset synthetic --preset demo

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# Speed goals live here, not in unit tests: each script prints ratios measured in one run.
bench: install
	$(BIN)/python benchmarks/mining.py
	$(BIN)/python benchmarks/kd_loss.py
	$(BIN)/python benchmarks/matching.py
	$(BIN)/python benchmarks/scale.py  # a 1 GB memory-mapped database, written once per run
	$(BIN)/python benchmarks/eval_throughput.py
	$(BIN)/python benchmarks/train_throughput.py  # demo and paper-size TSCM (minutes on a CPU)
	$(BIN)/python benchmarks/memory.py  # makes a 92k-image synthetic set once (minutes)

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

lock: install
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^vpr' > constraints.body
	{ head -3 constraints.txt; cat constraints.body; } > constraints.new && rm constraints.body && mv constraints.new constraints.txt

clean:
	rm -rf $(VENV) build *.egg-info
