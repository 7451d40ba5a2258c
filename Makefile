# dbferry — build, test and demo entry points.
#
#   make test    installs what the tests need (MariaDB, Oracle MySQL 9.7 into
#                $(DBFERRY_MYSQL_PREFIX), mydumper, sysbench, rustfmt,
#                clippy), builds everything, runs the whole suite,
#                clippy -D warnings and the format check. Fails loudly.
#   make demo    installs MariaDB if missing and runs `dbferry demo`.
#   make bench   the performance comparison of issue 2 §8 (release build).
#   make babelfish  builds Babelfish for PostgreSQL 4.3 (a real TDS / T-SQL
#                server) into $(BABELFISH_PREFIX) for the SQL Server tests,
#                with ../shared/babelfish/build.sh. `make test` uses that
#                build when it is there and never builds it.
#
# Works on a fresh Debian 12 machine with Rust installed, as root or as a
# user with sudo.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build
.PHONY: babelfish deps apt-deps mysql-deps rust-deps build test unit-test lint fmt-check clippy rss-guard deb demo bench clean-testkit

CARGO ?= cargo
# Extra arguments for `make bench`, e.g. BENCH_ARGS="--dataset b --scale 0.1".
BENCH_ARGS ?=
APT_PACKAGES := mariadb-server mariadb-client mydumper sysbench prometheus systemd python3-venv freetds-bin iptables
# Babelfish: the build script lives outside the repository (it builds fetched
# repositories, which the project does not commit); the three git dirs default
# to this machine's mirrors where they exist. See README, "SQL Server tests".
BABELFISH_PREFIX ?= /var/cache/dbferry-babelfish
BABELFISH_BUILD_SH ?= ../shared/babelfish/build.sh
MIRROR ?= /work/.mirror
BABELFISH_PG_GIT ?= $(wildcard $(MIRROR)/babelfish-for-postgresql+postgresql_modified_for_babelfish/repo)
BABELFISH_EXT_GIT ?= $(wildcard $(MIRROR)/babelfish-for-postgresql+babelfish_extensions/repo)
ANTLR_GIT ?= $(wildcard $(MIRROR)/antlr+antlr4/repo)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Where scripts/fetch-mysql.sh puts Oracle MySQL; the testkit reads the same
# variable. Outside the clone, so every clone and worktree shares one copy.
DBFERRY_MYSQL_PREFIX ?= /var/cache/dbferry-mysql
export DBFERRY_MYSQL_PREFIX

deps: apt-deps mysql-deps rust-deps

# Oracle MySQL 9.7 for the tests, unpacked into a private prefix (see the
# script). Idempotent: a complete prefix is left alone.
mysql-deps: apt-deps
	@if [ -f "$(DBFERRY_MYSQL_PREFIX)/.fetched" ]; then \
	  echo "deps: $$(cat "$(DBFERRY_MYSQL_PREFIX)/.fetched")"; \
	elif [ -w "$$(dirname "$(DBFERRY_MYSQL_PREFIX)")" ] || [ -w "$(DBFERRY_MYSQL_PREFIX)" ]; then \
	  scripts/fetch-mysql.sh; \
	else \
	  $(SUDO) env DBFERRY_MYSQL_PREFIX="$(DBFERRY_MYSQL_PREFIX)" scripts/fetch-mysql.sh; \
	fi

# Idempotent: installs only what is missing, runs `apt-get update` only when
# the package lists are empty or the install fails with the lists it has.
# Installing mariadb-server must not start a system-wide server (the tests
# start their own), so service starts are denied while apt runs.
apt-deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "deps: $(APT_PACKAGES) already installed"; exit 0; fi; \
	echo "deps: installing$$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	policy=/usr/sbin/policy-rc.d; own_policy=0; \
	if [ ! -e "$$policy" ]; then \
	  printf '#!/bin/sh\nexit 101\n' | $(SUDO) tee "$$policy" >/dev/null; $(SUDO) chmod 755 "$$policy"; own_policy=1; \
	fi; \
	trap '[ "$$own_policy" = 1 ] && $(SUDO) rm -f "$$policy"' EXIT; \
	if ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then $(SUDO) apt-get update; fi; \
	if ! $(SUDO) apt-get install -y --no-install-recommends $$missing; then \
	  $(SUDO) apt-get update; \
	  $(SUDO) apt-get install -y --no-install-recommends $$missing; \
	fi; \
	test -x /usr/sbin/mariadbd || { echo "deps: FAILED: /usr/sbin/mariadbd is still missing" >&2; exit 1; }

