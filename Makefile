# wardgate: `make demo` shows the whole story in one process; `make test`
# installs what the tests need (as root) and runs every test.

GO       ?= go
BIN      := bin/wardgate
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
PREFIX   ?= /usr/local
# Packages whose code is concurrent: run under the race detector.
RACE_PKGS := ./gateway/... ./overlay/... ./dnsfilter/... ./internal/...
STATICCHECK := $(shell $(GO) env GOPATH)/bin/staticcheck

.PHONY: build test unit race interop deps demo bench stress lint fuzz install clean

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/wardgate

## test: everything (unit, in-process end-to-end, interop in namespaces).
## The interop tests run on their own: they pick free ports for real
## processes, which tests of other packages running at once could take.
test: deps
	$(GO) vet ./...
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /test/interop)
	$(GO) test -count=1 ./test/interop/...
	$(GO) test -count=1 -race $(RACE_PKGS)

## deps: the Debian tools the interop tests drive (root only; CI is root).
deps:
	@scripts/install-deps.sh

# The whole story in one process (internal/demo): two site gateways,
# WireGuard clients, services, DNS, a service moving sites and a revoked
# flow; no root, no setup. `bin/wardgate demo --verbose` adds the audit log.
demo: build
	@$(BIN) demo

## bench: in-process benchmarks, then the end-to-end figures (root: plain
## WireGuard vs wardgate vs loopback with iperf3, DNS vs unbound, site links),
## each reported as ratios against a baseline measured in the same run.
bench: build
	@scripts/install-deps.sh bench
	$(GO) test -run '^$$' -bench . -benchmem ./policy/ ./dnsfilter/ ./overlay/ ./gateway/
	$(GO) test -run '^$$' -bench . -benchtime 1x -v ./test/interop/ | grep -v 'level='

## stress: the load and fault suite's long form (root: floods, a reload
## storm, a huge policy), with a table of figures; `make test` runs its
## short form.
stress: deps
	WARDGATE_STRESS=long CI=true $(GO) test -count=1 -timeout 30m -run TestStress -v ./test/interop/

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	@test -x $(STATICCHECK) || $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2
	$(STATICCHECK) ./...

## fuzz: each fuzz target for a short while (FUZZTIME, default 15s).
FUZZTIME ?= 15s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/wardgate
	install -D -m 0644 configs/wardgate.service $(DESTDIR)/etc/systemd/system/wardgate.service
	install -d -m 0750 $(DESTDIR)/etc/wardgate
	cp -n configs/example/policy.toml configs/example/gateway.toml $(DESTDIR)/etc/wardgate/ 2>/dev/null || true

clean:
	rm -rf bin
