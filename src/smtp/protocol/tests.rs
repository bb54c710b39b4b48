//! Table tests of the protocol rules: each row one case.

// A table's row type is spelled out where the table is.
#![allow(clippy::type_complexity)]

use super::*;

fn reply(line: &str) -> Reply {
    let (code, text) = line.split_at(3);
    Reply::new(code.parse().unwrap(), &[text.trim_start().to_string()])
}

fn read_all(lines: &[&[u8]]) -> Result<Option<RawReply>, BadReply> {
    let mut r = ReplyReader::default();
    let mut last = Ok(None);
    for l in lines {
        last = r.push(l);
        if last.is_err() {
            break;
        }
    }
    last
}

#[test]
fn replies_are_read_line_by_line() {
    let long = format!("250 {}\r\n", "x".repeat(MAX_REPLY_LINE));
    let long = [long.as_bytes()];
    let ok = |code: u16, lines: &[&str]| {
        Ok(Some(RawReply {
            code,
            lines: lines.iter().map(|s| s.to_string()).collect(),
        }))
    };
    let bad = |l: &str| Err(BadReply::Malformed(l.to_string()));
    let cases: Vec<(&[&[u8]], Result<Option<RawReply>, BadReply>)> = vec![
        (&[b"250 ok\r\n"], ok(250, &["ok"])),
        (&[b"250 ok\n"], ok(250, &["ok"])),
        (&[b"250\r\n"], ok(250, &[""])),
        (
            &[b"250-a\r\n", b"250-b\r\n", b"250 c\r\n"],
            ok(250, &["a", "b", "c"]),
        ),
        (&[b"250-a\r\n"], Ok(None)),
        (&[b"550 bad\x07 bell\r\n"], ok(550, &["bad bell"])),
        // Every line of one reply has the same code.
        (&[b"250-a\r\n", b"550 b\r\n"], bad("550 b")),
        (&[b"hello\r\n"], bad("hello")),
        (&[b"25\r\n"], bad("25")),
        (&[b"150 early\r\n"], bad("150 early")),
        (&[b"650 late\r\n"], bad("650 late")),
        (&[b"+50 sign\r\n"], bad("+50 sign")),
        (&[b"250_x\r\n"], bad("250_x")),
        (&long, Err(BadReply::TooLong)),
    ];
    for (lines, want) in cases {
        assert_eq!(read_all(lines), want, "{lines:?}");
    }
    let many: Vec<&[u8]> = std::iter::repeat_n(&b"250-x\r\n"[..], MAX_REPLY_LINES + 1).collect();
    assert_eq!(read_all(&many), Err(BadReply::TooLong));
}

#[test]
fn ehlo_capabilities() {
    let caps = |lines: &[&str]| {
        Capabilities::from_ehlo(&RawReply {
            code: 250,
            lines: lines.iter().map(|s| s.to_string()).collect(),
        })
    };
    let none = Capabilities::default();
    let cases: Vec<(&[&str], Capabilities)> = vec![
        (&["mx.example"], none.clone()),
        // The greeting line is never a keyword.
        (&["PIPELINING"], none.clone()),
        (
            &[
                "mx",
                "PIPELINING",
                "SIZE 10240000",
                "8BITMIME",
                "DSN",
                "SMTPUTF8",
                "STARTTLS",
            ],
            Capabilities {
                pipelining: true,
                size: Some(10240000),
                eightbitmime: true,
                smtputf8: true,
                dsn: true,
                starttls: true,
                auth: vec![],
            },
        ),
        (
            &["mx", "size"],
            Capabilities {
                size: Some(0),
                ..none.clone()
            },
        ),
        (
            &["mx", "SIZE x"],
            Capabilities {
                size: Some(0),
                ..none.clone()
            },
        ),
        (
            &["relay", "AUTH plain LOGIN", "AUTH=XOAUTH2"],
            Capabilities {
                auth: vec!["PLAIN".into(), "LOGIN".into(), "XOAUTH2".into()],
                ..none.clone()
            },
        ),
        (&["mx", "XFORWARD NAME", "HELP"], none.clone()),
    ];
    for (lines, want) in cases {
        assert_eq!(caps(lines), want, "{lines:?}");
    }
}

