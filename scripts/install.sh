#!/usr/bin/env bash
# Builds spoolmail and installs it as sendmail, mailq and newaliases.
#
#   scripts/install.sh            /usr/sbin/sendmail, /etc/spoolmail.conf, /var/spool/spoolmail
#   scripts/install.sh PREFIX     PREFIX/sbin/sendmail, PREFIX/etc/spoolmail.conf, PREFIX/spool
#
# The binary is setgid to group `spoolmail` and the spool is writable by that
# group only, as Postfix's postdrop and dma are set up: any local user can
# submit, nobody but root and the group can read queued mail.
# Environment: GROUP (default spoolmail), CARGO_TARGET_DIR as usual, PROFILE
# (default release; the tests use dev, which skips the slow LTO build).
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=${1:-}
group=${GROUP:-spoolmail}
if [ -z "$prefix" ]; then
    sbin=/usr/sbin; bin=/usr/bin; conf=/etc/spoolmail.conf; spool=/var/spool/spoolmail
else
    prefix=$(realpath -m "$prefix")
    sbin=$prefix/sbin; bin=$prefix/bin; conf=$prefix/etc/spoolmail.conf; spool=$prefix/spool
fi

profile=${PROFILE:-release}
SPOOLMAIL_CONFIG=$conf cargo build --profile "$profile" --locked --quiet
profile_dir=$profile
[ "$profile" = dev ] && profile_dir=debug
target=${CARGO_TARGET_DIR:-target}/$profile_dir/spoolmail

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
ln -sf "$sbin/spoolmail" "$bin/mailq"
ln -sf "$sbin/spoolmail" "$bin/newaliases"

# The spool: root:GROUP, the group may create files, others may not look in.
install -d -m 0750 "$spool"
install -d -m 0770 "$spool/tmp" "$spool/queue"
if $as_root; then
    chown root:"$group" "$spool" "$spool/tmp" "$spool/queue"
fi

if [ ! -e "$conf" ]; then
    sed "s|^# spool_dir = .*|spool_dir = $spool|" doc/spoolmail.conf >"$conf"
    chmod 0644 "$conf"
fi
echo "installed: $sbin/sendmail (-> spoolmail), $bin/mailq, $bin/newaliases; config $conf; spool $spool"
