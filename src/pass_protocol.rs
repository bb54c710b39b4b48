//! The line protocol between a queue pass's parent and its delivery
//! children, one message per line over a socketpair. Both sides encode and
//! decode here, so the two cannot drift apart.
//!
//! The child speaks first and after every job: any `failed` lines for
//! recipients that failed for good (so that `-odi -oep` can report them),
//! then `next`, or `dead REASON` when its destination cannot be reached at
//! all (`misconfigured REASON` when that is a local configuration problem),
//! or `throttled REASON` when its relay answered 421 or 4.7.x (the child
//! has closed the connection; the parent rests the relay).
//! The parent answers `job QID I,J,... PASS` (the message, the indices of
//! the recipients to try, and the pass's id, which the child records with
//! the attempt) or `quit`.

use crate::mime::one_line;
use crate::model::{PassId, QueueId};

/// One line of the conversation, either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Parent to child: deliver these recipients of this message, for
    /// this pass (which counts one attempt per message however many jobs
    /// it has for it).
    Job {
        id: QueueId,
        rcpts: Vec<usize>,
        pass: PassId,
    },
    /// Parent to child: nothing more for you; finish and exit.
    Quit,
    /// Child to parent: the last job is recorded; give me another.
    Next,
    /// Child to parent: the last job is recorded, and no host of the
    /// destination could be reached; defer the rest of its queue.
    Dead { reason: String },
    /// Child to parent: as `Dead`, because of a local configuration
    /// problem (refused credentials, a missing password file): the rest of
    /// its queue waits for the admin, and is never failed before
    /// `max_queue_lifetime`.
    Misconfigured { reason: String },
    /// Child to parent: the last job is recorded, and the relay answered
    /// with a throttling reply (421, 4.7.x: what it said); the connection
    /// is closed. The parent rests the relay, then starts a new child.
    Throttled { reason: String },
    /// Child to parent: this recipient failed for good in the last job.
    Failed {
        id: QueueId,
        index: usize,
        reason: String,
    },
}

impl Message {
    /// The line for the socket, `\n` included. Reasons lose their control
    /// characters (a line ending inside one would end the message); a
    /// queue id is hexadecimal digits.
    pub fn encode(&self) -> String {
        match self {
            Message::Job { id, rcpts, pass } => {
                let list: Vec<String> = rcpts.iter().map(usize::to_string).collect();
                format!("job {id} {} {pass}\n", list.join(","))
            }
            Message::Quit => "quit\n".to_string(),
            Message::Next => "next\n".to_string(),
            Message::Dead { reason } => format!("dead {}\n", one_line(reason)),
            Message::Misconfigured { reason } => {
                format!("misconfigured {}\n", one_line(reason))
            }
            Message::Throttled { reason } => format!("throttled {}\n", one_line(reason)),
            Message::Failed { id, index, reason } => {
                format!("failed {id} {index} {}\n", one_line(reason))
            }
        }
    }