#[test]
fn mail_and_rcpt_parameters() {
    let plain = Capabilities::default();
    let all = Capabilities {
        size: Some(0),
        eightbitmime: true,
        smtputf8: true,
        dsn: true,
        ..Capabilities::default()
    };
    let base = MailParams {
        sender: "a@b",
        size: 42,
        ..MailParams::default()
    };
    let full = MailParams {
        eight_bit: true,
        smtputf8: true,
        ret_full: Some(true),
        envid: Some("id+1=x y"),
        ..base.clone()
    };
    let cases: Vec<(&MailParams, &Capabilities, &str)> = vec![
        (&base, &plain, "MAIL FROM:<a@b>"),
        (&base, &all, "MAIL FROM:<a@b> SIZE=42"),
        (&full, &plain, "MAIL FROM:<a@b> SMTPUTF8"),
        (
            &full,
            &all,
            "MAIL FROM:<a@b> SIZE=42 BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=id+2B1+3Dx+20y",
        ),
    ];
    for (p, caps, want) in cases {
        assert_eq!(mail_command(p, caps), want);
    }
    let hdrs = MailParams {
        ret_full: Some(false),
        sender: "",
        ..base.clone()
    };
    assert_eq!(mail_command(&hdrs, &all), "MAIL FROM:<> SIZE=42 RET=HDRS");

    let r = RcptParams {
        address: "c@d",
        notify: Some("SUCCESS,FAILURE"),
        orcpt: Some("c"),
    };
    let utf8 = RcptParams {
        orcpt: Some("j\u{e9}"),
        ..r.clone()
    };
    let bare = RcptParams {
        address: "c@d",
        ..RcptParams::default()
    };
    let cases: Vec<(&RcptParams, &Capabilities, &str)> = vec![
        (&r, &plain, "RCPT TO:<c@d>"),
        (
            &r,
            &all,
            "RCPT TO:<c@d> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;c",
        ),
        (&utf8, &all, "RCPT TO:<c@d> NOTIFY=SUCCESS,FAILURE"),
        (&bare, &all, "RCPT TO:<c@d>"),
    ];
    for (p, caps, want) in cases {
        assert_eq!(rcpt_command(p, caps), want);
    }
}

#[test]
fn refusals_before_mail() {
    let caps = Capabilities {
        size: Some(100),
        ..Capabilities::default()
    };
    let p = |size, smtputf8| MailParams {
        size,
        smtputf8,
        ..MailParams::default()
    };
    let cases: Vec<(MailParams, Option<&str>)> = vec![
        (p(100, false), None),
        (p(101, false), Some("5.3.4")),
        (p(1, true), Some("5.6.7")),
    ];
    for (params, want) in cases {
        let got = refuse_before_mail(&params, &caps, "mx[127.0.0.1]:25");
        assert_eq!(
            got.as_ref().map(|o| o.status().to_string()).as_deref(),
            want
        );
        if let Some(o) = got {
            assert_eq!(o.verdict(), crate::model::Verdict::Failed);
            assert!(o.reply().is_none(), "a local reason, no made-up reply: {o}");
        }
    }
    let unlimited = Capabilities {
        size: Some(0),
        ..Capabilities::default()
    };
    assert!(refuse_before_mail(&p(1 << 40, false), &unlimited, "x").is_none());
}

#[test]
fn dot_stuffing() {
    let cases: Vec<(Vec<&[u8]>, &[u8])> = vec![
        (vec![b""], b".\r\n"),
        (vec![b"a\n"], b"a\r\n.\r\n"),
        (vec![b"a"], b"a\r\n.\r\n"),
        (vec![b".\n"], b"..\r\n.\r\n"),
        (vec![b"a\n.b\n..c\n"], b"a\r\n..b\r\n...c\r\n.\r\n"),
        (vec![b"x.\n"], b"x.\r\n.\r\n"),
        // A line split between chunks: the dot is only doubled at a start.
        (vec![b"a", b".b\n", b".", b"c"], b"a.b\r\n..c\r\n.\r\n"),
        (vec![b"a\n", b".\n"], b"a\r\n..\r\n.\r\n"),
        (vec![b"a\r\n"], b"a\r\r\n.\r\n"),
    ];
    for (chunks, want) in cases {
        let mut d = DotStuffer::default();
        let mut out = Vec::new();
        for c in &chunks {
            d.feed(c, &mut out);
        }
        d.finish(&mut out);
        assert_eq!(out, want, "{chunks:?}");
    }
}

