#!/usr/bin/env bash
# Finish a debootstrap'ed minbase tree before it is imported as lifeboat-test/debian-base.
# Usage: finish.sh ROOT SUITE
set -euo pipefail
root=$1 suite=$2
cat > "$root/etc/apt/sources.list" <<SRC
deb http://deb.debian.org/debian $suite main
deb http://deb.debian.org/debian $suite-updates main
deb http://deb.debian.org/debian-security $suite-security main
SRC
# Small images: no docs, no man pages, no recommends.
cat > "$root/etc/apt/apt.conf.d/90lifeboat" <<'CONF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
CONF
cat > "$root/etc/dpkg/dpkg.cfg.d/90lifeboat-nodoc" <<'CONF'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
CONF
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb "$root"/var/log/*.log
