#!/usr/bin/env bash
# ctest packages:debs: builds the Debian packages from this build tree
# (packaging/build-debs.sh) and checks them with lintian, which must report no error and
# no warning, pedantic tags included. The install test (install_test.sh) uses the .debs.
#   debs_test.sh SOURCE_DIR BUILD_DIR DEBS_DIR
set -euo pipefail
source_dir=$1 build_dir=$2 debs_dir=$3
"$source_dir/packaging/build-debs.sh" "$build_dir" "$debs_dir"
# lintian warns when it runs as root, which the suite does.
lintian --pedantic --fail-on error,warning,pedantic "$debs_dir"/*.deb 2> >(grep -v 'running with root privileges' >&2)
echo "lintian: no errors, warnings or pedantic tags"

# Each daemon's configuration in /etc/nova is a conffile (dpkg keeps local edits).
for pair in nova-agent:agent.yaml nova-bridge:topology.yaml nova-cloud:cloud.yaml; do
  pkg=${pair%%:*}
  conffiles=$(dpkg-deb --ctrl-tarfile "$debs_dir/${pkg}_"*.deb | tar -xO ./conffiles)
  [[ $conffiles == "/etc/nova/${pair#*:}" ]] || { echo "$pkg: conffiles are '$conffiles', not /etc/nova/${pair#*:}" >&2; exit 1; }
done
echo "conffiles: /etc/nova/agent.yaml, topology.yaml, cloud.yaml"

# `cmake --install` lays out the tree the packages hold: the same paths, once /usr/etc and
# /usr/lib/systemd are where Debian keeps them and without what debhelper adds (changelog,
# copyright, manual pages, .gz compression of docs).
plain=$(mktemp -d)
trap 'rm -rf "$plain"' EXIT
DESTDIR="$plain/tree" cmake --install "$build_dir" --prefix /usr >/dev/null
(cd "$plain/tree" && find . -type f) | sed -E 's#^\./usr/etc/#./etc/#; s#^\./usr/lib/systemd/#./lib/systemd/#' | sort >"$plain/cmake.list"
for deb in "$debs_dir"/*.deb; do dpkg-deb --fsys-tarfile "$deb" | tar -t; done | grep -v '/$' |
  grep -v -E '/usr/share/doc/[^/]+/(changelog\.gz|copyright)$|^\./usr/share/man/' | sed -E 's/\.gz$//' | sort >"$plain/debs.list"
diff -u "$plain/cmake.list" "$plain/debs.list" || { echo "cmake --install and the packages differ (above)" >&2; exit 1; }
echo "cmake --install: the same $(wc -l <"$plain/cmake.list") files as the packages"
