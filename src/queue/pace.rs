//! A relay's limits in a pass (the smarthost's, or a `sender_relay_map`
//! line's): `max_messages_per_minute`, kept by handing its messages out
//! at least a minute divided by the limit apart (Postfix's
//! `destination_rate_delay`: spread out, never refused), and the rests
//! after throttling replies (421, 4.7.x before RCPT), one per burst of
//! them, which double with each repeat.
//! Both are kept across the passes of the spool too, in the relay's pace
//! file (`slots/pace.HASH`, see [`Slots::take_turn`]); a pass that cannot
//! use it keeps its own pace only.

use crate::limits::{RATE_WINDOW, THROTTLE_BACKOFF_MAX, THROTTLE_RESTS_PER_PASS};
use crate::model::Destination;
use crate::slots::Slots;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// What a pass knows of one relay's pace.
#[derive(Debug, Default, Clone)]
struct Pace {
    /// The earliest its next message may start.
    next_start: Option<Instant>,
    /// Until when it rests after a throttling reply.
    resting_until: Option<Instant>,
    /// When its last rest began.
    rest_began: Option<Instant>,
    /// The rests it has had in this pass.
    rests: u32,
}

/// What a throttling reply does to its relay (see [`Paces::throttled`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rest {
    /// A rest of this long begins.
    Begins(Duration),
    /// None: the reply came to a message handed out before the relay's
    /// last rest began, which that rest already answers (a burst of
    /// connections refused at once is one signal, not one each).
    Taken,
    /// Its rests in this pass are used up, after this many throttling
    /// replies: the rest of its queue waits for the next queue run.
    UsedUp(u32),
}

/// The paces of a pass's relays (destinations without limits or
/// throttling replies have none), and the spool's pace files.
#[derive(Debug, Default)]
pub(super) struct Paces {
    paces: BTreeMap<Destination, Pace>,
    shared: Option<Slots>,
    /// The relays whose pace file failed this pass (its lock held too
    /// long: a holder its caller stopped): they keep the pass's own pace
    /// for the rest of it, so that the pass waits for the lock once, not
    /// once a message.
    unshared: BTreeSet<Destination>,
    /// What the pass log should say (see [`Paces::take_notes`]).
    notes: Vec<String>,
}

impl Paces {
    /// Paces kept across passes in `shared`'s pace files too, when given.
    pub(super) fn new(shared: Option<Slots>) -> Paces {
        Paces {
            shared,
            ..Paces::default()
        }
    }

    /// What happened to the pace files since the last call, for the log.
    pub(super) fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// Whether a message to `destination` may start at `now`: it is not
    /// resting, and its last one started long enough ago.
    pub(super) fn may_start(&self, destination: &Destination, now: Instant) -> bool {
        self.paces.get(destination).is_none_or(|p| {
            p.resting_until.is_none_or(|t| t <= now) && p.next_start.is_none_or(|t| t <= now)
        })
    }

    /// How long until a message to `destination` may start, after `now`
    /// (its rest, or its next turn); None when one may start now.
    pub(super) fn wait(&self, destination: &Destination, now: Instant) -> Option<Duration> {
        let pace = self.paces.get(destination)?;
        let until = pace.resting_until.max(pace.next_start)?;
        (until > now).then(|| until - now)
    }

    /// Takes the turn of a message to `destination` at `now`, which
    /// [`Paces::may_start`] allows, under its `max_messages_per_minute`
    /// (None: no limit): false when another pass of the spool has taken
    /// it, or rests the relay (this pass then waits as long).
    pub(super) fn take_turn(
        &mut self,
        destination: &Destination,
        per_minute: Option<u32>,
        now: Instant,
    ) -> bool {
        // Without a limit, only a rest (another pass's) can hold it up,
        // read without the lock; with one, the turn is taken under it.
        let shared = match (self.shared(destination), per_minute) {
            (None, _) => Ok(None),
            (Some(slots), None) => slots.pace_wait(destination),
            (Some(slots), Some(n)) => slots.take_turn(destination, spacing(n)),
        };
        match shared {
            Ok(Some(wait)) => {
                self.pace(destination).next_start = Some(now + wait);
                return false;
            }
            Ok(None) => {}
            Err(e) => self.unshare(destination, &e),
        }
        if let Some(n) = per_minute {
            self.pace(destination).next_start = Some(now + spacing(n));
        }
        true
    }

