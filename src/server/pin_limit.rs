//! How many PIN guesses the host allows: a few per address, and a few per second in all.
//!
//! Every PIN check goes through [`PinLimits::check`], under one lock, so parallel connections
//! cannot multiply the rate:
//! - **per address**: after [`FREE_TRIES`] wrong PINs from one address, it must wait before its
//!   next PIN is even looked at (1 s, doubling, up to [`MAX_ADDRESS_WAIT`]); the addresses are
//!   remembered in a bounded least-recently-used table, so a flood of new addresses pushes out
//!   the oldest instead of clearing everyone's record;
//! - **host-wide**: a token bucket ([`BUDGET`] guesses at once, one more every
//!   [`REFILL_EVERY`]); a wrong PIN spends a token, and with none left no PIN is looked at.
//!
//! A PIN that is not looked at is answered "too many attempts", whatever it is: waiting out the
//! limit is the only way to learn anything, so guessing 6 digits takes weeks instead of hours.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::protocol::message::Secret;

/// Wrong PINs one address may send before it has to wait.
pub(super) const FREE_TRIES: u32 = 3;
/// The longest one address is made to wait between two guesses.
pub(super) const MAX_ADDRESS_WAIT: Duration = Duration::from_secs(30);
/// Wrong PINs the whole host accepts in a burst.
pub(super) const BUDGET: u32 = 10;
/// One more wrong PIN is allowed this often, host-wide.
pub(super) const REFILL_EVERY: Duration = Duration::from_millis(500);
/// Addresses remembered; past it the least recently seen is forgotten.
const ADDRESSES: usize = 4096;

/// The answer to one PIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PinVerdict {
    Accepted,
    Wrong,
    /// Not looked at: this address, or the host, has had too many wrong PINs just now.
    TooMany {
        retry_in: Duration,
    },
}

struct Record {
    failures: u32,
    blocked_until: Option<Instant>,
    last_seen: u64,
}

struct Inner {
    addresses: HashMap<IpAddr, Record>,
    /// A counter standing in for time in the LRU order (cheaper and strictly increasing).
    tick: u64,
    tokens: u32,
    refilled: Instant,
}

pub(super) struct PinLimits {
    inner: Mutex<Inner>,
}

impl Default for PinLimits {
    fn default() -> Self {
        PinLimits {
            inner: Mutex::new(Inner { addresses: HashMap::new(), tick: 0, tokens: BUDGET, refilled: Instant::now() }),
        }
    }
}

impl PinLimits {
    /// Checks `given` against `expected` if the limits allow a guess from `ip` now.
    pub(super) fn check(&self, ip: IpAddr, expected: &Secret, given: Option<&Secret>, now: Instant) -> PinVerdict {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *inner;
        inner.tick += 1;
        let tick = inner.tick;

        // Host-wide tokens: one per REFILL_EVERY since the last refill, up to BUDGET.
        let periods = (now.saturating_duration_since(inner.refilled).as_millis() / REFILL_EVERY.as_millis()) as u32;
        if periods > 0 {
            inner.tokens = inner.tokens.saturating_add(periods).min(BUDGET);
            inner.refilled += REFILL_EVERY * periods;
            if inner.tokens == BUDGET {
                inner.refilled = now;
            }
        }

        if let Some(record) = inner.addresses.get_mut(&ip) {
            record.last_seen = tick;
            if let Some(until) = record.blocked_until.filter(|&u| u > now) {
                return PinVerdict::TooMany { retry_in: until - now };
            }
        }
        if inner.tokens == 0 {
            let retry_in = (inner.refilled + REFILL_EVERY).saturating_duration_since(now);
            return PinVerdict::TooMany { retry_in };
        }

        if given.is_some_and(|g| g == expected) {
            inner.addresses.remove(&ip);
            return PinVerdict::Accepted;
        }
        inner.tokens -= 1;
        if inner.addresses.len() >= ADDRESSES && !inner.addresses.contains_key(&ip) {
            let oldest = inner.addresses.iter().min_by_key(|(_, r)| r.last_seen).map(|(ip, _)| *ip);
            if let Some(oldest) = oldest {
                inner.addresses.remove(&oldest);
            }
        }
        let record = inner.addresses.entry(ip).or_insert(Record { failures: 0, blocked_until: None, last_seen: tick });
        record.failures += 1;
        if record.failures >= FREE_TRIES {
            let doublings = (record.failures - FREE_TRIES).min(16);
            let wait = (Duration::from_secs(1) * (1u32 << doublings)).min(MAX_ADDRESS_WAIT);
            record.blocked_until = Some(now + wait);
        }
        PinVerdict::Wrong
    }

