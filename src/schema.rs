//! The tables the crate creates in the host's database, and how each moves from one version to
//! the next (features `sqlite`, `postgres`). The inbox and the PostgreSQL idempotency store
//! both use it; neither needs the other.

use std::time::Duration;

use crate::error::BoxError;

/// The longest span the crate writes into SQL time arithmetic: 100 years. Longer settings
/// (up to `Duration::MAX`) mean "never" and saturate here, so that a date never leaves
/// PostgreSQL's range (`interval out of range`) nor overflows SQLite's integers.
pub(crate) const MAX_SQL_SPAN: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// `span` in whole milliseconds, saturating at [`MAX_SQL_SPAN`]: what the SQL takes.
pub(crate) fn sql_ms(span: Duration) -> i64 {
    i64::try_from(span.min(MAX_SQL_SPAN).as_millis()).unwrap_or(i64::MAX)
}

/// The codes of Cregis's final statuses ([`CallbackStatus::is_final`](crate::CallbackStatus::is_final)),
/// as SQL writes a list of them: a macro, so that the static schema steps can `concat!` it.
/// They exclude each other: a payout holds at most one.
macro_rules! final_statuses {
    () => {
        "2, 3, 4, 6, 7"
    };
}
pub(crate) use final_statuses;

/// A set of tables the crate creates, as the steps that bring it from one version to the next:
/// `steps[0]` creates version 1, `steps[1]` moves version 1 to 2, and so on. The version this
/// crate writes and reads is `steps.len()`.
pub(crate) struct Schema {
    /// What the tables are, for errors ("inbox").
    pub(crate) name: &'static str,
    /// The one-column table that records the version reached.
    pub(crate) version_table: &'static str,
    pub(crate) steps: &'static [&'static [&'static str]],
}

impl Schema {
    /// The version this crate writes and reads.
    fn version(&self) -> i64 {
        i64::try_from(self.steps.len()).unwrap_or(i64::MAX)
    }

    /// The statements that bring the tables from `found` (`None`: none yet) to this crate's
    /// version, in order; an error if they are newer than this crate knows.
    fn plan(&self, found: Option<i64>) -> Result<Vec<&'static str>, BoxError> {
        let known = self.version();
        let from = found.unwrap_or(0);
        if from > known || from < 0 {
            return Err(format!(
                "the {}'s schema is version {from}; this crate knows versions up to {known}",
                self.name
            )
            .into());
        }
        let from = usize::try_from(from).unwrap_or(usize::MAX);
        Ok(self.steps[from..]
            .iter()
            .flat_map(|step| step.iter().copied())
            .collect())
    }
}

/// Brings `schema` to this crate's version on SQLite, in one `BEGIN IMMEDIATE` transaction:
/// several instances opening the file at once take turns.
#[cfg(feature = "sqlite")]
pub(crate) async fn migrate_sqlite(
    pool: &sqlx::SqlitePool,
    schema: &Schema,
) -> Result<(), BoxError> {
    use sqlx::{AssertSqlSafe, Connection};

    let mut connection = pool.acquire().await?;
    let mut tx = connection.begin_with("BEGIN IMMEDIATE").await?;
    // The table's name is one of the crate's constants, never input.
    let table = schema.version_table;
    let sql = |text: String| AssertSqlSafe(text);
    sqlx::query(sql(format!(
        "CREATE TABLE IF NOT EXISTS {table} (version INTEGER NOT NULL)"
    )))
    .execute(&mut *tx)
    .await?;
    let found: Option<i64> = sqlx::query_scalar(sql(format!("SELECT max(version) FROM {table}")))
        .fetch_one(&mut *tx)
        .await?;
    let plan = schema.plan(found)?;
    if !plan.is_empty() {
        for statement in plan {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        sqlx::query(sql(format!("INSERT INTO {table} (version) VALUES (?)")))
            .bind(schema.version())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The advisory lock that serializes schema changes between PostgreSQL instances starting at
/// once.
#[cfg(feature = "postgres")]
const SCHEMA_LOCK: i64 = 0x6372_6567_6973_0001;

/// Brings `schema` to this crate's version on PostgreSQL, in one transaction under an
/// advisory lock: several instances starting at once take turns.
#[cfg(feature = "postgres")]
pub(crate) async fn migrate_pg(pool: &sqlx::PgPool, schema: &Schema) -> Result<(), BoxError> {
    use sqlx::{AssertSqlSafe, Connection};

    let mut connection = pool.acquire().await?;
    let mut tx = connection.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SCHEMA_LOCK)
        .execute(&mut *tx)
        .await?;
    // The table's name is one of the crate's constants, never input.
    let table = schema.version_table;
    let sql = |text: String| AssertSqlSafe(text);
    sqlx::query(sql(format!(
        "CREATE TABLE IF NOT EXISTS {table} (version integer NOT NULL)"
    )))
    .execute(&mut *tx)
    .await?;
    let found: Option<i32> = sqlx::query_scalar(sql(format!("SELECT max(version) FROM {table}")))
        .fetch_one(&mut *tx)
        .await?;
    let plan = schema.plan(found.map(i64::from))?;
    if !plan.is_empty() {
        for statement in plan {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        let version = i32::try_from(schema.version()).unwrap_or(i32::MAX);
        sqlx::query(sql(format!("INSERT INTO {table} (version) VALUES ($1)")))
            .bind(version)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Schema;

    const TWO: Schema = Schema {
        name: "test",
        version_table: "t_schema",
        steps: &[&["CREATE a", "CREATE b"], &["ALTER a"]],
    };

    #[test]
    fn a_new_database_gets_every_step_and_an_old_one_the_rest() {
        assert_eq!(TWO.plan(None).unwrap(), ["CREATE a", "CREATE b", "ALTER a"]);
        assert_eq!(TWO.plan(Some(1)).unwrap(), ["ALTER a"]);
        assert!(TWO.plan(Some(2)).unwrap().is_empty());
    }

    #[test]
    fn spans_saturate_where_sql_can_still_add_them() {
        use std::time::Duration;
        assert_eq!(super::sql_ms(Duration::from_millis(1500)), 1500);
        assert_eq!(
            super::sql_ms(Duration::MAX),
            super::sql_ms(super::MAX_SQL_SPAN)
        );
        assert!(super::sql_ms(Duration::MAX) < i64::MAX / 1000);
    }

    #[test]
    fn the_sql_list_of_final_statuses_is_every_final_status() {
        let finals: Vec<String> = crate::CallbackStatus::ALL
            .iter()
            .filter(|status| status.is_final())
            .map(|status| status.code().to_string())
            .collect();
        assert_eq!(final_statuses!(), finals.join(", "));
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let error = TWO.plan(Some(3)).unwrap_err().to_string();
        assert_eq!(
            error,
            "the test's schema is version 3; this crate knows versions up to 2"
        );
    }
}