rust-deps:
	@if ! $(CARGO) fmt --version >/dev/null 2>&1 || ! $(CARGO) clippy --version >/dev/null 2>&1; then \
	  if command -v rustup >/dev/null 2>&1; then rustup component add rustfmt clippy; \
	  else echo "deps: FAILED: cargo fmt/clippy missing and no rustup to add them" >&2; exit 1; fi; \
	fi

# Builds every package and target, so the cdylib plugins (mysql, and the
# test fixtures) land next to the `dbferry` binary in target/debug.
build:
	$(CARGO) build --workspace --all-targets

unit-test:
	$(CARGO) test --workspace

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt-check:
	$(CARGO) fmt --all -- --check

lint: clippy fmt-check

# Issue 6's timing-free guard: a release dbferry copies a small sysbench
# dataset and its peak RSS must stay under 128 MiB.
rss-guard:
	$(CARGO) build --release -p dbferry -p dbferry-mysql
	$(CARGO) run --release -p dbferry-benches --bin rss_guard

test: deps build
	@status=0; \
	sqlserver_log="$${CARGO_TARGET_DIR:-target}/sqlserver-tests.log"; rm -f "$$sqlserver_log"; \
	$(MAKE) --no-print-directory unit-test || { echo "*** make test: TESTS FAILED ***" >&2; status=1; }; \
	ran=$$( (grep '^ran ' "$$sqlserver_log" 2>/dev/null || true) | sort -u | wc -l); skipped=$$( (grep '^skipped ' "$$sqlserver_log" 2>/dev/null || true) | sort -u | wc -l); \
	$(MAKE) --no-print-directory clippy || { echo "*** make test: CLIPPY FAILED ***" >&2; status=1; }; \
	$(MAKE) --no-print-directory fmt-check || { echo "*** make test: FORMAT CHECK FAILED (run cargo fmt --all) ***" >&2; status=1; }; \
	$(MAKE) --no-print-directory rss-guard || { echo "*** make test: MEMORY GUARD FAILED ***" >&2; status=1; }; \
	if [ "$${skipped:-0}" -gt 0 ]; then \
	  echo "*** make test: SQL Server tests against a real server: $${ran:-0} ran, $${skipped} SKIPPED (no Babelfish build: run make babelfish) ***"; \
	else echo "make test: SQL Server tests against a real server (Babelfish): $${ran:-0} ran"; fi; \
	if [ $$status -ne 0 ]; then echo "*** make test: FAILED ***" >&2; exit 1; fi; \
	echo "make test: all green"

# The Debian package (needs `cargo install cargo-deb`): binary, plugins,
# unit, a minimal config and a `dbferry` system user.
deb:
	$(CARGO) build --release --workspace
	$(CARGO) deb -p dbferry --no-build

demo: deps build
	target/debug/dbferry demo

bench: deps
	$(CARGO) build --release -p dbferry -p dbferry-mysql -p dbferry-sqlserver
	$(CARGO) run --release -p dbferry-benches --bin bench -- $(BENCH_ARGS)

# The build runs as a top-level make: PostgreSQL generates its headers
# (utils/errcodes.h) only when MAKELEVEL is 0, so this make's must not leak.
babelfish:
	@if [ -f "$(BABELFISH_PREFIX)/.built" ]; then echo "babelfish: already built in $(BABELFISH_PREFIX)"; exit 0; fi; \
	test -x "$(BABELFISH_BUILD_SH)" || { echo "babelfish: FAILED: no build script at $(BABELFISH_BUILD_SH) (set BABELFISH_BUILD_SH)" >&2; exit 1; }; \
	for v in BABELFISH_PG_GIT=$(BABELFISH_PG_GIT) BABELFISH_EXT_GIT=$(BABELFISH_EXT_GIT) ANTLR_GIT=$(ANTLR_GIT); do \
	  [ -n "$${v#*=}" ] || { echo "babelfish: FAILED: $${v%%=*} is not set: point it at a git clone (see README, SQL Server tests)" >&2; exit 1; }; \
	done; \
	$(SUDO) env -u MAKELEVEL -u MAKEFLAGS -u MFLAGS BABELFISH_PG_GIT="$(BABELFISH_PG_GIT)" BABELFISH_EXT_GIT="$(BABELFISH_EXT_GIT)" ANTLR_GIT="$(ANTLR_GIT)" \
	  BABELFISH_PREFIX="$(BABELFISH_PREFIX)" "$(BABELFISH_BUILD_SH)"

# Removes the cached template datadirs (MariaDB and MySQL) of the test harness.
clean-testkit:
	rm -rf target/testkit-template-*
