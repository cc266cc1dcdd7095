//! Binding workers in the `machines` table (kind `worker`, id = binding id).

use stepwise_engine::machine::Kind;
use stepwise_engine::time::Millis;
use stepwise_engine::worker::{Effect, State, Worker};

use crate::db::{Db, StoreError};
use crate::lease::Lease;
use crate::machines;

/// A worker as stored, with its lease.
pub type Stored = machines::Stored<Worker>;

/// Loads one worker.
pub fn load(db: &Db, binding_id: &str) -> Result<Option<Stored>, StoreError> {
    machines::load(db, binding_id)
}

/// Whether a worker exists for the binding.
pub fn exists(db: &Db, binding_id: &str) -> Result<bool, StoreError> {
    machines::exists(db, Kind::Worker, binding_id)
}

/// Inserts or updates a worker, setting (or clearing) its lease.
pub fn save(db: &Db, w: &Worker, lease: Option<&Lease>, now: Millis) -> Result<(), StoreError> {
    machines::save(db, w, lease, now)
}

/// A page of workers by binding id, optionally of one state.
pub fn list(
    db: &Db,
    state: Option<State>,
    limit: u32,
    after: Option<&str>,
) -> Result<(Vec<Worker>, Option<String>), StoreError> {
    machines::list(db, state.map(State::as_str), limit, after)
}

/// Workers per state.
pub fn count_by_state(db: &Db) -> Result<Vec<(String, i64)>, StoreError> {
    machines::count_by_state(db, Kind::Worker)
}

impl machines::Effects for Worker {
    fn apply(&mut self, db: &Db, effects: Vec<Effect>) -> Result<(), StoreError> {
        crate::effects::apply(db, self, effects)
    }
}
