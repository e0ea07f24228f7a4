PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ENGINE_STAMP := $(VENV)/.engine-installed
LLAMA_SERVER := $(BIN)/llama-server
# llama.cpp is compiled from source (~10 min on 2 cores). GGML_NATIVE=OFF builds the portable AVX2/FMA/F16C
# variant, so the wheel pip caches also runs on another x86-64 CPU; set ENGINE_CMAKE_ARGS to change it.
ENGINE_CMAKE_ARGS ?= -DGGML_NATIVE=OFF

.PHONY: run test test-engine lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/tokenomy plan --html report.html

# Two workers, each test file on one of them (its module-scoped servers start once): the suite takes ~3.5 min on
# 2 idle cores instead of ~5.5, and stays under 10 with both cores busy.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

$(ENGINE_STAMP): $(STAMP)
	@echo "installing the engine extra (llama-cpp-python is built from source: ~10 min on 2 cores)"
	start=$$(date +%s); CMAKE_ARGS="$(ENGINE_CMAKE_ARGS)" $(BIN)/pip install --quiet -e '.[engine]' \
	  && echo "engine extra installed in $$(( $$(date +%s) - start )) s"
	touch $(ENGINE_STAMP)

# llama.cpp's own server (Prometheus metrics, for `tokenomy watch`), built from the llama.cpp the engine extra
# vendors, with the same flags; cached per machine in ~/.cache/tokenomy (~5-10 min on 2 cores the first time).
$(LLAMA_SERVER): $(ENGINE_STAMP)
	scripts/build_llama_server.sh $(BIN)/python $@ "$(ENGINE_CMAKE_ARGS)"

# Heavy tests with the real llama.cpp engine, installed first; "no tests collected" (exit 5) is not a failure.
# TOKENOMY_REQUIRE_ENGINE=1: a missing engine fails the tests here instead of skipping them.
test-engine: $(ENGINE_STAMP) $(LLAMA_SERVER)
	TOKENOMY_REQUIRE_ENGINE=1 $(BIN)/python -m pytest -q -m engine; rc=$$?; if [ $$rc -eq 5 ]; then echo "no engine tests collected"; exit 0; fi; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/plan_sweep.py

clean:
	rm -rf $(VENV) report.html
