# make serve: set up and start the service on embedded defaults (SQLite and files under data/, no Redis).
# make test:  set up and run the whole test suite (lint, types, tests; starts Redis and PostgreSQL when they
#             do not answer).
SHELL := bash
VENV ?= .venv
BIN := $(VENV)/bin
# Keeps pip on torch's pinned version (see constraints.txt).
PIP_INSTALL := $(BIN)/pip install --quiet --constraint constraints.txt
# ... and on its CPU build: where PyTorch's CPU wheel index answers, pip finds torch 2.13.0+cpu there (a local
# version sorts above PyPI's 2.13.0, whose Linux wheel pulls gigabytes of CUDA packages). Where it does not
# answer (an offline machine with a local torch wheel on pip's find-links), pip takes that file. Evaluated
# only when installing; TORCH_INDEX= (empty) skips the index altogether.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_INDEX_OPTION = $(if $(TORCH_INDEX),$(shell python3 -c "import urllib.request; \
	urllib.request.urlopen('$(TORCH_INDEX)/torch/', timeout=5)" >/dev/null 2>&1 \
	&& echo --extra-index-url $(TORCH_INDEX)))
# Installed without its dependency list, which pulls triton (CUDA only); pyproject's engines extra has the rest.
WHISPER := openai-whisper==20250625
# Only its trained speaker encoder (resemblyzer/pretrained.pt) is used; its dependencies (librosa, webrtcvad) are not.
RESEMBLYZER := resemblyzer==0.1.4

.PHONY: setup serve worker test lint bench ffmpeg fonts redis chromium postgres

$(BIN)/yinzi: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	@echo "torch: $(or $(TORCH_INDEX_OPTION),no CPU wheel index reachable; pip's own sources (a local wheel))"
	$(PIP_INSTALL) $(TORCH_INDEX_OPTION) --editable '.[test,engines]'
	$(PIP_INSTALL) --no-deps $(WHISPER) $(RESEMBLYZER)
	@touch $@

setup: $(BIN)/yinzi ffmpeg fonts

serve: setup
	$(BIN)/yinzi serve

worker: setup
	$(BIN)/yinzi worker

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# A test file to a worker: module fixtures (a real-weights server, a browser) start once.
TEST_WORKERS ?= 2
test: lint redis postgres chromium
	$(BIN)/pytest --numprocesses $(TEST_WORKERS) --dist loadfile

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

# PDF reports draw every script with one font (YINZI_REPORT_FONT): Debian's WenQuanYi Micro Hei has Latin, Cyrillic
# and CJK glyphs.
REPORT_FONT ?= /usr/share/fonts/truetype/wqy/wqy-microhei.ttc
fonts:
	@if [ ! -f "$(REPORT_FONT)" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing fonts-wqy-microhei"; apt-get update -qq && apt-get install -y -qq fonts-wqy-microhei >/dev/null; \
	  else \
	    echo "PDF reports need a CJK font: sudo apt-get install -y fonts-wqy-microhei (or set YINZI_REPORT_FONT)"; \
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

# The console's browser tests drive Debian's Chromium through Playwright (Playwright's own download is not used).
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium"; apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "the browser tests need /usr/bin/chromium: sudo apt-get install -y chromium (they are skipped without it)"; \
	  fi; \
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