#[test]
fn answers_by_command() {
    use Command::*;
    let no = Ok(Answer::No);
    let yes = Ok(Answer::Yes);
    let err = |code, command| Err(ProtocolError { code, command });
    let cases = vec![
        (Mail, "250 ok", yes),
        (Mail, "451 later", no),
        (Mail, "354 go", err(354, Mail)),
        (Rcpt, "250 ok", yes),
        (Rcpt, "251 forwarded", yes),
        (Rcpt, "550 no", no),
        (Rcpt, "452 4.5.3 too many", no),
        (Rcpt, "350 go on", err(350, Rcpt)),
        (Data, "354 go", yes),
        (Data, "554 no recipients", no),
        (Data, "250 ok", err(250, Data)),
        (Data, "334 what", err(334, Data)),
        (EndOfData, "250 queued", yes),
        (EndOfData, "552 too big", no),
        (EndOfData, "354 again", err(354, EndOfData)),
        (Rset, "250 ok", yes),
    ];
    for (command, line, want) in cases {
        assert_eq!(answer(command, &reply(line)), want, "{command} {line}");
    }
    assert_eq!(
        ProtocolError {
            code: 250,
            command: Data
        }
        .to_string(),
        "protocol error: 250 in reply to DATA"
    );
}

/// A transaction from its reply lines: MAIL, the RCPTs, DATA, the end.
fn run(
    mail: &str,
    rcpts: &[&str],
    data: Option<&str>,
    end: Option<&str>,
) -> Result<Finished, String> {
    let rcpts: Vec<Reply> = rcpts.iter().map(|l| reply(l)).collect();
    let (mail, data, end) = (reply(mail), data.map(reply), end.map(reply));
    finish(&Replies {
        mail: &mail,
        rcpts: &rcpts,
        data: data.as_ref(),
        end: end.as_ref(),
    })
    .map_err(|e| e.to_string())
}

/// Each outcome as its text, in RCPT order; `again` as "again".
fn shown(f: Finished) -> Vec<String> {
    let mut v: Vec<(usize, String)> = f
        .outcomes
        .iter()
        .map(|(i, o)| (*i, o.to_string()))
        .collect();
    v.extend(f.again.iter().map(|i| (*i, "again".to_string())));
    v.sort();
    v.into_iter().map(|(_, s)| s).collect()
}

