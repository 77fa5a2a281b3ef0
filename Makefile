# tierkv: the two commands of the quick start, and a few more.
#   make run    install what is missing, build Release, run tierkvd with the embedded defaults
#   make test   install what is missing, build, run every test (ctest), then the unit and integration
#               tests again under ASan/UBSan
.PHONY: all deps build run test test-release test-asan bench clean

JOBS ?= $(shell nproc)
BUILD := build/release

all: build

deps:
	./deploy/install-deps.sh

build: deps
	cmake --preset release >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

run: build
	@mkdir -p var
	@echo "tierkvd: control socket ./var/tierkvd.sock, metrics http://127.0.0.1:9464/metrics (Ctrl-C stops)"
	exec $(BUILD)/daemon/tierkvd

test: test-release test-asan

test-release: build
	ctest --preset release -j $(JOBS)

test-asan: deps
	cmake --preset asan >/dev/null
	cmake --build build/asan -j $(JOBS)
	ctest --preset asan -j $(JOBS)

clean:
	rm -rf build
