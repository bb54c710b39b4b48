//! A relay's limits in a pass (the smarthost's, or a `sender_relay_map`
//! line's): `max_messages_per_minute`, kept by handing its messages out
//! at least a minute divided by the limit apart (Postfix's
//! `destination_rate_delay`: spread out, never refused), and the rests
//! after throttling replies (421, 4.7.x), which double with each repeat.

use crate::limits::{RATE_WINDOW, THROTTLE_BACKOFF_MAX, THROTTLE_RESTS_PER_PASS};
use crate::model::{Destination, Outcome};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What a pass knows of one relay's pace.
#[derive(Debug, Default, Clone)]
struct Pace {
    /// The earliest its next message may start.
    next_start: Option<Instant>,
    /// Until when it rests after a throttling reply.
    resting_until: Option<Instant>,
    /// The rests it has had in this pass.
    rests: u32,
}

/// The paces of a pass's relays (destinations without limits or
/// throttling replies have none).
#[derive(Debug, Default)]
pub(super) struct Paces(BTreeMap<Destination, Pace>);

impl Paces {
    /// Whether a message to `destination` may start at `now`: it is not
    /// resting, and its last one started long enough ago.
    pub(super) fn may_start(&self, destination: &Destination, now: Instant) -> bool {
        self.0.get(destination).is_none_or(|p| {
            p.resting_until.is_none_or(|t| t <= now) && p.next_start.is_none_or(|t| t <= now)
        })
    }

    /// Whether `destination` rests at `now` (its children are told to quit).
    pub(super) fn resting(&self, destination: &Destination, now: Instant) -> bool {
        (self.0.get(destination)).is_some_and(|p| p.resting_until.is_some_and(|t| t > now))
    }

    /// A message to `destination` handed out at `now`, under its
    /// `max_messages_per_minute` (None: no limit).
    pub(super) fn started(
        &mut self,
        destination: &Destination,
        per_minute: Option<u32>,
        now: Instant,
    ) {
        if let Some(n) = per_minute {
            self.0.entry(destination.clone()).or_default().next_start = Some(now + spacing(n));
        }
    }

    /// A throttling reply from `destination` (`reason`: what it said) at
    /// `now`: Ok with how long it rests (`base` the first time); Err with
    /// the outcome for the rest of its queue, which waits for the next
    /// queue run, when its rests in this pass are used up.
    pub(super) fn throttled(
        &mut self,
        destination: &Destination,
        base: Duration,
        reason: &str,
        now: Instant,
    ) -> Result<Duration, Outcome> {
        let pace = self.0.entry(destination.clone()).or_default();
        match rest_for(pace.rests, base) {
            Some(rest) => {
                pace.rests += 1;
                pace.resting_until = Some(now + rest);
                Ok(rest)
            }
            None => Err(Outcome::deferred(format!(
                "{reason} (the relay throttled {} times in this queue run: the rest waits for the next run)",
                pace.rests + 1
            ))),
        }
    }
}

/// How far apart messages start under `max_messages_per_minute = n`: at
/// most n start in any window of [`RATE_WINDOW`].
fn spacing(n: u32) -> Duration {
    RATE_WINDOW / n.max(1)
}

/// The rest after a throttling reply, for a relay that has had `rests`
/// rests in this pass: `base`, doubled for each, at most
/// [`THROTTLE_BACKOFF_MAX`]; None once it has had
/// [`THROTTLE_RESTS_PER_PASS`].
fn rest_for(rests: u32, base: Duration) -> Option<Duration> {
    if rests >= THROTTLE_RESTS_PER_PASS {
        return None;
    }
    Some(
        base.saturating_mul(1u32 << rests.min(16))
            .min(THROTTLE_BACKOFF_MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SenderPattern;

    #[test]
    fn messages_are_spread_over_the_minute() {
        assert_eq!(spacing(1), Duration::from_secs(60));
        assert_eq!(spacing(30), Duration::from_secs(2));
        assert_eq!(spacing(120), Duration::from_millis(500));
        let relay = Destination::Relay(SenderPattern::Any);
        let other = Destination::Smarthost;
        let t0 = Instant::now();
        let mut paces = Paces::default();
        assert!(paces.may_start(&relay, t0));
        paces.started(&relay, Some(30), t0);
        paces.started(&other, None, t0);
        for (destination, after, may) in [
            (&relay, 0, false),
            (&relay, 1999, false),
            (&relay, 2000, true),
            (&other, 0, true),
        ] {
            let now = t0 + Duration::from_millis(after);
            assert_eq!(
                paces.may_start(destination, now),
                may,
                "{destination} {after}"
            );
        }
    }

    #[test]
    fn rests_double_up_to_a_limit_and_end() {
        let s = Duration::from_secs;
        for (rests, base, rest) in [
            (0, s(60), Some(s(60))),
            (1, s(60), Some(s(120))),
            (2, s(60), Some(s(240))),
            (3, s(60), Some(s(480))),
            (4, s(60), None),
            (3, s(100), Some(THROTTLE_BACKOFF_MAX)),
            (0, s(3600), Some(THROTTLE_BACKOFF_MAX)),
            (1, s(2), Some(s(4))),
        ] {
            assert_eq!(rest_for(rests, base), rest, "{rests} {base:?}");
        }
    }

    #[test]
    fn a_throttled_relay_rests_then_gives_up_for_the_pass() {
        let relay = Destination::Relay(SenderPattern::Any);
        let t0 = Instant::now();
        let mut paces = Paces::default();
        let base = Duration::from_secs(2);
        assert_eq!(paces.throttled(&relay, base, "421", t0), Ok(base));
        assert!(paces.resting(&relay, t0 + Duration::from_millis(1999)));
        assert!(!paces.may_start(&relay, t0 + Duration::from_millis(1999)));
        assert!(!paces.resting(&relay, t0 + base));
        assert!(paces.may_start(&relay, t0 + base));
        for _ in 1..THROTTLE_RESTS_PER_PASS {
            assert!(paces.throttled(&relay, base, "421", t0).is_ok());
        }
        let gave_up = paces.throttled(&relay, base, "421 4.7.0 slow down", t0);
        let text = gave_up.expect_err("rests used up").to_string();
        assert!(
            text.starts_with("421 4.7.0 slow down (the relay throttled 5 times"),
            "{text}"
        );
        assert!(!paces.resting(&Destination::Smarthost, t0));
    }
}
