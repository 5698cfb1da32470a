//! Open-loop scheduling: when each connection is meant to send each request, so that together
//! the connections send at the requested rate whatever the server does. Latency is measured
//! from these intended times, so a server that stalls is charged for every request it delayed
//! (no coordinated omission).

use std::time::Duration;

/// A send whose connection was still busy this long after its intended time is counted as late.
pub const LATE_AFTER: Duration = Duration::from_millis(1);

/// The sending plan of one connection among `connections` sharing `rate` requests per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Offset of this connection's first request from the start.
    first: Duration,
    /// Time between this connection's requests.
    interval: Duration,
}

impl Plan {
    /// Connection `index` of `connections`: each sends every `connections / rate` seconds, and
    /// their first sends are spread evenly over one interval, so the aggregate is smooth.
    ///
    /// # Panics
    /// If `rate` is not above zero or `connections` is zero.
    pub fn new(index: usize, connections: usize, rate: f64) -> Plan {
        assert!(
            rate > 0.0 && connections > 0,
            "rate and connections must be positive"
        );
        let interval = Duration::from_secs_f64(connections as f64 / rate);
        let first = Duration::from_secs_f64(index as f64 / rate);
        Plan { first, interval }
    }

    /// When request `k` (from 0) is meant to be sent, as an offset from the start.
    pub fn intended(&self, k: u64) -> Duration {
        self.first + self.interval.mul_f64(k as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_together_send_at_the_rate() {
        let (connections, rate) = (1000, 3000.0);
        let window = Duration::from_secs(2);
        let mut sends = 0;
        let mut all = Vec::new();
        for index in 0..connections {
            let plan = Plan::new(index, connections, rate);
            let mut k = 0;
            while plan.intended(k) < window {
                all.push(plan.intended(k));
                sends += 1;
                k += 1;
            }
        }
        // 2 s at 3,000/s, give or take the rounding of a 1/3 s interval at the window edge.
        assert!((5999..=6001).contains(&sends), "{sends}");
        // Evenly spread: every 10 ms slice holds 30 sends.
        all.sort();
        for slice in 0..200 {
            let from = Duration::from_millis(slice * 10);
            let to = from + Duration::from_millis(10);
            let count = all.iter().filter(|t| **t >= from && **t < to).count();
            assert!((29..=31).contains(&count), "slice {slice}: {count}");
        }
    }

    #[test]
    fn a_connection_sends_every_connections_over_rate_seconds() {
        let plan = Plan::new(3, 10, 100.0);
        assert_eq!(plan.intended(0), Duration::from_millis(30));
        assert_eq!(plan.intended(1), Duration::from_millis(130));
        assert_eq!(plan.intended(10), Duration::from_millis(1030));
    }
}
