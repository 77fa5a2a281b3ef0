# tierkv: the two commands of the quick start, and a few more.
#   make run    install what is missing, build Release, run tierkvd with the embedded defaults
#   make test   install what is missing, check the lock annotations (make tsa), build, run every test
#               (ctest), then the unit and integration tests again under ASan/UBSan
#   make tsa    build the libraries, tierkvd and tierkvctl with clang -Werror=thread-safety (lock
#               annotations, common/mutex.h; docs/decisions/0018-thread-safety-analysis.md): about
#               6 CPU-minutes cold, so about 3.5 min on 2 cores

.PHONY: all deps build run test test-release test-asan tsa bench clean

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

test: tsa test-release test-asan

test-release: build
	ctest --preset release -j $(JOBS)

test-asan: deps
	cmake --preset asan >/dev/null
	cmake --build build/asan -j $(JOBS)
	ctest --preset asan -j $(JOBS)

tsa: deps
	cmake --preset tsa >/dev/null
	cmake --build build/tsa -j $(JOBS)

clean:
	rm -rf build

# Operations (docs/operations.md).
#   make check-deploy   validate deploy/ (promtool, YAML/JSON, Kubernetes objects, systemd unit); also a ctest test
#   make bench-report   install the benchmarks' packages (redis-server, hiredis, matplotlib), configure and
#                       build, run the benchmarks (< 40 min on 2 cores), plot them, regenerate BENCHMARKS.md;
#                       fails when a benchmark is not built unless skipped on purpose:
#                       make bench-report BENCH_REPORT_ARGS="--skip putget"
.PHONY: check-deploy bench-report

check-deploy: build
	scripts/check_deploy.sh $(BUILD)/daemon/tierkvd

# Packages first, then configure (pkg-config finds hiredis now: tierkv_bench_putget is
# built) and build, then run.
bench-report:
	TIERKV_DEPS_EXTRA=1 ./deploy/install-deps.sh
	cmake --preset release >/dev/null
	cmake --build $(BUILD) -j $(JOBS)
	scripts/bench_report.sh --build $(BUILD) $(BENCH_REPORT_ARGS)