    /// Undoes a failure [`PinLimits::check`] counted for `ip` when the guess turns out right
    /// later (the PIN as a PAKE: every exchange counts as wrong until the client confirms): the
    /// address's record is forgotten and the host-wide token given back.
    pub(super) fn forgive(&self, ip: IpAddr) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.addresses.remove(&ip);
        inner.tokens = (inner.tokens + 1).min(BUDGET);
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.inner.lock().unwrap().addresses.len()
    }

    #[cfg(test)]
    fn failures(&self, ip: IpAddr) -> u32 {
        self.inner.lock().unwrap().addresses.get(&ip).map_or(0, |r| r.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn one_address_waits_after_three_wrong_pins_even_with_the_right_one() {
        let limits = PinLimits::default();
        let (pin, wrong) = (Secret::from("123456"), Secret::from("000000"));
        let t = Instant::now();
        for _ in 0..FREE_TRIES {
            assert_eq!(limits.check(ip(1), &pin, Some(&wrong), t), PinVerdict::Wrong);
        }
        // Blocked: even the right PIN is not looked at.
        assert!(matches!(limits.check(ip(1), &pin, Some(&pin), t), PinVerdict::TooMany { .. }));
        // Another address is not affected.
        assert_eq!(limits.check(ip(2), &pin, Some(&pin), t), PinVerdict::Accepted);
        // After the wait, the right PIN gets in and the record is cleared.
        assert_eq!(limits.check(ip(1), &pin, Some(&pin), t + Duration::from_secs(1)), PinVerdict::Accepted);
        assert_eq!(limits.remembered(), 0);
    }

    #[test]
    fn a_guess_proven_right_later_is_forgiven() {
        let limits = PinLimits::default();
        let pin = Secret::from("123456");
        let t = Instant::now();
        for _ in 0..FREE_TRIES {
            // An exchange starts: counted as wrong until the client confirms.
            assert_eq!(limits.check(ip(1), &pin, None, t), PinVerdict::Wrong);
            limits.forgive(ip(1));
        }
        assert_eq!(limits.remembered(), 0, "confirmed guesses leave no record");
        for n in 0..BUDGET {
            assert_eq!(limits.check(ip(n), &pin, None, t), PinVerdict::Wrong);
            limits.forgive(ip(n));
        }
        assert_eq!(limits.check(ip(99), &pin, None, t), PinVerdict::Wrong, "the budget was given back");
    }

    #[test]
    fn the_host_budget_runs_out_across_addresses_and_refills() {
        let limits = PinLimits::default();
        let (pin, wrong) = (Secret::from("123456"), Secret::from("000000"));
        let t = Instant::now();
        for n in 0..BUDGET {
            assert_eq!(limits.check(ip(n), &pin, Some(&wrong), t), PinVerdict::Wrong);
        }
        assert!(matches!(limits.check(ip(100), &pin, Some(&wrong), t), PinVerdict::TooMany { .. }));
        assert!(matches!(limits.check(ip(100), &pin, Some(&pin), t), PinVerdict::TooMany { .. }));
        let later = t + REFILL_EVERY;
        assert_eq!(limits.check(ip(100), &pin, Some(&wrong), later), PinVerdict::Wrong);
        assert!(matches!(limits.check(ip(101), &pin, Some(&wrong), later), PinVerdict::TooMany { .. }));
    }

    #[test]
    fn the_address_table_forgets_the_least_recently_seen_not_everyone() {
        let limits = PinLimits::default();
        let (pin, wrong) = (Secret::from("123456"), Secret::from("000000"));
        let mut t = Instant::now();
        for _ in 0..FREE_TRIES {
            assert_eq!(limits.check(ip(0), &pin, Some(&wrong), t), PinVerdict::Wrong);
        }
        for n in 1..(ADDRESSES as u32 + 100) {
            t += REFILL_EVERY; // one token per guess
            if n % 500 == 0 {
                // ip(0) keeps trying: it stays recently seen.
                limits.check(ip(0), &pin, Some(&wrong), t);
            }
            t += REFILL_EVERY;
            assert_eq!(limits.check(ip(n), &pin, Some(&wrong), t), PinVerdict::Wrong);
        }
        assert_eq!(limits.remembered(), ADDRESSES);
        // ip(0)'s record survived the flood of new addresses; the oldest others were forgotten.
        assert!(limits.failures(ip(0)) >= FREE_TRIES);
        assert_eq!(limits.failures(ip(1)), 0);
        assert_eq!(limits.failures(ip(ADDRESSES as u32 + 99)), 1);
    }
}
