//! Native tests of the store and the stepper on both SQL dialects: a
//! [`Place`] is a test's own database, a SQLite file in a temporary
//! directory or a throwaway PostgreSQL server, and [`on_both!`] runs one
//! test body on each.

use stepwise_store::native::{Native, NativePg};
use stepwise_store::Db;

use crate::services::Postgres;

/// Where a test's database lives: a SQLite file, or a throwaway PostgreSQL.
pub enum Place {
    /// A SQLite file (`db`) in a directory removed on drop.
    Sqlite(tempfile::TempDir),
    /// A PostgreSQL server of its own, stopped on drop.
    Postgres(Postgres),
}

impl Place {
    /// A new SQLite file.
    pub fn sqlite() -> Place {
        Place::Sqlite(tempfile::tempdir().expect("a temporary directory"))
    }

    /// A new PostgreSQL server.
    pub fn postgres() -> Place {
        Place::Postgres(Postgres::start())
    }

    /// A new connection to it, the schema migrated.
    pub fn open(&self) -> Db {
        match self {
            Place::Sqlite(dir) => Db::on(Box::new(Native::open(&dir.path().join("db")).expect("SQLite opens")))
                .expect("the schema migrates"),
            Place::Postgres(pg) => Db::on(Box::new(NativePg::connect(&pg.url()).expect("PostgreSQL connects")))
                .expect("the schema migrates"),
        }
    }
}

/// A test body (`|place: &Place| { ... }`) run twice, as the tests
/// `$name::sqlite` and `$name::postgres`.
#[macro_export]
macro_rules! on_both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn sqlite() {
                ($body)(&$crate::dialects::Place::sqlite());
            }

            #[test]
            fn postgres() {
                ($body)(&$crate::dialects::Place::postgres());
            }
        }
    };
}
