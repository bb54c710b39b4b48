#!/usr/bin/env bash
# Builds spoolmail and installs it as sendmail, mailq, newaliases and spoolctl, for a
# source install (on Debian, the package from scripts/build-deb is the better
# way: it replaces the system's MTA cleanly and runs the queue).
#
#   scripts/install.sh            /usr/sbin/sendmail, /usr/lib/sendmail, /etc/spoolmail.conf,
#                                 /var/spool/spoolmail
#   scripts/install.sh PREFIX     PREFIX/sbin/sendmail, PREFIX/etc/spoolmail.conf, PREFIX/spool
#   scripts/install.sh --uninstall [PREFIX]
#                                 removes the binary, its links and man pages; keeps the
#                                 config, and the spool when it holds mail (saying so)
#
# Installing to / is refused while a Debian package owns /usr/sbin/sendmail
# (exim4, Postfix): the two would fight over the links.
# The binary is setgid to group `spoolmail` and the spool is writable by that
# group only, as Postfix's postdrop and dma are set up: any local user can
# submit, nobody but root and the group can read queued mail.
# Environment: GROUP (default spoolmail), CARGO_TARGET_DIR as usual, PROFILE
# (default release; the tests use dev, which skips the slow LTO build).
# SPOOLMAIL_BINARY=FILE installs that binary instead of building one (its
# compiled-in config path must be this install's: /etc/spoolmail.conf for /).
set -euo pipefail
cd "$(dirname "$0")/.."

uninstall=false
if [ "${1:-}" = --uninstall ]; then
    uninstall=true
    shift
fi
prefix=${1:-}
group=${GROUP:-spoolmail}
if [ -z "$prefix" ]; then
    sbin=/usr/sbin; bin=/usr/bin; lib=/usr/lib; man=/usr/share/man
    conf=/etc/spoolmail.conf; spool=/var/spool/spoolmail
else
    prefix=$(realpath -m "$prefix")
    sbin=$prefix/sbin; bin=$prefix/bin; lib=; man=$prefix/share/man
    conf=$prefix/etc/spoolmail.conf; spool=$prefix/spool
fi

# The man pages spoolmail(8) (also as sendmail(8), mailq(8), newaliases(8))
# and spoolmail.conf(5), generated from the flags and keys by the binary
# being installed, so that they name its config file; doc/man/ holds the
# committed copies (scripts/generate-docs), used for a binary that cannot.
man_pages=("man8/spoolmail.8" "man8/spoolctl.8" "man5/spoolmail.conf.5")
man_links=(sendmail mailq newaliases)

install_man_pages() {
    local page what
    for page in "${man_pages[@]}"; do
        install -d "$man/$(dirname "$page")"
        what=man
        [ "$page" = man5/spoolmail.conf.5 ] && what=conf-man
        [ "$page" = man8/spoolctl.8 ] && what=ctl-man
        if ! "$target" --generate "$what" >"$man/$page.new" 2>/dev/null; then
            cp "doc/man/$(basename "$page")" "$man/$page.new"
        fi
        chmod 0644 "$man/$page.new"
        mv "$man/$page.new" "$man/$page"
    done
    for page in "${man_links[@]}"; do
        [ -e "$man/man8/$page.8" ] || [ -L "$man/man8/$page.8" ] || ln -s spoolmail.8 "$man/man8/$page.8"
    done
}

# remove_link PATH: removes PATH if it is a link to spoolmail (never another MTA's).
remove_link() {
    if [ -L "$1" ] && [ "$(realpath -m "$1")" = "$(realpath -m "$sbin/spoolmail")" ]; then
        rm -f "$1" && echo "removed $1"
    fi
}

