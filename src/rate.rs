//! Transfer speed over a sliding window, shared by the engine's progress events and the
//! window's server-side table.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Bytes per second over roughly the last second, fed with running totals.
#[derive(Debug, Default)]
pub struct RateMeter {
    window: VecDeque<(Instant, u64)>,
}

impl RateMeter {
    pub fn update(&mut self, now: Instant, done: u64) -> f64 {
        self.window.push_back((now, done));
        while self.window.len() > 2 && now.duration_since(self.window[1].0) > Duration::from_secs(1) {
            self.window.pop_front();
        }
        let (t0, d0) = self.window[0];
        let dt = now.duration_since(t0).as_secs_f64();
        if dt <= 0.0 { 0.0 } else { done.saturating_sub(d0) as f64 / dt }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_bytes_over_the_window() {
        let mut r = RateMeter::default();
        let t = Instant::now();
        assert_eq!(r.update(t, 0), 0.0);
        let v = r.update(t + Duration::from_millis(500), 1000);
        assert!((v - 2000.0).abs() < 1.0, "{v}");
    }

    #[test]
    fn old_samples_leave_the_window() {
        let mut r = RateMeter::default();
        let t = Instant::now();
        r.update(t, 0);
        r.update(t + Duration::from_secs(5), 1_000_000);
        r.update(t + Duration::from_secs(10), 1_000_000);
        // The burst five seconds ago no longer counts: nothing arrived in the last second.
        let v = r.update(t + Duration::from_millis(10_500), 1_000_000);
        assert_eq!(v, 0.0);
    }
}
