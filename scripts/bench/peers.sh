# Shared by scripts/bench-enqueue and scripts/bench-queue (sourced, bash):
# tools, the work dir, building spoolmail, the peers from Debian's packages
# (downloaded and extracted, never installed) and the mount namespace they
# run in. The sourcing script sets `bench_name` (for messages), `here` (the
# scripts dir), `repo`, and `WORK` before calling the functions that need it.
#
# How the peers run without being installed (nothing under /usr, /etc or
# /var is touched): `apt-get download` + `dpkg -x` into $WORK/pkg/NAME.
#   dma      reads /etc/dma/dma.conf (compiled in, no option for another): it
#            runs in a private mount namespace where /etc is a read-only
#            overlay of the layer dir's etc/ over the real /etc.
#   postfix  MAIL_CONFIG=<dir> (a private main.cf/master.cf). Its binaries
#            find libpostfix-*.so through RUNPATH /usr/lib/postfix, and
#            Postfix strips LD_LIBRARY_PATH from its environment, so it runs
#            in the same namespace, where /usr/lib is a read-only overlay of
#            the layer dir's usrlib/ (holding postfix/) over the real one.

say() { printf '%s\n' "$*" >&2; }
die() { say "${bench_name:-bench}: $*"; exit 1; }

apt_updated=
apt_install() {
    [[ -n $apt_updated ]] || { apt-get update -qq >/dev/null; apt_updated=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# need_tools COMMAND:PACKAGE...: installs the package of each missing command.
need_tools() {
    local tool
    for tool in "$@"; do
        command -v "${tool%%:*}" >/dev/null || { say "installing ${tool#*:}"; apt_install "${tool#*:}"; }
    done
}

# bench_workdir: wipes and recreates $WORK (only an empty dir or one of ours).
bench_workdir() {
    local marker=.spoolmail-bench-work
    [[ $WORK == /?*/* || $WORK == /tmp/?* ]] || die "BENCH_WORK must be an absolute path below a top-level dir (got '$WORK')"
    if [[ -e $WORK ]]; then
        [[ -e $WORK/$marker || -z $(ls -A "$WORK") ]] || die "$WORK exists and is not a bench work dir; refusing to wipe it"
        rm -rf "$WORK"
    fi
    mkdir -p "$WORK"
    touch "$WORK/$marker"
    chmod 755 "$WORK"   # dma drops to uid mail and must reach its spool
}

# build_spoolmail: sets SPOOLMAIL, from $SPOOLMAIL, or built from the work
# tree (or from git revision $BENCH_REV) into $CARGO_TARGET_DIR.
build_spoolmail() {
    if [[ -n ${SPOOLMAIL:-} ]]; then
        [[ -x $SPOOLMAIL ]] || die "SPOOLMAIL=$SPOOLMAIL is not executable"
    else
        local src=$repo
        if [[ -n ${BENCH_REV:-} ]]; then
            src=$WORK/src
            mkdir -p "$src"
            git -C "$repo" archive "$BENCH_REV" | tar -x -C "$src" || die "cannot export $BENCH_REV"
        fi
        say "building spoolmail from $src${BENCH_REV:+ ($BENCH_REV)} (cargo build --release, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
        (cd "$src" && cargo build --release --quiet) || die "cargo build failed"
        SPOOLMAIL=$CARGO_TARGET_DIR/release/spoolmail
    fi
    SPOOLMAIL=$(readlink -f "$SPOOLMAIL")
}

# fetch_peers PACKAGE...: each package's .deb into $WORK/debs, extracted into
# $WORK/pkg/PACKAGE.
fetch_peers() {
    mkdir -p "$WORK/debs" "$WORK/pkg"
    chmod 777 "$WORK/debs"   # lets apt's sandbox user write there
    if ! (cd "$WORK/debs" && apt-get download "$@" >/dev/null 2>&1); then
        say "apt-get download failed; running apt-get update"
        apt-get update -qq >/dev/null && apt_updated=1
        (cd "$WORK/debs" && apt-get download "$@" >/dev/null) || die "apt-get download $* failed"
    fi
    local p deb
    for p in "$@"; do
        deb=$(ls "$WORK/debs/${p}_"*.deb)
        mkdir -p "$WORK/pkg/$p"
        dpkg -x "$deb" "$WORK/pkg/$p"
        say "peer $p: $(basename "$deb")"
    done
}

# peer_libs BINARY...: installs the system libraries the fetched peers'
# binaries need and lack (from the Depends of every fetched .deb).
peer_libs() {
    local b missing libs
    missing=$(for b in "$@"; do
                  LD_LIBRARY_PATH=$WORK/pkg/postfix/usr/lib/postfix ldd "$b" | awk '/not found/ {print $1}'
              done | sort -u)
    [[ -n $missing ]] || return 0
    libs=$(for deb in "$WORK/debs/"*.deb; do dpkg-deb -f "$deb" Depends; done |
           tr ',|' '\n\n' | awk '{print $1}' | grep '^lib' | sort -u)
    say "missing libraries ($(echo $missing)); installing ${libs//$'\n'/ }"
    apt_install $libs
}

# postfix_base_cf QUEUE_DIR CONF_DIR DATA_DIR: the main.cf lines every
# private Postfix instance shares (binaries from $WORK/pkg/postfix).
postfix_base_cf() {
    local X=$WORK/pkg/postfix
    cat <<EOF
compatibility_level = 3.6
queue_directory = $1
command_directory = $X/usr/sbin
daemon_directory = $X/usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
meta_directory = $2
data_directory = $3
# Existing accounts with distinct ids (Postfix checks): none is created.
mail_owner = mail
setgid_group = news
default_privs = nobody
myhostname = bench.example
mydomain = example
myorigin = \$myhostname
mydestination =
inet_interfaces = loopback-only
alias_maps =
alias_database =
EOF
}

# start_peer_ns LAYERS: a private mount namespace with LAYERS/etc over /etc
# and LAYERS/usrlib over /usr/lib, held by a process that ends with this
# script; sets ns_pid (enter it with `nsenter --mount=/proc/$ns_pid/ns/mnt`).
ns_pid=
start_peer_ns() {
    local L=$1
    rm -f "$WORK/ns-ready"
    unshare -m --propagation private bash -c '
        set -e
        mount -t overlay bench-etc -o "lowerdir=$1/etc:/etc" /etc
        mount -t overlay bench-usrlib -o "lowerdir=$1/usrlib:/usr/lib" /usr/lib
        touch "$3/ns-ready"
        exec tail --pid="$2" -f /dev/null' bench-ns "$L" $$ "$WORK" 2> "$WORK/ns.err" &   # ends with this script
    ns_pid=$!
    for _ in $(seq 100); do [[ -e $WORK/ns-ready ]] && break; kill -0 "$ns_pid" 2>/dev/null || break; sleep 0.1; done
    [[ -e $WORK/ns-ready ]] || die "cannot set up the peers' mount namespace: $(cat "$WORK/ns.err")"
}

stop_peer_ns() {
    [[ -n $ns_pid ]] && kill "$ns_pid" 2>/dev/null
    ns_pid=
    true
}
