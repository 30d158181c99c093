# The two quick-start commands (see README.md): `make demo` and `make test`.
# Each installs what it needs first (Debian packages via scripts/deps): the
# demo only nftables, iproute2 and ping; the tests what they run as well.
CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
# weft is built as a static executable (scripts/static-cargo says why).
STATIC_CARGO := CARGO=$(CARGO) scripts/static-cargo
WEFT := $(or $(CARGO_TARGET_DIR),target)/$(shell rustc -vV | sed -n 's/^host: //p')/release/weft

.PHONY: demo test deps test-deps bench-deps build bench bench-firewall lint install-cni \
	install-podman uninstall-podman

deps:
	@scripts/deps

test-deps:
	@scripts/deps --test

bench-deps:
	@scripts/deps --bench

build:
	$(STATIC_CARGO) build --release -p weft

demo: deps build
	$(SUDO) $(WEFT) demo

# The whole suite: unit, property and end-to-end tests (root: the e2e tests
# build sandbox network namespaces).
test: test-deps
	$(STATIC_CARGO) build --tests --workspace
	$(SUDO) env "PATH=$$PATH" $(STATIC_CARGO) test --workspace --no-fail-fast

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench: bench-deps build
	$(SUDO) env WEFT_BIN=$(WEFT) bench/attach.sh

# How long weft's firewall takes to rebuild its table (in a throwaway netns).
bench-firewall: deps
	$(CARGO) build --release -p weft-bench --bin weft-firewall-bench
	$(SUDO) $(or $(CARGO_TARGET_DIR),target)/release/weft-firewall-bench

# weft as a CNI plugin: the same binary, in the runtime's plugin directory.
CNI_BIN_DIR ?= /opt/cni/bin
install-cni: build
	$(SUDO) install -D -m 0755 $(WEFT) $(CNI_BIN_DIR)/weft

# `make install` puts weft, its shell completions, man pages and systemd
# units under PREFIX (staged under DESTDIR for packaging); `make uninstall`
# removes exactly those files. `make install WEFT=path/to/weft` installs
# that binary instead of building one.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
DATADIR ?= $(PREFIX)/share
UNITDIR ?= $(PREFIX)/lib/systemd/system
UNITS := weft.service weft-dns.service
INSTALLED_BIN := $(DESTDIR)$(BINDIR)/weft
COMPLETIONS := $(DESTDIR)$(DATADIR)/bash-completion/completions/weft \
	$(DESTDIR)$(DATADIR)/zsh/site-functions/_weft \
	$(DESTDIR)$(DATADIR)/fish/vendor_completions.d/weft.fish

.PHONY: install uninstall
install: $(if $(filter command line,$(origin WEFT)),,build)
	install -D -m 0755 $(WEFT) $(INSTALLED_BIN)
	install -d $(DESTDIR)$(DATADIR)/bash-completion/completions \
		$(DESTDIR)$(DATADIR)/zsh/site-functions $(DESTDIR)$(DATADIR)/fish/vendor_completions.d
	$(WEFT) completion bash > $(DESTDIR)$(DATADIR)/bash-completion/completions/weft
	$(WEFT) completion zsh > $(DESTDIR)$(DATADIR)/zsh/site-functions/_weft
	$(WEFT) completion fish > $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/weft.fish
	$(WEFT) man $(DESTDIR)$(MANDIR)/man1
	install -d $(DESTDIR)$(UNITDIR)
	for u in $(UNITS); do \
		sed 's|/usr/local/bin/weft|$(BINDIR)/weft|' contrib/systemd/$$u > $(DESTDIR)$(UNITDIR)/$$u && \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done

uninstall:
	rm -f $(INSTALLED_BIN) $(COMPLETIONS) $(DESTDIR)$(MANDIR)/man1/weft.1 \
		$(DESTDIR)$(MANDIR)/man1/weft-*.1 $(addprefix $(DESTDIR)$(UNITDIR)/,$(UNITS))

# weft as Podman's network backend (docs/podman.md): the binary linked as
# `netavark` in a helper directory of its own, and a containers.conf
# drop-in that puts that directory first and selects the netavark
# backend. uninstall-podman removes both: Podman is back on its own netavark.
PODMAN_HELPER_DIR ?= /usr/local/lib/weft/podman
PODMAN_CONF_DROPIN ?= /etc/containers/containers.conf.d/50-weft.conf
install-podman: $(if $(filter command line,$(origin WEFT)),,build)
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
