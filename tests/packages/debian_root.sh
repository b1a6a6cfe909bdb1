#!/usr/bin/env bash
# debian_root.sh CACHE_DIR DEB...: prints the path of a Debian 12 root filesystem tarball
# in which every dependency of the given .debs is installed (not the .debs themselves),
# and systemd, so that the units are checked by the root's own systemd-analyze.
#
# It is made by mmdebstrap (variant apt) from this machine's own Debian 12 apt sources,
# read from /etc/apt/sources.list.d/ and /etc/apt/sources.list at every run, and kept in
# CACHE_DIR under a key of those sources, the dependencies and the packages'
# architecture: a later run with the same key reuses it (the install test then needs no
# network); a run with another key makes a new one and removes the old.
set -euo pipefail

(($# >= 2)) || { echo "usage: $0 CACHE_DIR DEB..." >&2; exit 2; }
cache=$1
shift
mkdir -p "$cache"

# One "deb URI SUITE COMPONENTS" line per URI and suite of every enabled Debian 12 source
# (suite bookworm or bookworm-*), from deb822 .sources files and one-line .list files.
mapfile -t sources < <(python3 - /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list <<'PY'
import os, re, sys

def bookworm(suite):
    return suite == "bookworm" or suite.startswith("bookworm-")

for path in sys.argv[1:]:
    if not os.path.isfile(path):
        continue
    text = open(path).read()
    if path.endswith(".sources"):
        for stanza in re.split(r"\n\s*\n", text):
            fields, key = {}, None
            for line in stanza.splitlines():
                if line.startswith("#") or not line.strip():
                    continue
                if line[0].isspace() and key:
                    fields[key] += " " + line.strip()
                elif ":" in line:
                    key, value = line.split(":", 1)
                    key = key.strip().lower()
                    fields[key] = value.strip()
            if fields.get("enabled", "yes").lower() == "no" or "deb" not in fields.get("types", "").split():
                continue
            for uri in fields.get("uris", "").split():
                for suite in fields.get("suites", "").split():
                    if bookworm(suite):
                        print("deb", uri, suite, fields.get("components", "main"))
    else:
        for line in text.splitlines():
            line = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(line) >= 4 and line[0] == "deb" and bookworm(line[2]):
                print(" ".join(line))
PY
)
((${#sources[@]} > 0)) || { echo "$0: no Debian 12 (bookworm) source in /etc/apt" >&2; exit 1; }

# The packages the .debs depend on or recommend (apt installs both by default, and the
# root has no network then): the first of each set of alternatives, no versions, none of
# our own packages; and systemd.
includes=$( (for deb in "$@"; do dpkg-deb --field "$deb" Depends Recommends | sed 's/^[A-Za-z]*: //'; echo; done; echo systemd) |
  tr ',' '\n' | sed -E 's/\|.*//; s/\(.*\)//; s/:any//; s/[[:space:]]//g' | grep -v -E '^$|^nova-' | sort -u | paste -sd, -)
# The root's architecture is the packages' (today the host's, amd64).
arch=$(for deb in "$@"; do dpkg-deb --field "$deb" Architecture; done | grep -v '^all$' | sort -u)
[[ $arch != *$'\n'* && -n $arch ]] || { echo "$0: the packages are not of one architecture: $arch" >&2; exit 2; }
key=$(printf '%s\n' "$arch" "$includes" "${sources[@]}" | sha256sum | cut -c1-16)
tarball="$cache/bookworm-$arch-$key.tar"

if [[ ! -f $tarball ]]; then
  echo "debian_root: making $tarball with mmdebstrap from ${sources[*]}" >&2
  start=$SECONDS
  mmdebstrap --quiet --format=tar --variant=apt --architectures="$arch" --include="$includes" \
    bookworm "$tarball.partial" "${sources[@]}" >&2
  mv "$tarball.partial" "$tarball"
  find "$cache" -maxdepth 1 -name 'bookworm-*.tar*' ! -path "$tarball" -delete
  echo "debian_root: made in $((SECONDS - start)) s ($(du -m "$tarball" | cut -f1) MB)" >&2
fi
echo "$tarball"
