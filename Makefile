# The two quick-start commands (see README.md): `make demo` and `make test`.
# Both install what they need first (Debian packages via scripts/deps).
CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
# weft is built as a static executable (scripts/static-cargo says why).
STATIC_CARGO := CARGO=$(CARGO) scripts/static-cargo
WEFT := $(or $(CARGO_TARGET_DIR),target)/$(shell rustc -vV | sed -n 's/^host: //p')/release/weft

.PHONY: demo test deps build bench lint install-cni install-podman uninstall-podman

deps:
	@scripts/deps

build:
	$(STATIC_CARGO) build --release -p weft

demo: deps build
	$(SUDO) $(WEFT) demo

# The whole suite: unit, property and end-to-end tests (root: the e2e tests
# build sandbox network namespaces).
test: deps
	$(STATIC_CARGO) build --tests --workspace
	$(SUDO) env "PATH=$$PATH" $(STATIC_CARGO) test --workspace --no-fail-fast

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench: deps build
	$(SUDO) env WEFT_BIN=$(WEFT) bench/attach.sh

# weft as a CNI plugin: the same binary, in the runtime's plugin directory.
CNI_BIN_DIR ?= /opt/cni/bin
install-cni: build
	$(SUDO) install -D -m 0755 $(WEFT) $(CNI_BIN_DIR)/weft

# weft as Podman's network backend (docs/podman.md): the binary linked as
# `netavark` in a helper directory of its own, and a containers.conf
# drop-in that puts that directory first and selects the netavark
# backend. uninstall-podman removes both: Podman is back on its own netavark.
PODMAN_HELPER_DIR ?= /usr/local/lib/weft/podman
PODMAN_CONF_DROPIN ?= /etc/containers/containers.conf.d/50-weft.conf
install-podman: build
	$(SUDO) install -D -m 0755 $(WEFT) $(PODMAN_HELPER_DIR)/weft
	$(SUDO) ln -sfn weft $(PODMAN_HELPER_DIR)/netavark
	$(SUDO) ln -sfn weft $(PODMAN_HELPER_DIR)/aardvark-dns
	printf '%s\n' '# weft is Podman'"'"'s network backend (make uninstall-podman undoes it).' \
		'[network]' 'network_backend = "netavark"' '' '[engine]' \
		'helper_binaries_dir = ["$(PODMAN_HELPER_DIR)", "/usr/local/libexec/podman", "/usr/local/lib/podman", "/usr/libexec/podman", "/usr/lib/podman"]' \
		| $(SUDO) install -D -m 0644 /dev/stdin $(PODMAN_CONF_DROPIN)

uninstall-podman:
	$(SUDO) rm -f $(PODMAN_CONF_DROPIN) $(PODMAN_HELPER_DIR)/netavark \
		$(PODMAN_HELPER_DIR)/aardvark-dns $(PODMAN_HELPER_DIR)/weft
	-$(SUDO) rmdir $(PODMAN_HELPER_DIR)
