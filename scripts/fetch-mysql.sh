#!/bin/bash
# Installs Oracle MySQL (Debian unstable's mysql-server-core and mysql-client-core, 9.7 LTS when written) into a
# private prefix for dbferry's tests and benchmarks. Debian 12 itself packages only MariaDB, so the packages and
# their whole library closure come from the unstable suite, through apt with a private package list (the
# system's apt state, packages and libraries are untouched), and are unpacked, not installed. Each binary runs
# through the unpacked suite's own dynamic loader, so the machine's older glibc does not matter.
# About 60 MB and 20 seconds; a second run does nothing.
#
#   DBFERRY_MYSQL_PREFIX  where to put it (default /var/cache/dbferry-mysql; the testkit reads the same variable)
#   DBFERRY_MYSQL_SUITE   the Debian suite (default sid)
#
# Result: $PREFIX/bin/{mysqld,mysql,mysqldump,...} wrappers, $PREFIX/root/ the unpacked packages, and
# $PREFIX/.fetched holding `mysqld --version` (written last: its presence means the prefix is complete).
set -euo pipefail
prefix=${DBFERRY_MYSQL_PREFIX:-/var/cache/dbferry-mysql}
suite=${DBFERRY_MYSQL_SUITE:-sid}
packages="mysql-server-core mysql-client-core"

if [ -f "$prefix/.fetched" ]; then
  echo "fetch-mysql: $(cat "$prefix/.fetched") already in $prefix"
  exit 0
fi
for tool in apt-get apt-cache dpkg; do
  command -v "$tool" >/dev/null || { echo "fetch-mysql: FAILED: $tool is needed (a Debian machine)" >&2; exit 1; }
done

apt_dir=$prefix/apt
root=$prefix/root
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs" "$root" "$prefix/bin"

# Another suite of the archive the system's apt already uses (deb822 sources first, then sources.list).
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n1 || true)
if [ -z "$mirror" ]; then
  mirror=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; exit } }' \
    /etc/apt/sources.list 2>/dev/null || true)
fi
[ -n "$mirror" ] || { echo "fetch-mysql: FAILED: no Debian archive found in the system's apt sources" >&2; exit 1; }
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" >"$apt_dir/sources.list"
apt_options=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o Dir::Etc::sourceparts=-
  -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o APT::Sandbox::User=root)

echo "fetch-mysql: reading $suite's package list from $mirror"
apt-get "${apt_options[@]}" update >/dev/null
# Every package the two need, recursively; perl only serves helper scripts the tests never run.
apt-cache "${apt_options[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances --no-pre-depends $packages \
  | grep -v '^[ <]' | sort -u | grep -vE '^(perl|perl-base|perl-modules-.*|libperl.*)$' >"$apt_dir/closure.txt"
echo "fetch-mysql: downloading $(wc -l <"$apt_dir/closure.txt") packages"
(cd "$apt_dir/debs" && xargs apt-get "${apt_options[@]}" download <"$apt_dir/closure.txt" >/dev/null)
for deb in "$apt_dir"/debs/*.deb; do dpkg -x "$deb" "$root"; done

loader=$root/usr/lib64/ld-linux-x86-64.so.2
[ -x "$loader" ] || { echo "fetch-mysql: FAILED: $loader missing from the unpacked libc" >&2; exit 1; }
for binary in "$root"/usr/sbin/* "$root"/usr/bin/*; do
  [ -f "$binary" ] && [ -x "$binary" ] && head -c 4 "$binary" | grep -q ELF || continue
  printf '#!/bin/sh\nexec %s --library-path %s %s "$@"\n' "$loader" "$root/usr/lib/x86_64-linux-gnu" "$binary" \
    >"$prefix/bin/$(basename "$binary")"
  chmod 755 "$prefix/bin/$(basename "$binary")"
done
rm -rf "$apt_dir/debs" "$apt_dir/cache"

version=$("$prefix/bin/mysqld" --version) || { echo "fetch-mysql: FAILED: the unpacked mysqld does not run" >&2; exit 1; }
echo "$version" >"$prefix/.fetched"
echo "fetch-mysql: $version in $prefix"
