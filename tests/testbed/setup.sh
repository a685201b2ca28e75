#!/usr/bin/env bash
# The lifeboat.docker test bench: one idempotent command, run as root on Debian 12.
#
#   bash tests/testbed/setup.sh            # host packages, engine, all images
#   bash tests/testbed/setup.sh --images   # only (re)build images whose recipe changed
#
# 1. installs the host packages the tests need (docker.io, debootstrap, zstd, age, ...),
# 2. starts dockerd in the background when no engine answers (there is no systemd here),
# 3. builds the local images from Debian packages only (there is no registry), each one
#    rebuilt only when its recipe (its folder under images/, plus its base) changed.
# Every image carries the label lifeboat.recipe=<sha256 of its recipe>.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
images_dir=$here/images
log() { printf '[testbed] %s\n' "$*" >&2; }
die() { printf '[testbed] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run me as root (I install packages and start dockerd)"

host_packages=(docker.io debootstrap zstd age acl attr restic rsync python3-venv
               openssh-client rclone sqlite3 postgresql-client shellcheck)

install_host_packages() {
  local missing=()
  for p in "${host_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing host packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

start_engine() {
  if docker info >/dev/null 2>&1; then return 0; fi
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    log "starting docker.service"
    systemctl start docker
  else
    log "starting dockerd in the background (log: /var/log/dockerd.log)"
    setsid dockerd >>/var/log/dockerd.log 2>&1 < /dev/null &
  fi
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && return 0
    sleep 1
  done
  die "dockerd did not answer on /var/run/docker.sock within 60 s; see /var/log/dockerd.log"
}

# recipe_hash DIR [EXTRA...]: sha256 over the files of DIR (names and content) and extra strings
recipe_hash() {
  local dir=$1; shift
  { (cd "$dir" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum); printf '%s\n' "$@"; } \
    | sha256sum | cut -c1-16
}

image_recipe() { docker image inspect -f '{{index .Config.Labels "lifeboat.recipe"}}' "$1" 2>/dev/null || true; }

# base_image SUITE TAG: a minbase Debian root filesystem from debootstrap, imported
base_image() {
  local suite=$1 name=lifeboat-test/debian-base:$2 hash tmp
  hash=$(recipe_hash "$images_dir/debian-base" "$suite")
  if [ "$(image_recipe "$name")" = "$hash" ]; then log "$name is up to date"; return 0; fi
  log "building $name with debootstrap ($suite)"
  tmp=$(mktemp -d /var/tmp/lifeboat-debootstrap.XXXXXX)
  if ! debootstrap --variant=minbase "$suite" "$tmp/root" http://deb.debian.org/debian >"$tmp/log" 2>&1; then
    tail -20 "$tmp/log" >&2; rm -rf "$tmp"
    die "debootstrap $suite failed (is deb.debian.org reachable?)"
  fi
  bash "$images_dir/debian-base/finish.sh" "$tmp/root" "$suite"
  tar -C "$tmp/root" -c . | docker import \
      -c "LABEL lifeboat.recipe=$hash" -c 'CMD ["/bin/bash"]' -c 'ENV LANG=C.UTF-8' - "$name" >/dev/null
  rm -rf "$tmp"
}

# build_image NAME TAG DIR BASE_TAG: docker build DIR FROM lifeboat-test/debian-base:BASE_TAG
build_image() { build_from "$1" "$2" "$3" "lifeboat-test/debian-base:$4"; }

# build_from NAME TAG DIR BASE_IMAGE: docker build DIR FROM BASE_IMAGE (a bench image), rebuilt
# when its own recipe or the base image's recipe changes
build_from() {
  local name=lifeboat-test/$1:$2 dir=$images_dir/$3 base=$4 hash
  hash=$(recipe_hash "$dir" "$(image_recipe "$base")")
  if [ "$(image_recipe "$name")" = "$hash" ]; then log "$name is up to date"; return 0; fi
  log "building $name"
  # The classic builder is what docker.io 20.10 has (no buildx): its deprecation notice is noise.
  if ! DOCKER_BUILDKIT=0 docker build --build-arg "BASE=$base" --label "lifeboat.recipe=$hash" \
        -t "$name" "$dir" >"/var/tmp/lifeboat-build-$1-$2.log" 2>&1; then
    tail -30 "/var/tmp/lifeboat-build-$1-$2.log" >&2
    die "docker build of $name failed (recipe: $dir; full log /var/tmp/lifeboat-build-$1-$2.log)"
  fi
}

build_images() {
  base_image bookworm 12
  base_image trixie 13
  build_image debian-host 12 debian-host 12
  build_image debian-host 13 debian-host 13
  build_from debian-control 13 debian-control lifeboat-test/debian-host:13   # its own control node
  build_image busybox latest busybox 12
  build_image postgres 15 postgres 12
  build_from postgis 15-3 postgis lifeboat-test/postgres:15   # PostGIS on the postgres recipe
  build_image mariadb latest mariadb 12
  build_image redis latest redis 12
  build_image nginx latest nginx 12
  build_image sshd latest sshd 12
  build_image sqlite-app latest sqlite-app 12
  docker image prune -f --filter label=lifeboat.recipe >/dev/null
}

start=$(date +%s)
if [ "${1:-}" != "--images" ]; then
  install_host_packages
  start_engine
fi
build_images
log "test bench ready in $(( $(date +%s) - start )) s"
