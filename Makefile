# The two quick-start commands (see README.md): `make demo` and `make test`.
# Both install what they need first (Debian packages via scripts/deps).
CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: demo test deps build bench lint install-cni

deps:
	@scripts/deps

build:
	$(CARGO) build --release -p weft

demo: deps build
	$(SUDO) target/release/weft demo

# The whole suite: unit, property and end-to-end tests (root: the e2e tests
# build sandbox network namespaces).
test: deps
	$(CARGO) build --tests --workspace
	$(SUDO) env "PATH=$$PATH" $(CARGO) test --workspace --no-fail-fast

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench: deps build
	$(SUDO) bench/attach.sh

# weft as a CNI plugin: the same binary, in the runtime's plugin directory.
CNI_BIN_DIR ?= /opt/cni/bin
install-cni: build
	$(SUDO) install -D -m 0755 target/release/weft $(CNI_BIN_DIR)/weft