#[test]
fn transaction_outcomes() {
    type Case<'a> = (
        &'a str,
        &'a [&'a str],
        Option<&'a str>,
        Option<&'a str>,
        Result<Vec<&'a str>, &'a str>,
    );
    let cases: Vec<Case> = vec![
        // Everything accepted: the end of data decides.
        (
            "250 ok",
            &["250 ok", "250 ok"],
            Some("354 go"),
            Some("250 queued"),
            Ok(vec!["250 queued", "250 queued"]),
        ),
        // One refused: it keeps its own reply.
        (
            "250 ok",
            &["550 5.1.1 no", "250 ok"],
            Some("354 go"),
            Some("250 queued"),
            Ok(vec!["550 5.1.1 no", "250 queued"]),
        ),
        // MAIL refused: every recipient has its reply, whatever followed.
        (
            "452 4.3.1 full",
            &["503 need MAIL", "503 need MAIL"],
            Some("503 need MAIL"),
            None,
            Ok(vec!["452 4.3.1 full", "452 4.3.1 full"]),
        ),
        // DATA refused: the accepted ones have its reply.
        (
            "250 ok",
            &["250 ok", "550 no"],
            Some("451 later"),
            None,
            Ok(vec!["451 later", "550 no"]),
        ),
        // End of data refused.
        (
            "250 ok",
            &["250 ok"],
            Some("354 go"),
            Some("552 5.3.4 too big"),
            Ok(vec!["552 5.3.4 too big"]),
        ),
        // Without PIPELINING, no DATA after every RCPT failed.
        (
            "250 ok",
            &["550 no", "451 later"],
            None,
            None,
            Ok(vec!["550 no", "451 later"]),
        ),
        // A 354 though nobody was accepted: the empty content's end decides nothing.
        (
            "250 ok",
            &["550 no"],
            Some("354 go"),
            Some("250 empty"),
            Ok(vec!["550 no"]),
        ),
        // The bugs: a 2xx to DATA, a 3xx to RCPT or to the end of data.
        (
            "250 ok",
            &["250 ok"],
            Some("250 ok"),
            None,
            Err("protocol error: 250 in reply to DATA"),
        ),
        (
            "250 ok",
            &["350 go on"],
            Some("354 go"),
            Some("250 queued"),
            Err("protocol error: 350 in reply to RCPT TO"),
        ),
        (
            "250 ok",
            &["250 ok"],
            Some("354 go"),
            Some("354 again"),
            Err("protocol error: 354 in reply to the end of data"),
        ),
        (
            "354 go",
            &["250 ok"],
            Some("354 go"),
            Some("250 queued"),
            Err("protocol error: 354 in reply to MAIL FROM"),
        ),
        // A surplus line after MAIL's reply, with PIPELINING: every reply
        // after it is shifted, and the RCPT's 250 is read for DATA.
        (
            "250 ok",
            &["250 surplus"],
            Some("250 rcpt ok"),
            None,
            Err("protocol error: 250 in reply to DATA"),
        ),
        (
            "250 ok",
            &["250 surplus", "250 rcpt 1"],
            Some("250 rcpt 2"),
            None,
            Err("protocol error: 250 in reply to DATA"),
        ),
        // The recipient limit: the rest go again at once.
        (
            "250 ok",
            &[
                "250 ok",
                "250 ok",
                "452 4.5.3 too many recipients",
                "452 4.5.3 too many recipients",
            ],
            Some("354 go"),
            Some("250 queued"),
            Ok(vec!["250 queued", "250 queued", "again", "again"]),
        ),
        // ... also when the accepted ones then fail.
        (
            "250 ok",
            &["250 ok", "452 too many"],
            Some("354 go"),
            Some("451 later"),
            Ok(vec!["451 later", "again"]),
        ),
        // ... but not when nobody was accepted: no progress, they wait.
        (
            "250 ok",
            &[
                "452 4.5.3 too many recipients",
                "452 4.5.3 too many recipients",
            ],
            Some("554 no valid recipients"),
            None,
            Ok(vec![
                "452 4.5.3 too many recipients",
                "452 4.5.3 too many recipients",
            ]),
        ),
        // Another 4xx is an ordinary deferral, not a limit.
        (
            "250 ok",
            &["250 ok", "451 4.3.0 later"],
            Some("354 go"),
            Some("250 queued"),
            Ok(vec!["250 queued", "451 4.3.0 later"]),
        ),
    ];
    for (mail, rcpts, data, end, want) in cases {
        let got = run(mail, rcpts, data, end).map(shown);
        let want = want
            .map(|v| v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .map_err(str::to_string);
        assert_eq!(got, want, "{mail} {rcpts:?} {data:?} {end:?}");
    }
}

#[test]
fn what_follows_the_envelope() {
    let cases: Vec<(&str, &[&str], Option<&str>, Result<Next, &str>)> = vec![
        ("250 ok", &["250 ok"], Some("354 go"), Ok(Next::Content)),
        (
            "250 ok",
            &["550 no"],
            Some("354 go"),
            Ok(Next::EmptyContent),
        ),
        ("250 ok", &["550 no"], Some("554 no"), Ok(Next::Stop)),
        (
            "550 no",
            &["503 no"],
            Some("354 go"),
            Ok(Next::EmptyContent),
        ),
        ("250 ok", &["250 ok"], None, Ok(Next::Stop)),
        (
            "250 ok",
            &["250 ok"],
            Some("250 ok"),
            Err("protocol error: 250 in reply to DATA"),
        ),
    ];
    for (mail, rcpts, data, want) in cases {
        let rs: Vec<Reply> = rcpts.iter().map(|l| reply(l)).collect();
        let got =
            after_data(&reply(mail), &rs, data.map(reply).as_ref()).map_err(|e| e.to_string());
        assert_eq!(
            got,
            want.map_err(str::to_string),
            "{mail} {rcpts:?} {data:?}"
        );
    }
    let rs = [reply("550 no"), reply("250 ok")];
    assert_eq!(wants_data(&reply("250 ok"), &rs), Ok(true));
    assert_eq!(wants_data(&reply("250 ok"), &rs[..1]), Ok(false));
    assert_eq!(wants_data(&reply("451 no"), &rs), Ok(false));
}
