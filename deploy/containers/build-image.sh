#!/usr/bin/env bash
# Builds the OCI image of nova-cloud or nova-agent with Debian's own tools, no container
# engine: mmdebstrap extracts the runtime libraries the binary needs from the machine's
# own apt sources into a tarball, and umoci turns a root filesystem into an OCI image
# layout (docs/containers.md).
#
#   deploy/containers/build-image.sh IMAGE BINARY OUT_DIR CACHE_DIR
#
#   IMAGE      nova-cloud or nova-agent
#   BINARY     the host build's binary (build/cloud/nova-cloud, build/agent/nova-agent);
#              it goes into the image stripped of its debug information
#   OUT_DIR    OUT_DIR/IMAGE becomes an OCI image layout with the tag "latest"
#              (replaced if present); copy it with skopeo, e.g. to a registry
#   CACHE_DIR  keeps the library tarball, keyed by release, architecture, package set and
#              apt sources, so a rebuild downloads nothing
#
# What the image holds: the packages owning every library `ldd BINARY` resolves, plus
# for nova-agent the Paho C libraries it loads with dlopen (agent/src/paho_api.cpp);
# their /usr/share (documentation and the like), glibc's charset converters (gconv) and
# apt's files are left out.
# No shell, no package manager. It runs as UID/GID 65532 ("nova"), numeric so that
# Kubernetes' runAsNonRoot can check it, with /var/lib/IMAGE owned by that user.
#
# Runs as root (mmdebstrap and umoci unpack/repack keep file ownership). Prints the
# image's sizes as its last lines. Exit 0 on success; any failure names its cause.
set -euo pipefail

readonly image_uid=65532
readonly image_gid=65532

die() {
  echo "build-image: $*" >&2
  exit 1
}

(($# == 4)) || die "usage: build-image.sh IMAGE BINARY OUT_DIR CACHE_DIR"
image=$1
binary=$2
out_dir=$3
cache_dir=$4

# Per image: the libraries it opens at run time (not in ldd's list), its config file,
# and the ports it serves.
case $image in
  nova-cloud)
    dlopened_libraries=()
    config_file=/etc/nova-cloud/config/cloud.yaml
    exposed_ports=(8080/tcp)
    ;;
  nova-agent)
    # Plaintext and TLS Paho C, loaded by soname (agent/src/paho_api.cpp).
    dlopened_libraries=(libpaho-mqtt3a.so.1 libpaho-mqtt3as.so.1)
    config_file=/etc/nova-agent/config/agent.yaml
    exposed_ports=()
    ;;
  *) die "IMAGE: '$image' is neither nova-cloud nor nova-agent" ;;
esac

[[ $(id -u) -eq 0 ]] || die "must run as root: mmdebstrap and umoci keep file ownership only as root"
[[ -x $binary ]] || die "BINARY: '$binary' is not an executable file"
for tool in mmdebstrap umoci strip ldd dpkg-query ldconfig; do
  command -v "$tool" >/dev/null || die "'$tool' is not installed (scripts/setup.sh installs it)"
done

