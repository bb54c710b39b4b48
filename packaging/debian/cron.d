# spoolmail: a queue run every 5 minutes (sendmail -q), for systems without
# systemd. Where systemd runs, spoolmail-queue.timer does it and this line
# does nothing. It also does nothing once the package is removed (this file,
# a conffile, stays until purge).
*/5 * * * * root [ -x /usr/sbin/spoolmail ] && [ ! -d /run/systemd/system ] && /usr/sbin/spoolmail -q
