#!/bin/sh
# mkdeb.sh BIN OUT VERSION - build OUT/telem_VERSION-1_ARCH.deb with
# dpkg-deb from the programs built in BIN: a staged `make install-files`
# (prefix /usr, stages in /usr/libexec/telem, the unit in
# /lib/systemd/system), man pages gzipped, the Debian control files, and a
# postinst that creates the `telem` system user. Run by `make deb`; prints
# the path of the package it wrote.
set -eu
bin=$1
out=$2
version=$3-1
maint=${DEB_MAINTAINER:-telem developers <telem@example.org>}
cd "$(dirname "$0")/.."
root=$(pwd)
case $bin in /*) ;; *) bin=$root/$bin ;; esac
mkdir -p "$out"
out=$(cd "$out" && pwd)
arch=$(dpkg --print-architecture)
work=$(mktemp -d "${TMPDIR:-/tmp}/telem-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
pkg=$work/pkg
doc=$pkg/usr/share/doc/telem

${MAKE:-make} --no-print-directory -s install-files BIN="$bin" DESTDIR="$pkg" \
	PREFIX=/usr UNITDIR=/lib/systemd/system SYSCONFDIR=/etc >/dev/null
# Debug information stays out of the package, as dh_strip leaves it.
for f in "$pkg"/usr/bin/* "$pkg"/usr/libexec/telem/*; do
	strip --remove-section=.comment --remove-section=.note --strip-unneeded "$f"
done
gzip -9n "$pkg"/usr/share/man/man*/*
install -d "$doc"
install -m 0644 dist/debian/copyright "$doc/copyright"

# The changelog's date: the commit's, so that a package of one commit is
# the same package (SOURCE_DATE_EPOCH wins, as in Debian's own builds).
when=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
# dpkg-deb clamps the files' times to it: two builds, one package.
export SOURCE_DATE_EPOCH=$when
{
	printf 'telem (%s) unstable; urgency=medium\n\n' "$version"
	printf '  * Built from the telem source tree with make deb.\n\n'
	printf ' -- %s  %s\n' "$maint" "$(date -u -R -d "@$when")"
} | gzip -9n > "$doc/changelog.Debian.gz"

# What the programs link against decides Depends (dpkg-shlibdeps wants a
# debian/control to sit beside it); adduser is for the postinst.
install -d "$work/src/debian"
printf 'Source: telem\n\nPackage: telem\nArchitecture: any\n' > "$work/src/debian/control"
elfs=$(find "$pkg/usr/bin" "$pkg/usr/libexec" -type f)
shlibs=$(cd "$work/src" && dpkg-shlibdeps -O $elfs 2>/dev/null |
	sed -n 's/^shlibs:Depends=//p')
if [ -z "$shlibs" ]; then
	shlibs='libc6, libsystemd0'
	echo "mkdeb: dpkg-shlibdeps failed; Depends: $shlibs" >&2
fi

install -d -m 0755 "$pkg/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
cat > "$pkg/DEBIAN/control" <<EOF
Package: telem
Version: $version
Architecture: $arch
Maintainer: $maint
Installed-Size: $size
Depends: adduser, $shlibs
Section: net
Priority: optional
Description: telemetry aggregation server: quantiles and averages over UDP
 telem takes "name value" events over UDP, sends the values at or below a
 limit to a CKMS quantile sketch and those at or above it to a cumulative
 moving average, and reports every name on each Flush tick, on standard
 output and optionally to Graphite's carbon.
 .
 Each step is a process of its own (ingest, two filters, two egresses),
 joined by POSIX message queues or a shared-memory ring, under a supervisor
 that restarts, swaps and drains them. telemctl controls a running one.
EOF
for s in postinst prerm postrm; do
	install -m 0755 "dist/debian/$s" "$pkg/DEBIAN/$s"
done
# The service's pipeline file is the administrator's: kept on upgrades.
echo /etc/telem/telem.conf > "$pkg/DEBIAN/conffiles"
(cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' |
	LC_ALL=C sort | xargs md5sum) > "$pkg/DEBIAN/md5sums"
chmod 0644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/md5sums" "$pkg/DEBIAN/conffiles"
find "$pkg" -type d -exec chmod 0755 {} +

deb=$out/telem_${version}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
echo "$deb"
