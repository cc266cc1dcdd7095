//! Host bindings for the Spin interfaces the runner implements and for the
//! spin-trigger-cron world, generated from the WIT in `crates/host/wit` and `wit/`.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    world: "spin-host",
    path: "wit",
    imports: { default: async },
    with: {
        "fermyon:spin/key-value.store": crate::key_value::KvStore,
        "spin:sqlite/sqlite.connection": crate::sqlite::SqliteConnection,
        "fermyon:spin/sqlite.connection": crate::sqlite::SqliteConnection,
        "spin:postgres/postgres.connection": crate::postgres::PgConnection,
        "fermyon:spin/redis.connection": crate::outbound_redis::RedisConnection,
    },
});

/// The spin-trigger-cron plugin's world (`fermyon:spin-cron@2.0.0`).
pub mod cron {
    wasmtime::component::bindgen!({
        world: "spin-cron",
        path: "../../wit",
        exports: { default: async },
    });
}