# The Debian package that owns library file $1 (a path as ldd prints it, or a soname
# found through the loader's cache).
package_of_library() {
  local path=$1 owner
  if [[ $path != /* ]]; then
    path=$(ldconfig -p | awk -v so="$path" '$1 == so { print $NF; exit }')
    [[ -n $path ]] || die "library '$1': not in the loader's cache (is its package installed?)"
  fi
  # With merged /usr, dpkg knows a library under one of its two paths.
  owner=$(dpkg-query -S "$path" 2>/dev/null || dpkg-query -S "$(realpath "$path")" 2>/dev/null ||
          dpkg-query -S "*/$(basename "$path")" 2>/dev/null || true)
  [[ -n $owner ]] || die "library '$path': no installed Debian package owns it"
  echo "${owner%%:*}"
}

ldd_output=$(ldd "$binary") || die "BINARY: ldd '$binary' failed (not a dynamic executable?)"
if grep -q 'not found' <<<"$ldd_output"; then
  die "BINARY: libraries not found: $(grep 'not found' <<<"$ldd_output" | tr -s ' \t\n' ' ')"
fi
mapfile -t libraries < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$ldd_output")
libraries+=("${dlopened_libraries[@]}")
packages=$(for library in "${libraries[@]}"; do package_of_library "$library"; done | sort -u)

# The machine's own apt sources and release: the image gets the same libraries the
# binary was built against.
sources=()
for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [[ -f $file ]] && grep -qvE '^\s*(#|$)' "$file" && sources+=("$file")
done
((${#sources[@]} > 0)) || die "no apt source configured in /etc/apt"
# shellcheck source=/dev/null
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[[ -n $suite ]] || die "/etc/os-release names no VERSION_CODENAME"
arch=$(dpkg --print-architecture)

mkdir -p "$cache_dir" "$out_dir"
key=$( (echo "$suite $arch"; echo "$packages"; cat "${sources[@]}") | sha256sum | cut -c1-16)
tarball="$cache_dir/libraries-$key.tar"
partial="$cache_dir/partial-$key.tar"  # mmdebstrap picks its output format from the name
if [[ ! -f $tarball ]]; then
  rm -rf "$partial"
  echo "build-image: extracting $(wc -w <<<"$packages") packages of $suite/$arch: $(tr '\n' ' ' <<<"$packages")"
  # The extract variant unpacks the listed packages and their dependencies and runs no
  # maintainer script: nothing in the image needs configuring.
  mmdebstrap --mode=root --variant=extract --architectures="$arch" \
    --include="$(paste -sd, <<<"$packages")" --logfile="$cache_dir/mmdebstrap-$key.log" \
    "$suite" "$partial" "${sources[@]}" ||
    die "mmdebstrap failed; see $cache_dir/mmdebstrap-$key.log"
  mv "$partial" "$tarball"
fi

work=$(mktemp -d "$out_dir/.build-$image-XXXXXX")
trap 'rm -rf "$work"' EXIT
layout="$out_dir/$image"
rm -rf "$layout"
umoci init --layout "$layout"
umoci new --image "$layout:latest"
umoci unpack --image "$layout:latest" "$work/bundle" >/dev/null
rootfs="$work/bundle/rootfs"

# Device nodes come from the container runtime; documentation, charset converters and
# apt's own files are not used by the daemon.
tar -x -C "$rootfs" -f "$tarball" --exclude='./dev/*' --exclude='./etc/apt' --exclude='./var/lib/apt' \
  --exclude='./var/cache/apt' --exclude='./var/log/*' --exclude='./usr/share/*' --exclude='*/gconv'

install -d -m 0755 "$rootfs/usr/bin"
strip --strip-unneeded -o "$rootfs/usr/bin/$image" "$binary"
chmod 0755 "$rootfs/usr/bin/$image"

cat >"$rootfs/etc/passwd" <<EOF
root:x:0:0:root:/root:/usr/sbin/nologin
nova:x:$image_uid:$image_gid:NovaCron Edge:/nonexistent:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
cat >"$rootfs/etc/group" <<EOF
root:x:0:
nova:x:$image_gid:
nogroup:x:65534:
EOF
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
install -d -m 1777 "$rootfs/tmp"
install -d -m 0755 "$rootfs/etc/$image" "$rootfs/$(dirname "$config_file")"
install -d -m 0750 -o "$image_uid" -g "$image_gid" "$rootfs/var/lib/$image"

umoci repack --image "$layout:latest" "$work/bundle" >/dev/null
config_args=(
  --config.user "$image_uid:$image_gid"
  --config.entrypoint "/usr/bin/$image"
  --config.cmd=--config --config.cmd "$config_file"
  --config.workingdir /
  --config.volume "/var/lib/$image"
  --config.label "org.opencontainers.image.title=$image"
  --config.label "org.opencontainers.image.description=NovaCron Edge $image"
)
for port in "${exposed_ports[@]}"; do config_args+=(--config.exposedports "$port"); done
umoci config --image "$layout:latest" "${config_args[@]}" --history.created_by "deploy/containers/build-image.sh"
umoci gc --layout "$layout"

rootfs_bytes=$(du -sb --apparent-size "$rootfs" | cut -f1)
blob_bytes=$(find "$layout/blobs" -type f -printf '%s\n' | awk '{ n += $1 } END { print n }')
echo "build-image: $image: OCI layout $layout (tag latest)"
echo "build-image: $image: root filesystem $rootfs_bytes bytes; image blobs (gzip layer, config, manifest) $blob_bytes bytes"
