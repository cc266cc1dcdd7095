//! The store's own values and rows: what its SQL takes and gives back,
//! whichever database answers (Spin SQLite, rusqlite natively, and the
//! PostgreSQL dialect to come), so no module speaks a driver's types.
//!
//! The shape follows spin-sdk's `sqlite3` (a [`QueryResult`] of column names
//! and [`RowResult`]s, a [`Row`] read by column name, conversions by
//! `TryFrom<&Value>`), so reading a row looks the same everywhere.

/// A value sent to or read from the database.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A whole number.
    Integer(i64),
    /// A floating-point number.
    Real(f64),
    /// A `TEXT` value (JSON snapshots, ids and times as text are stored so).
    Text(String),
    /// A `BLOB` value (PostgreSQL `bytea`).
    Blob(Vec<u8>),
    /// No value.
    Null,
}

/// The answer to one statement: its column names and rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryResult {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// The rows, each with one value per column.
    pub rows: Vec<RowResult>,
}

/// One row's values, by column index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowResult {
    /// One value per column.
    pub values: Vec<Value>,
}

/// A row read by column name.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    columns: &'a [String],
    result: &'a RowResult,
}

impl QueryResult {
    /// The rows, read by column name.
    pub fn rows(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(|r| Row { columns: self.columns.as_slice(), result: r })
    }
}

impl<'a> Row<'a> {
    /// The value of `column` converted to `T`; `None` when the column is
    /// missing, NULL or of another type.
    pub fn get<T: TryFrom<&'a Value>>(&self, column: &str) -> Option<T> {
        let i = self.columns.iter().position(|c| c == column)?;
        self.result.get(i)
    }
}

impl RowResult {
    /// The value at `index` converted to `T`.
    pub fn get<'a, T: TryFrom<&'a Value>>(&'a self, index: usize) -> Option<T> {
        self.values.get(index).and_then(|v| v.try_into().ok())
    }
}

impl<'a> TryFrom<&'a Value> for bool {
    type Error = ();

    fn try_from(value: &'a Value) -> Result<Self, Self::Error> {
        match value {
            Value::Integer(i) => Ok(*i != 0),
            _ => Err(()),
        }
    }
}

macro_rules! int_conversions {
    ($($t:ty),*) => {
        $(impl<'a> TryFrom<&'a Value> for $t {
            type Error = ();

            fn try_from(value: &'a Value) -> Result<Self, Self::Error> {
                match value {
                    Value::Integer(i) => (*i).try_into().map_err(|_| ()),
                    _ => Err(()),
                }
            }
        })*
    };
}

int_conversions!(u8, u16, u32, u64, i8, i16, i32, i64, usize, isize);

impl<'a> TryFrom<&'a Value> for f64 {
    type Error = ();

    fn try_from(value: &'a Value) -> Result<Self, Self::Error> {
        match value {
            Value::Real(f) => Ok(*f),
            _ => Err(()),
        }
    }
}

impl<'a> TryFrom<&'a Value> for &'a str {
    type Error = ();

    fn try_from(value: &'a Value) -> Result<Self, Self::Error> {
        match value {
            Value::Text(s) => Ok(s.as_str()),
            Value::Blob(b) => std::str::from_utf8(b).map_err(|_| ()),
            _ => Err(()),
        }
    }
}

impl<'a> TryFrom<&'a Value> for &'a [u8] {
    type Error = ();

    fn try_from(value: &'a Value) -> Result<Self, Self::Error> {
        match value {
            Value::Blob(b) => Ok(b.as_slice()),
            Value::Text(s) => Ok(s.as_bytes()),
            _ => Err(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_read_by_column_name_with_conversions() {
        let r = QueryResult {
            columns: vec!["id".into(), "name".into(), "at".into(), "ok".into()],
            rows: vec![RowResult {
                values: vec![Value::Integer(7), Value::Text("a".into()), Value::Null, Value::Integer(1)],
            }],
        };
        let row = r.rows().next().unwrap();
        assert_eq!(row.get::<i64>("id"), Some(7));
        assert_eq!(row.get::<u8>("id"), Some(7));
        assert_eq!(row.get::<&str>("name"), Some("a"));
        assert_eq!(row.get::<i64>("at"), None, "NULL");
        assert_eq!(row.get::<bool>("ok"), Some(true));
        assert_eq!(row.get::<i64>("nope"), None);
        assert_eq!(row.get::<f64>("id"), None, "no silent widening");
    }
}