    /// One line as read, with or without its `\n`; None for anything that
    /// is not a well-formed message.
    pub fn decode(line: &str) -> Option<Message> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "quit" if rest.is_empty() => Some(Message::Quit),
            "next" if rest.is_empty() => Some(Message::Next),
            "dead" => Some(Message::Dead {
                reason: rest.to_string(),
            }),
            "misconfigured" => Some(Message::Misconfigured {
                reason: rest.to_string(),
            }),
            "throttled" => Some(Message::Throttled {
                reason: rest.to_string(),
            }),
            "job" => {
                let mut parts = rest.splitn(3, ' ');
                let (id, list, pass) = (parts.next()?, parts.next()?, parts.next()?);
                let rcpts = list
                    .split(',')
                    .filter(|i| !i.is_empty())
                    .map(|i| i.parse().ok())
                    .collect::<Option<Vec<usize>>>()?;
                Some(Message::Job {
                    id: QueueId::parse(id)?,
                    rcpts,
                    pass: PassId::parse(pass)?,
                })
            }
            "failed" => {
                let mut parts = rest.splitn(3, ' ');
                let id = QueueId::parse(parts.next()?)?;
                let index = parts.next()?.parse().ok()?;
                let reason = parts.next()?.to_string();
                Some(Message::Failed { id, index, reason })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QID: &str = "6B0D5DC9B1892870";

    fn qid() -> QueueId {
        QueueId::parse(QID).unwrap()
    }

    fn job(rcpts: &[usize]) -> Message {
        Message::Job {
            id: qid(),
            rcpts: rcpts.to_vec(),
            pass: PassId::new(4242, 0xabc),
        }
    }

    #[test]
    fn every_message_round_trips() {
        let cases = [
            (
                job(&[0, 3, 12]),
                "job 6B0D5DC9B1892870 0,3,12 4242-0000000000000abc\n",
            ),
            (job(&[7]), "job 6B0D5DC9B1892870 7 4242-0000000000000abc\n"),
            (job(&[]), "job 6B0D5DC9B1892870  4242-0000000000000abc\n"),
            (Message::Quit, "quit\n"),
            (Message::Next, "next\n"),
            (
                Message::Dead {
                    reason: "connect to mx.example.org[192.0.2.1]:25: refused".into(),
                },
                "dead connect to mx.example.org[192.0.2.1]:25: refused\n",
            ),
            (Message::Dead { reason: "".into() }, "dead \n"),
            (
                Message::Misconfigured {
                    reason: "cannot read auth_password_file /etc/pw".into(),
                },
                "misconfigured cannot read auth_password_file /etc/pw\n",
            ),
            (
                Message::Throttled {
                    reason: "host relay.example[192.0.2.7]:587 said 421 4.7.0 slow down".into(),
                },
                "throttled host relay.example[192.0.2.7]:587 said 421 4.7.0 slow down\n",
            ),
            (
                Message::Failed {
                    id: qid(),
                    index: 4,
                    reason: "550 5.1.1 <b@example.org>: no such user".into(),
                },
                "failed 6B0D5DC9B1892870 4 550 5.1.1 <b@example.org>: no such user\n",
            ),
        ];
        for (message, line) in cases {
            assert_eq!(message.encode(), line, "{message:?}");
            assert_eq!(Message::decode(line), Some(message.clone()), "{line:?}");
            // A line read without its terminator means the same.
            assert_eq!(Message::decode(line.trim_end_matches('\n')), Some(message));
        }
    }

    #[test]
    fn reasons_stay_on_one_line() {
        let m = Message::Failed {
            id: qid(),
            index: 0,
            reason: "550-first\r\n550 second\tline".into(),
        };
        let line = m.encode();
        assert_eq!(line, format!("failed {QID} 0 550-first  550 second line\n"));
        assert_eq!(line.matches('\n').count(), 1);
        let m = Message::Dead {
            reason: "resolver:\nno answer".into(),
        };
        assert_eq!(m.encode(), "dead resolver: no answer\n");
        let t = Message::Throttled {
            reason: "421 4.7.0 slow\r\ndown".into(),
        };
        assert_eq!(t.encode(), "throttled 421 4.7.0 slow  down\n");
        assert_eq!(
            Message::decode(&m.encode()),
            Some(Message::Dead {
                reason: "resolver: no answer".into()
            })
        );
    }

    #[test]
    fn malformed_lines_are_refused() {
        for line in [
            "",
            "\n",
            "nxt\n",
            "next please\n",
            "quit now\n",
            "job\n",
            "job Q1\n",
            "job  1,2\n",
            "job Q1 1,x\n",
            // Without the pass, or with one that is not a pass id.
            "job 6B0D5DC9B1892870 1\n",
            "job 6B0D5DC9B1892870 1 \n",
            "job 6B0D5DC9B1892870 1 42 43\n",
            "job 6B0D5DC9B1892870 1 PASS\n",
            "job Q1 -1\n",
            "failed Q1 4\n",
            "failed Q1 four reason\n",
            "failed  4 reason\n",
            "JOB Q1 1\n",
            "Throttled 421\n",
            // Not queue ids.
            "job Q1 1\n",
            "job 6b0d5dc9b1892870 1\n",
            "job ../6B0D5DC9B189287 1\n",
            "failed 6B0D5DC9B18928701 0 reason\n",
        ] {
            assert_eq!(Message::decode(line), None, "{line:?}");
        }
    }
}
