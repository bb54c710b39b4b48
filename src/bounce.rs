//! Delivery status notifications (RFC 3464) for recipients that failed for
//! good: a multipart/report from MAILER-DAEMON with the null sender, queued
//! like any other message. A bounce is never bounced: when one fails it goes
//! to `double_bounce_recipient`, or is logged and dropped.

use crate::error::{Error, Result};
use crate::model::{Address, BodyType, EnhancedCode, Notify, QueueId, Ret};
use crate::spool::{Envelope, Recipient, Spool};
use crate::system;
use std::io::{BufRead, Write};

use crate::limits::MAX_RETURNED;

#[derive(Debug, Clone)]
pub struct Failure {
    pub address: Address,
    pub orcpt: Option<String>,
    /// The server's reply or our own reason, one line.
    pub reason: String,
    /// The enhanced status code of the reply or of our reason, if it has one.
    pub status: Option<EnhancedCode>,
    /// `host[ip]:port` of the server that gave the reason, if one did.
    pub remote: Option<String>,
    /// The attempts ran out rather than a server refusing.
    pub expired: bool,
}

/// Who reports: this host's name, the domain of MAILER-DAEMON, and the
/// address the notice's From has instead (`rewrite_from`'s
/// `sender_address`, for a relay that takes only its account's From).
pub struct Mta<'a> {
    pub host: &'a str,
    pub domain: &'a str,
    pub from: Option<&'a str>,
}

/// Where the bounce of `original` goes, or None when it must not be sent;
/// `double_bounce` is where a bounce's own failure goes, if anywhere.
pub fn recipient_for(original: &Envelope, double_bounce: Option<&str>) -> Option<String> {
    if !original.sender.is_empty() {
        return (original.notify != Some(Notify::NEVER)).then(|| original.sender.clone());
    }
    // A bounce failed: the postmaster may want it, but never twice.
    let double = double_bounce?.to_string();
    let is_double_bounce_already = original
        .recipients
        .iter()
        .any(|r| r.address.to_string().eq_ignore_ascii_case(&double));
    (!is_double_bounce_already).then_some(double)
}

/// What a DSN reports of its recipients (RFC 3464 `Action:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// They failed for good: a bounce.
    Failed,
    /// They are still being retried, until this time (seconds since the
    /// epoch): a delay notice, sent once.
    Delayed { retry_until: u64 },
}

/// One DSN: what it reports, of which recipients, to whom.
#[derive(Debug, Clone, Copy)]
pub struct Notice<'a> {
    pub report: Report,
    pub failures: &'a [Failure],
    pub to: &'a str,
}

/// Queues a DSN for `failures` of `original`; returns the new queue id.
/// It goes from the null sender, in the name of the original's submitter
/// (its `uid`), so that whoever may deliver the original's mail may
/// deliver its notice.
pub fn queue(
    spool: &Spool,
    mta: &Mta,
    original: &Envelope,
    (content, content_len): (&mut impl BufRead, u64),
    notice: &Notice,
) -> Result<QueueId> {
    let (host, domain, from) = (mta.host, mta.domain, mta.from);
    let Notice {
        report,
        failures,
        to,
    } = *notice;
    let envelope = |id| Envelope {
        id,
        arrival: system::now().0,
        uid: original.uid,
        sender: String::new(),
        recipients: vec![Recipient {
            // The sender, or the double-bounce recipient: checked when
            // they were accepted.
            address: Address::accepted(to),
            orcpt: None,
        }],
        ret: None,
        envid: None,
        notify: None,
        body: BodyType::SevenBit,
        smtputf8: !to.is_ascii(),
        notice: true,
    };
    // A delay notice returns the header only, as Postfix's does.
    let full =
        original.ret == Some(Ret::Full) && content_len <= MAX_RETURNED && report == Report::Failed;
    let written = spool.deposit(envelope, |env, draft| {
        let werr = |e| Error::io("cannot write a bounce to the spool", e);
        let dsn = Dsn {
            env,
            original,
            report,
            failures,
            host,
            domain,
            from,
            full,
        };
        let head = dsn.head(to);
        draft.content().write_all(head.as_bytes()).map_err(werr)?;
        draft.add_content_len(head.len());
        // The report's own text may be 8-bit (a server's UTF-8 reason, a
        // non-ASCII address), as may the returned message.
        let mut eight_bit = !head.is_ascii();
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = content
                .read_until(b'\n', &mut line)
                .map_err(|e| Error::io("cannot read the bounced message", e))?;
            if n == 0 || (!full && line == b"\n") {
                break;
            }
            eight_bit |= line.iter().any(|b| *b >= 0x80);
            draft.content().write_all(&line).map_err(werr)?;
            draft.add_content_len(n);
        }
        let tail = format!("\n--{}--\n", boundary(env));
        draft.content().write_all(tail.as_bytes()).map_err(werr)?;
        draft.add_content_len(tail.len());
        if eight_bit {
            env.body = BodyType::EightBitMime;
            draft.mark_8bit().map_err(werr)?;
        }
        Ok(())
    })?;
    Ok(written.id)
}

fn boundary(env: &Envelope) -> String {
    format!("{}.bounce/spoolmail", env.id)
}

/// One DSN being written: the notice's own envelope, the original's, and
/// what it reports.
struct Dsn<'a> {
    env: &'a Envelope,
    original: &'a Envelope,
    report: Report,
    failures: &'a [Failure],
    host: &'a str,
    domain: &'a str,
    from: Option<&'a str>,
    full: bool,
}