    /// A pace file that cannot be used (`e`) leaves `destination` this
    /// pass's own pace, for the rest of the pass.
    fn unshare(&mut self, destination: &Destination, e: &std::io::Error) {
        if self.unshared.insert(destination.clone()) {
            self.notes.push(format!(
                "{destination}: cannot use its pace file in slots/: {e}; this pass keeps its own pace for it"
            ));
        }
    }

    /// A throttling reply from `destination` at `now`, to a message
    /// handed out at `handed`: what it does (the first rest lasts `base`).
    /// A rest holds in this pass and (through its pace file) in every other.
    pub(super) fn throttled(
        &mut self,
        destination: &Destination,
        base: Duration,
        handed: Instant,
        now: Instant,
    ) -> Rest {
        let pace = self.pace(destination);
        if pace.rest_began.is_some_and(|began| handed < began) {
            return Rest::Taken;
        }
        let Some(rest) = rest_for(pace.rests, base) else {
            return Rest::UsedUp(pace.rests + 1);
        };
        pace.rests += 1;
        pace.rest_began = Some(now);
        pace.resting_until = Some(now + rest);
        // Best effort, as take_turn: this pass rests the relay anyway.
        if let Some(Err(e)) = self.shared(destination).map(|s| s.rest(destination, rest)) {
            self.unshare(destination, &e);
        }
        Rest::Begins(rest)
    }

    /// Whether `destination` has rested in this pass: it then keeps the
    /// connections it has, and gets a new one only when it has none.
    pub(super) fn has_rested(&self, destination: &Destination) -> bool {
        self.paces.get(destination).is_some_and(|p| p.rests > 0)
    }

    fn pace(&mut self, destination: &Destination) -> &mut Pace {
        self.paces.entry(destination.clone()).or_default()
    }

    /// The spool's pace files, for a relay (MX hosts have none) whose
    /// file has not failed in this pass.
    fn shared(&self, destination: &Destination) -> Option<&Slots> {
        let relay = matches!(destination, Destination::Smarthost | Destination::Relay(_));
        let usable = relay && !self.unshared.contains(destination);
        self.shared.as_ref().filter(|_| usable)
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
        assert!(paces.take_turn(&relay, Some(30), t0));
        assert!(paces.take_turn(&other, None, t0));
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
        assert!(!paces.has_rested(&relay));
        assert_eq!(paces.throttled(&relay, base, t0, t0), Rest::Begins(base));
        assert!(paces.has_rested(&relay));
        let ms = Duration::from_millis;
        assert_eq!(paces.wait(&relay, t0 + ms(1999)), Some(ms(1)));
        assert!(!paces.may_start(&relay, t0 + ms(1999)));
        assert_eq!(paces.wait(&relay, t0 + base), None);
        assert!(paces.may_start(&relay, t0 + base));
        let mut t = t0;
        for _ in 1..THROTTLE_RESTS_PER_PASS {
            t += ms(1);
            assert!(matches!(
                paces.throttled(&relay, base, t, t),
                Rest::Begins(_)
            ));
        }
        t += ms(1);
        assert_eq!(paces.throttled(&relay, base, t, t), Rest::UsedUp(5));
        assert_eq!(paces.wait(&Destination::Smarthost, t0), None);
    }

    #[test]
    fn a_burst_of_throttling_replies_is_one_rest() {
        let relay = Destination::Smarthost;
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut paces = Paces::default();
        // Ten messages handed out at t0; eight connections refused.
        assert_eq!(
            paces.throttled(&relay, s(1), t0, t0 + Duration::from_millis(1)),
            Rest::Begins(s(1))
        );
        for late in 2..9 {
            let now = t0 + Duration::from_millis(late);
            assert_eq!(paces.throttled(&relay, s(1), t0, now), Rest::Taken);
        }
        // One handed out after the rest: a new signal, a longer rest.
        let after = t0 + s(1);
        assert_eq!(
            paces.throttled(&relay, s(1), after, after),
            Rest::Begins(s(2))
        );
        assert_eq!(paces.throttled(&relay, s(1), t0, after + s(1)), Rest::Taken);
        assert_eq!(paces.wait(&relay, after), Some(s(2)));
    }
}
