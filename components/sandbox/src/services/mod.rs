//! The simulated saga services (CONTRACT section 5, "The built-in
//! definitions and the services they call"), one module each, served at
//! each service's own paths so that every `<name>_url` can default to this
//! app. They share [`call`]: the `Idempotency-Key` deduplication, the
//! fault and latency injection of [`faults`] and the call records that
//! [`records`] reads back (effects counted by key).

pub mod betting;
pub mod call;
pub mod faults;
pub mod notification;
pub mod payment;
pub mod products;
pub mod records;
pub mod risk;
pub mod users;
pub mod wallet;

/// A simulated service, named as in the definitions (`<name>_url`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Service {
    /// `POST /v1/users/authorize`.
    Users,
    /// `/v1/reservations/...`.
    Products,
    /// Midtrans Snap: `POST /snap/v1/transactions`.
    Payment,
    /// Midtrans Core API: `/v2/{order_id}/status|cancel|expire`.
    PaymentApi,
    /// `/v1/wallets/{user_id}/credit|debit`.
    Wallet,
    /// `/v1/odds/live`, `/v1/liabilities/{bet_slip_id}[/restore]`.
    Risk,
    /// `/v1/bet-slips/{id}/cashout/...`.
    Betting,
}

impl Service {
    /// Every service.
    pub const ALL: [Service; 7] =
        [Service::Users, Service::Products, Service::Payment, Service::PaymentApi, Service::Wallet, Service::Risk, Service::Betting];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Users => "users",
            Service::Products => "products",
            Service::Payment => "payment",
            Service::PaymentApi => "payment_api",
            Service::Wallet => "wallet",
            Service::Risk => "risk",
            Service::Betting => "betting",
        }
    }

    /// The service with that name.
    pub fn from_name(s: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Its operations, as fault scripts and call records name them.
    pub fn operations(self) -> &'static [&'static str] {
        match self {
            Service::Users => &["authorize"],
            Service::Products => &["reserve", "release", "commit", "settle"],
            Service::Payment => &["create"],
            Service::PaymentApi => &["status", "cancel", "expire"],
            Service::Wallet => &["credit", "debit"],
            Service::Risk => &["odds", "liability", "restore"],
            Service::Betting => &["validate", "quote", "complete", "restore"],
        }
    }
}

/// Every service table's `CREATE` statements (idempotent).
pub const SCHEMA: &[&[&str]] =
    &[call::SCHEMA, faults::SCHEMA, users::SCHEMA, products::SCHEMA, payment::SCHEMA, wallet::SCHEMA, risk::SCHEMA, betting::SCHEMA];

/// Every service table `DELETE /sandbox` empties.
pub const TABLES: &[&[&str]] =
    &[call::TABLES, faults::TABLES, users::TABLES, products::TABLES, payment::TABLES, wallet::TABLES, risk::TABLES, betting::TABLES];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Service::ALL {
            assert_eq!(Service::from_name(s.as_str()), Some(s));
            assert!(!s.operations().is_empty());
        }
        assert_eq!(Service::from_name("wallets"), None);
    }
}