impl Dsn<'_> {
    /// Everything up to the returned message or header.
    fn head(&self, to: &str) -> String {
        let (b, host, domain) = (boundary(self.env), self.host, self.domain);
        let date = system::rfc5322_date(self.env.arrival);
        let subject = match self.report {
            Report::Failed => "Undelivered Mail Returned to Sender",
            Report::Delayed { .. } => "Delayed Mail (still being retried)",
        };
        let from = match self.from {
            Some(address) => format!("Mail Delivery System <{address}>"),
            None => format!("MAILER-DAEMON@{domain} (Mail Delivery System)"),
        };
        let mut s = String::with_capacity(2048);
        s.push_str(&format!(
            "Date: {date}\nFrom: {from}\nTo: <{to}>\n\
             Subject: {subject}\nMessage-ID: <{}.bounce@{host}>\n\
             Auto-Submitted: auto-replied\nMIME-Version: 1.0\n\
             Content-Type: multipart/report; report-type=delivery-status;\n\tboundary=\"{b}\"\n\n\
             This is a MIME-encapsulated message.\n\n--{b}\nContent-Type: text/plain; charset=utf-8\n\n",
            self.env.id
        ));
        s.push_str(&self.human_part());
        s.push_str(&format!(
            "\n--{b}\nContent-Type: message/delivery-status\n\n"
        ));
        s.push_str(&self.status_part());
        let (part, description) = match self.full {
            true => ("message/rfc822", "Undelivered Message"),
            false => ("text/rfc822-headers", "Undelivered Message Headers"),
        };
        let description = match self.report {
            Report::Failed => description,
            Report::Delayed { .. } => "Delayed Message Headers",
        };
        s.push_str(&format!(
            "\n--{b}\nContent-Description: {description}\nContent-Type: {part}\n\n"
        ));
        s
    }

    /// The text for people.
    fn human_part(&self) -> String {
        let host = self.host;
        let mut s = match self.report {
            Report::Failed => format!(
                "This is the mail system at host {host}.\n\nI'm sorry to have to inform you that your message could not\n\
                 be delivered to one or more recipients. The reasons are below.\n\n"
            ),
            Report::Delayed { retry_until } => format!(
                "This is the mail system at host {host}.\n\n\
                 ####### THIS IS A WARNING ONLY. YOU DO NOT NEED TO RESEND YOUR MESSAGE. #######\n\n\
                 Your message could not be delivered yet to the recipients below. It will\n\
                 be tried again until {}; you will be told if it fails for good.\n\n",
                system::rfc5322_date(retry_until)
            ),
        };
        for f in self.failures {
            s.push_str(&format!("<{}>: {}\n", f.address, f.reason));
        }
        s
    }

    /// The message/delivery-status part (RFC 3464 section 2).
    fn status_part(&self) -> String {
        let (original, host) = (self.original, self.host);
        let mut s = format!(
            "Reporting-MTA: dns; {host}\nX-Spoolmail-Queue-ID: {}\n",
            original.id
        );
        if !original.sender.is_empty() {
            s.push_str(&format!(
                "X-Spoolmail-Sender: rfc822; {}\n",
                original.sender
            ));
        }
        s.push_str(&format!(
            "Arrival-Date: {}\n",
            system::rfc5322_date(original.arrival)
        ));
        if let Some(envid) = &original.envid {
            s.push_str(&format!("Original-Envelope-Id: {envid}\n"));
        }
        for f in self.failures {
            s.push_str(&format!("\nFinal-Recipient: rfc822; {}\n", f.address));
            if let Some(o) = &f.orcpt {
                s.push_str(&format!("Original-Recipient: rfc822; {o}\n"));
            }
            s.push_str(&match self.report {
                Report::Failed => format!("Action: failed\nStatus: {}\n", status_code(f)),
                Report::Delayed { retry_until } => format!(
                    "Action: delayed\nStatus: {}\nWill-Retry-Until: {}\n",
                    delay_code(f),
                    system::rfc5322_date(retry_until)
                ),
            });
            match &f.remote {
                Some(remote) => {
                    let host = remote.split('[').next().unwrap_or(remote);
                    s.push_str(&format!(
                        "Remote-MTA: dns; {host}\nDiagnostic-Code: smtp; {}\n",
                        f.reason
                    ));
                }
                None => s.push_str(&format!("Diagnostic-Code: X-Spoolmail; {}\n", f.reason)),
            }
        }
        s
    }
}

/// A delayed recipient's temporary enhanced status code, else 4.0.0.
fn delay_code(f: &Failure) -> EnhancedCode {
    match f.status {
        Some(code) if code.class == 4 => code,
        _ => EnhancedCode::new(4, 0, 0),
    }
}

/// The failure's own permanent enhanced status code (`550 5.1.1 ...`),
/// else one that fits: 4.4.7 for an expired message, 5.0.0 otherwise.
fn status_code(f: &Failure) -> EnhancedCode {
    match f.status {
        _ if f.expired => EnhancedCode::new(4, 4, 7),
        Some(code) if code.class == 5 => code,
        _ => EnhancedCode::new(5, 0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes() {
        let failure = |status: Option<&str>, expired| Failure {
            address: Address::accepted("a@b"),
            orcpt: None,
            reason: "whatever the text says: 550 5.9.9".into(),
            status: status.and_then(EnhancedCode::parse),
            remote: None,
            expired,
        };
        let cases = [
            (Some("5.1.1"), false, "5.1.1"),
            (None, false, "5.0.0"),
            // A temporary code is no reason for a failure notice.
            (Some("4.3.0"), false, "5.0.0"),
            (Some("4.3.0"), true, "4.4.7"),
            (Some("5.1.1"), true, "4.4.7"),
        ];
        for (status, expired, want) in cases {
            assert_eq!(
                status_code(&failure(status, expired)).to_string(),
                want,
                "{status:?} {expired}"
            );
        }
    }
}
