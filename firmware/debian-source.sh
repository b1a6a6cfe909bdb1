#!/usr/bin/env bash
# firmware/debian-source.sh <source package> <suite> <dir>: downloads and unpacks a
# Debian source package (with Debian's patches applied) into <dir>, from the machine's
# Debian mirror, without touching the machine's apt configuration (a private source list
# and package lists under <dir>.apt). Kept: a second run finds <dir> and returns at once.
set -euo pipefail

package=${1:?usage: debian-source.sh PACKAGE SUITE DIR}
suite=${2:?usage: debian-source.sh PACKAGE SUITE DIR}
dir=$(realpath -m "${3:?usage: debian-source.sh PACKAGE SUITE DIR}")
if [[ -f $dir/.done ]]; then
  exit 0
fi

. "$(dirname "$0")/mirror.sh"
url=$(mirror_url)
state=$dir.apt
rm -rf "$dir" "$state"
mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/download"
echo "deb-src $url $suite main" >"$state/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$state/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache" -o APT::Sandbox::User=root)
apt-get -qq "${apt_opts[@]}" update
(cd "$state/download" && apt-get -qq "${apt_opts[@]}" source "$package")
unpacked=$(find "$state/download" -mindepth 1 -maxdepth 1 -type d | head -n 1)
mv "$unpacked" "$dir"
rm -rf "$state"
touch "$dir/.done"
