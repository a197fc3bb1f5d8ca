#!/bin/sh
# Install what the build and the tests need when it is missing (Debian).
# Needs root (or sudo) only when something is missing.
set -e
missing=
[ -f /usr/include/criterion/criterion.h ] || missing="$missing libcriterion-dev"
# supervisor/pipeline.c reads the pipeline file with libinih.
[ -f /usr/include/ini.h ] || missing="$missing libinih-dev"
command -v nc >/dev/null 2>&1 || missing="$missing netcat-openbsd"
command -v socat >/dev/null 2>&1 || missing="$missing socat"
command -v cc >/dev/null 2>&1 || missing="$missing gcc"
# e2e_guard runs stages as another user and mounts a tiny /dev/shm.
{ command -v setpriv && command -v unshare; } >/dev/null 2>&1 ||
	missing="$missing util-linux"
# e2e_graphite runs a real carbon-cache and carbon-relay, reads whisper files.
command -v carbon-cache >/dev/null 2>&1 || missing="$missing graphite-carbon"
command -v whisper-fetch >/dev/null 2>&1 || missing="$missing python3-whisper"
# test_prom checks the Prometheus exposition with promtool; the sink's
# HTTP server is built on libmicrohttpd and tested with curl.
command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
[ -f /usr/include/microhttpd.h ] || missing="$missing libmicrohttpd-dev"
command -v curl >/dev/null 2>&1 || missing="$missing curl"
# The supervisor links libsystemd (sd_notify); e2e_package lints the man
# pages, verifies the systemd unit, builds and lints the Debian package.
[ -f /usr/include/systemd/sd-daemon.h ] || missing="$missing libsystemd-dev"
command -v mandoc >/dev/null 2>&1 || missing="$missing mandoc"
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
command -v man >/dev/null 2>&1 || missing="$missing man-db"
command -v dpkg-shlibdeps >/dev/null 2>&1 || missing="$missing dpkg-dev"
command -v lintian >/dev/null 2>&1 || missing="$missing lintian"
# e2e_package installs the package with dpkg: what it depends on.
command -v adduser >/dev/null 2>&1 || missing="$missing adduser"
# e2e_statsd: real statsd clients, Python's (Debian) and hot-shots (npm).
[ -f /usr/lib/python3/dist-packages/statsd/__init__.py ] || missing="$missing python3-statsd"
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
	echo "deps: installing$missing" >&2
	SUDO=
	[ "$(id -u)" -eq 0 ] || SUDO=sudo
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq $missing </dev/null
fi
# hot-shots goes into build/npm (the tests' NODE_PATH), not the system.
if [ ! -f build/npm/node_modules/hot-shots/package.json ]; then
	echo "deps: npm install hot-shots into build/npm" >&2
	mkdir -p build/npm
	(cd build/npm && npm install --no-audit --no-fund --silent hot-shots \
	    </dev/null >/dev/null)
fi
