#!/usr/bin/env bash
# Builds the Debian packages nova-agent, nova-bridge, nova-cloud and nova-pki, for the
# host architecture, from a built CMake tree, with debhelper (packaging/debian/):
#
#   packaging/build-debs.sh BUILD_DIR OUT_DIR
#
# BUILD_DIR: a configured build directory with the four programs built
# (ninja -C build nova-agent nova-bridge nova-cloud nova-pki; nova-bridge brings its ACL
# plugin nova_acl). The .debs land in OUT_DIR;
# OUT_DIR/src is the source tree dpkg-buildpackage ran in (made afresh each time).
# The version is the CMake project's version. No -dbgsym packages are made.
set -euo pipefail

(($# == 2)) || { echo "usage: $0 BUILD_DIR OUT_DIR" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
build=$(realpath "$1")
out=$(realpath -m "$2")
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build/CMakeCache.txt")
[[ -n $version ]] || { echo "$0: no CMAKE_PROJECT_VERSION in $build/CMakeCache.txt" >&2; exit 2; }

stage="$out/src"
rm -rf "$stage" "$out"/*.deb
mkdir -p "$stage"
cp -r "$here/debian" "$stage/debian"
# One postinst and one postrm for the three daemons (#PACKAGE# is substituted per package).
for pkg in nova-agent nova-bridge nova-cloud; do
  cp "$here/debian/daemon.postinst" "$stage/debian/$pkg.postinst"
  cp "$here/debian/daemon.postrm" "$stage/debian/$pkg.postrm"
done
rm "$stage"/debian/daemon.*
cat >"$stage/debian/changelog" <<CHANGELOG
nova ($version) unstable; urgency=medium

  * Built from the NovaCron Edge source tree, version $version.

 -- $(sed -n 's/^Maintainer: //p' "$here/debian/control")  $(date -R)
CHANGELOG

cd "$stage"
NOVA_BUILD_DIR="$build" DEB_BUILD_OPTIONS="noautodbgsym${DEB_BUILD_OPTIONS:+ $DEB_BUILD_OPTIONS}" \
  dpkg-buildpackage --build=binary --no-sign >"$out/dpkg-buildpackage.log" 2>&1 ||
  { tail -n 40 "$out/dpkg-buildpackage.log" >&2; echo "$0: dpkg-buildpackage failed (log: $out/dpkg-buildpackage.log)" >&2; exit 1; }
ls "$out"/*.deb
