# PatentCLIP Search. Set-up is two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROTOS := $(wildcard protos/patentclip/v1/*.proto)

.PHONY: install tools demo test test-unit proto proto-check lint clean bench-ingest bench-query \
        experiment-loss dashboards up down bench-encoder bench-search bench-latency bench-query-modes bench \
        bench-quick soak bench-backfill bench-gpu bench-train bench-gate bench-web bench-figures bench-parts
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
COMPOSE_FILE := deploy/compose/docker-compose.yml

install: $(STAMP)

# torch and torchvision first, pinned: pip takes them from local wheels where they exist.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# promtool/prometheus, docker-compose (Debian) and kubectl for the deployment tests.
tools: .tools/.installed

.tools/.installed: scripts/install_tools.sh
	bash scripts/install_tools.sh
	mkdir -p .tools && touch .tools/.installed

demo: install
	PY=$(PY) bash scripts/demo.sh

# Four workers (pytest-xdist) on two cores: much of the suite waits on its services'
# processes, so more workers overlap that waiting (measured: 9:28 with two, 8:35 with
# three, on the 2-core Intel VM; 10:17-10:20 with three and 9:53 with four for 828 tests on
# the 2-core AMD EPYC VM). Each test file stays on one worker, and every test on the real
# Milvus server shares one worker (tests/conftest.py: pytest_xdist_make_scheduler).
test: install tools
	$(PY) -m pytest -n 4

test-unit: install
	$(PY) -m pytest tests/unit

# Regenerate the committed protobuf/gRPC code from protos/ (tests fail if they drift).
proto: install
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. $(PROTOS)

# Benchmarks (not tests): results, a table and a plot under reports/.
bench-ingest: install
	$(PY) -m benchmarks.ingest --out reports/bench-ingest $(BENCH_ARGS)

bench-query: install
	$(PY) -m benchmarks.query --out reports/bench-query $(BENCH_ARGS)

# Encoder backends (eager, torch, onnx, int8) side by side: speed, parity, efficiency.
bench-encoder: install
	$(PY) -m benchmarks.encoder --out reports/bench-encoder $(BENCH_ARGS)

# Exact numpy vs Milvus Lite vs Milvus server at 10k/100k/1M: build, memory, QPS, recall.
bench-search: install
	$(PY) -m benchmarks.search --out reports/bench-search $(BENCH_ARGS)

# Where a gRPC query's time goes: decode, encode, lookup, search, group, serialize, gRPC.
bench-latency: install
	$(PY) -m benchmarks.latency --out reports/bench-latency $(BENCH_ARGS)

# Every benchmark, then the full-corpus projection (reports/scale/): about 2.5 h on 2 cores.
bench: install
	$(PY) -m benchmarks.all

# The same code paths at reduced sizes, under 10 minutes; results in reports/quick/.
bench-quick: install
	$(PY) -m benchmarks.all --quick

# The GPU paths in one prepared run (<= 8 min on one GPU; results in reports/bench-gpu/):
# encoder backends, ingest pipeline, batch-1 queries, a bf16 training step. On a GPU machine
# only; BENCH_ARGS=--dry-run runs the same paths at toy sizes on the CPU.
bench-gpu: install
	$(PY) -m benchmarks.gpu --out reports/bench-gpu $(BENCH_ARGS)

# The examiner web app in Chromium: page ready, text and drawing round trips (p50/p95 over 50
# each) beside the same queries over gRPC; and the screenshots in docs/screenshots/.
bench-web: install tools
	$(PY) -m benchmarks.web --out reports/bench-web --screenshots docs/screenshots $(BENCH_ARGS)

# Backfill: the reader's peak RSS on a bundle padded to 2 GB with utility members vs 50 MB.
bench-backfill: install
	$(PY) -m benchmarks.backfill --out reports/bench-backfill $(BENCH_ARGS)

# Sustained load (docs/reliability.md): 6 generated weeks ingested, then 5 minutes of 32
# clients (text/image/similar); fails on any failed request, lost row or >= 10% memory
# growth after warm-up. About 8 minutes on 2 cores. SOAK_ARGS="--backend server" for Milvus.
soak: install
	$(PY) -m benchmarks.soak --out reports/soak $(SOAK_ARGS)

# The distribution-aware loss experiment (about 15 min of CPU training): results, tables
# and a plot under docs/experiments/.
experiment-loss: install
	$(PY) -m benchmarks.loss_experiment --out docs/experiments $(EXPERIMENT_ARGS)

# The trainer's data path: peak RSS at 2k/20k/100k generated sheets (flat with the cache).
bench-train: install
	$(PY) -m benchmarks.train_memory --out reports/bench-train $(BENCH_ARGS)

# The rollout gate's promotion rates on simulated per-query results, by evaluation size.
# The query modes measured: noun share dense vs hybrid, IMPACT caption -> patent by BM25,
# photo mode on generated photos (docs/retrieval.md).
bench-query-modes: install
	$(PY) -m benchmarks.query_modes --out reports/bench-query-modes $(BENCH_ARGS)

# Figure segmentation and "FIG. n" labels (Tesseract) on every real shared grant's sheets.
bench-figures: install tools
	$(PY) -m benchmarks.figures --out reports/bench-figures $(BENCH_ARGS)

bench-parts: install tools
	$(PY) -m benchmarks.parts --out reports/bench-parts $(BENCH_ARGS)

bench-gate: install
	$(PY) -m benchmarks.gate_rates --out reports/bench-gate $(BENCH_ARGS)

lint: install
	$(PY) -m ruff check .

# Regenerate deploy/grafana/dashboards/*.json from deploy/grafana/dashboards.py.
dashboards: install
	$(PY) deploy/grafana/dashboards.py

# One host with Docker: Milvus, Kafka, the three services, Prometheus and Grafana.
up:
	$(COMPOSE) -f $(COMPOSE_FILE) up -d --build

down:
	$(COMPOSE) -f $(COMPOSE_FILE) down

clean:
	rm -rf data/demo .pytest_cache
