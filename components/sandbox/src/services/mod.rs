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
pub use stepwise_engine::saga::Service;

/// A service's operations, as fault scripts and call records name them.
pub fn operations(service: Service) -> &'static [&'static str] {
    match service {
        Service::Users => &["authorize"],
        Service::Products => &["reserve", "release", "commit", "settle"],
        Service::Payment => &["create"],
        Service::PaymentApi => &["status", "cancel", "expire"],
        Service::Wallet => &["credit", "debit"],
        Service::Risk => &["odds", "liability", "restore"],
        Service::Betting => &["validate", "quote", "complete", "restore"],
    }
}

/// Every service table's `CREATE` statements (idempotent).
pub const SCHEMA: &[&[&str]] = &[
    call::SCHEMA,
    faults::SCHEMA,
    users::SCHEMA,
    products::SCHEMA,
    payment::SCHEMA,
    wallet::SCHEMA,
    risk::SCHEMA,
    betting::SCHEMA,
];

/// Every service table `DELETE /sandbox` empties.
pub const TABLES: &[&[&str]] = &[
    call::TABLES,
    faults::TABLES,
    users::TABLES,
    products::TABLES,
    payment::TABLES,
    wallet::TABLES,
    risk::TABLES,
    betting::TABLES,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_has_operations() {
        for s in Service::ALL {
            assert!(!operations(s).is_empty(), "{s}");
        }
    }
}
