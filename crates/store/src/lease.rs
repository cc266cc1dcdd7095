//! Leases: which stepper holds a machine's claim, and until when. A claim
//! takes the lease in the same `BEGIN IMMEDIATE` transaction that decides
//! the step; the record checks that it still holds it. Another stepper may
//! take a machine over only once the lease has run out.

use stepwise_engine::time::Millis;

/// A claim on a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The stepper that holds it (random per tick invocation).
    pub owner: String,
    /// When it runs out: from then on another stepper may take the machine over.
    pub until: Millis,
}

impl Lease {
    /// Whether it still keeps other steppers out at `now`.
    pub fn is_held_at(&self, now: Millis) -> bool {
        self.until > now
    }

    /// Whether `owner` holds it (expired or not: the record of the stepper
    /// that sent the call is accepted until someone else takes over).
    pub fn is_owned_by(&self, owner: &str) -> bool {
        self.owner == owner
    }
}

/// Whether a machine with `lease` may be claimed at `now`.
pub fn claimable(lease: Option<&Lease>, now: Millis) -> bool {
    lease.is_none_or(|l| !l.is_held_at(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_keeps_others_out_until_it_runs_out() {
        let l = Lease { owner: "a".into(), until: 100 };
        assert!(!claimable(Some(&l), 99));
        assert!(claimable(Some(&l), 100));
        assert!(claimable(None, 0));
        assert!(l.is_owned_by("a") && !l.is_owned_by("b"));
    }
}
