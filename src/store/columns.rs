//! How the model's enums are read from and written to their TEXT columns:
//! each through its one `as_str`/`parse`, so a row holds the enum and no
//! code compares a status as a string. The schema's CHECK constraints keep
//! other values out; one found anyway is a conversion error, not a guess.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

use super::exec_model::{ExecutionStatus, ParamsKind};
use super::model::{ConversationStatus, ExecutionState, JobStatus, PayloadKind};

macro_rules! text_column {
    ($($ty:ty),*) => {$(
        impl FromSql for $ty {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let text = value.as_str()?;
                <$ty>::parse(text).ok_or_else(|| {
                    FromSqlError::Other(format!("unknown {} {text:?}", stringify!($ty)).into())
                })
            }
        }

        impl ToSql for $ty {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }
    )*};
}

text_column!(ConversationStatus, ExecutionState, JobStatus, PayloadKind, ExecutionStatus, ParamsKind);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_outside_the_enum_is_an_error() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let read = |v: &str| conn.query_row("SELECT ?1", [v], |r| r.get::<_, JobStatus>(0));
        assert_eq!(read("failed").unwrap(), JobStatus::Failed);
        assert!(read("stuck").is_err());
        let back: String =
            conn.query_row("SELECT ?1", [ExecutionState::RenewalRunning], |r| r.get(0)).unwrap();
        assert_eq!(back, "renewal_running");
    }
}