do_uninstall() {
    local name
    # /usr/lib/sendmail first: it resolves through $sbin/sendmail.
    for name in ${lib:+"$lib/sendmail"} "$sbin/sendmail" "$bin/mailq" "$bin/newaliases" "$sbin/spoolctl"; do
        remove_link "$name"
    done
    if [ -e "$sbin/spoolmail" ]; then rm -f "$sbin/spoolmail" && echo "removed $sbin/spoolmail"; fi
    for name in "${man_links[@]}"; do
        if [ "$(readlink "$man/man8/$name.8" 2>/dev/null)" = spoolmail.8 ]; then
            rm -f "$man/man8/$name.8" && echo "removed $man/man8/$name.8"
        fi
    done
    for name in "${man_pages[@]}"; do
        if [ -e "$man/$name" ]; then rm -f "$man/$name" && echo "removed $man/$name"; fi
    done
    [ -e "$conf" ] && echo "kept $conf (remove it yourself if you no longer want it)"
    if [ -n "$(find "$spool/queue" "$spool/tmp" -mindepth 1 2>/dev/null | head -n 1)" ]; then
        echo "kept $spool: it still holds mail ($(find "$spool/queue" -mindepth 1 -maxdepth 1 ! -name '*.state' 2>/dev/null | wc -l) message(s) in $spool/queue)"
    elif [ -d "$spool" ]; then
        rm -rf "$spool" && echo "removed the empty spool $spool"
    fi
}

if $uninstall; then
    do_uninstall
    exit 0
fi

if [ -z "$prefix" ] && command -v dpkg-query >/dev/null; then
    owner=$(dpkg-query -S /usr/sbin/sendmail 2>/dev/null | cut -d: -f1 || true)
    if [ "$owner" = spoolmail ]; then
        echo "install.sh: spoolmail's Debian package is installed: upgrade it with a newer package (scripts/build-deb), or apt-get remove spoolmail first" >&2
        exit 73
    elif [ -n "$owner" ]; then
        echo "install.sh: /usr/sbin/sendmail belongs to the Debian package $owner: install spoolmail's package instead (scripts/build-deb, then apt-get install ./target/debian/spoolmail_*.deb), which replaces it cleanly" >&2
        exit 73
    fi
fi

if [ -n "${SPOOLMAIL_BINARY:-}" ]; then
    target=$SPOOLMAIL_BINARY
else
    profile=${PROFILE:-release}
    SPOOLMAIL_CONFIG=$conf cargo build --profile "$profile" --locked --quiet
    profile_dir=$profile
    [ "$profile" = dev ] && profile_dir=debug
    target=${CARGO_TARGET_DIR:-target}/$profile_dir/spoolmail
fi

as_root=false
[ "$(id -u)" = 0 ] && as_root=true
if $as_root && ! getent group "$group" >/dev/null; then
    groupadd --system "$group"
fi

install -d "$sbin" "$bin" "$(dirname "$conf")"
if $as_root; then
    install -m 2755 -o root -g "$group" "$target" "$sbin/spoolmail"
else
    echo "install.sh: not root: installing without setgid; only your own user can submit" >&2
    install -m 0755 "$target" "$sbin/spoolmail"
fi
ln -sf spoolmail "$sbin/sendmail"
ln -sf spoolmail "$sbin/spoolctl"
ln -sf "$sbin/spoolmail" "$bin/mailq"
ln -sf "$sbin/spoolmail" "$bin/newaliases"
if [ -n "$lib" ]; then
    ln -sf ../sbin/sendmail "$lib/sendmail"
fi
install_man_pages

# The spool: root:GROUP, the group may create files, others may not look in.
install -d -m 0750 "$spool"
install -d -m 0770 "$spool/tmp" "$spool/queue"
# setgid: every lock file in slots/ (and cached policy in sts/) gets the group, whoever creates it.
install -d -m 2770 "$spool/slots" "$spool/sts"
# The metrics' counters, which every user's deliveries add to; kept as they are.
if [ ! -e "$spool/counters" ]; then
    install -m 0660 /dev/null "$spool/counters"
fi
if $as_root; then
    chown root:"$group" "$spool" "$spool/tmp" "$spool/queue" "$spool/slots" "$spool/sts" "$spool/counters"
    chmod 2770 "$spool/slots" "$spool/sts"
fi

if [ ! -e "$conf" ]; then
    sed "s|^# spool_dir = .*|spool_dir = $spool|" doc/spoolmail.conf >"$conf"
    chmod 0644 "$conf"
fi
echo "installed: $sbin/sendmail (-> spoolmail), ${lib:+$lib/sendmail, }$bin/mailq, $bin/newaliases, $sbin/spoolctl; config $conf; spool $spool"
