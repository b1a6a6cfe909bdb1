# Sourced by firmware scripts: mirror_url prints the machine's Debian mirror, the first
# deb URI of its apt sources (deb822 or one-line format) that serves the main archive
# (not the security one). Read at run time: the repo names no registry host.
mirror_url() {
  local f url
  url=$(
    for f in /etc/apt/sources.list.d/*.sources; do
      [[ -f $f ]] && awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [[ -f $f ]] && awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) {print $i; break}}' "$f"
    done
  )
  url=$(grep -v -- '-security' <<<"$url" | head -n 1)
  if [[ -z $url ]]; then
    echo "firmware: no Debian mirror found in the machine's apt sources" >&2
    return 1
  fi
  echo "$url"
}
