//! What the SQL backends share: how a row reads into an entry, how a state reads as SQL, the
//! listing and counting queries. Each backend keeps only its dialect ([`Dialect`]): how it
//! writes "now", its time columns, its placeholders.

use std::time::Duration;

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::{Accepted, Count, EntryId, EntryState, EntrySummary, Listing, Taken};
use crate::CallbackKind;
use crate::error::BoxError;
use crate::idempotency::{DeliveryKey, Fingerprint};

/// How one backend writes what the shared queries need.
pub(super) struct Dialect {
    /// "Now" on the inbox's clock, in the unit of the time columns (a bound parameter, or the
    /// database's `now()`).
    pub(super) now: &'static str,
    /// The column of the time a pending entry is due.
    pub(super) due: &'static str,
    /// The column of the time its lease ends (NULL: not held).
    pub(super) lease: &'static str,
    /// The column of the time it was accepted.
    pub(super) accepted: &'static str,
    /// How long ago `column` (a time) was, in whole milliseconds, as a `bigint`.
    pub(super) ms_since: fn(&str) -> String,
    /// The `n`th placeholder (from 1).
    pub(super) param: fn(usize) -> String,
    /// How many placeholders `now` uses before the query's own.
    pub(super) first_param: usize,
}

impl Dialect {
    /// The SQL condition of an entry in `state`.
    fn state(&self, state: EntryState) -> String {
        let (now, due, lease) = (self.now, self.due, self.lease);
        let not_held = format!("({lease} IS NULL OR {lease} < {now})");
        match state {
            EntryState::Done => "state = 'done'".to_owned(),
            EntryState::Dead => "state = 'dead'".to_owned(),
            EntryState::Running => format!("(state = 'pending' AND {lease} >= {now})"),
            EntryState::Waiting => format!("(state = 'pending' AND {not_held} AND {due} > {now})"),
            EntryState::Pending => {
                format!("(state = 'pending' AND {not_held} AND {due} <= {now})")
            }
        }
    }

    /// The state an entry shows, as an SQL expression (`pending`, `running`, ...).
    fn shown_state(&self) -> String {
        let (now, due, lease) = (self.now, self.due, self.lease);
        format!(
            "CASE WHEN state <> 'pending' THEN state
                  WHEN {lease} >= {now} THEN 'running'
                  WHEN {due} > {now} THEN 'waiting'
                  ELSE 'pending' END"
        )
    }

    /// The columns [`summary_of`] reads.
    fn summary_columns(&self) -> String {
        let (now, due, lease) = (self.now, self.due, self.lease);
        let age = (self.ms_since)(self.accepted);
        let due_in = format!("-{}", (self.ms_since)(due));
        format!(
            "id, kind, pid, cid, CAST(status AS bigint) AS status, state,
             CAST(attempts AS bigint) AS attempts, last_error, origin,
             coalesce({lease} >= {now}, false) AS running, {age} AS age_ms, {due_in} AS due_in_ms"
        )
    }

    /// The query of one page of `listing`, and whether it binds the kind: its parameters are
    /// (after [`first_param`](Dialect::first_param)) the kind if any, the cursor, the limit.
    pub(super) fn page(&self, listing: &Listing) -> String {
        let mut conditions = Vec::new();
        let all = EntryState::ALL;
        let states: Vec<EntryState> = all
            .into_iter()
            .filter(|state| listing.states.is_empty() || listing.states.contains(state))
            .collect();
        if states.len() < all.len() {
            let either: Vec<String> = states.iter().map(|state| self.state(*state)).collect();
            conditions.push(format!("({})", either.join(" OR ")));
        }
        let mut next = self.first_param;
        let mut param = || {
            next += 1;
            (self.param)(next)
        };
        if listing.kind.is_some() {
            conditions.push(format!("kind = {}", param()));
        }
        conditions.push(format!("id > {}", param()));
        let limit = param();
        format!(
            "SELECT {} FROM cregis_inbox WHERE {} ORDER BY id LIMIT {limit}",
            self.summary_columns(),
            conditions.join(" AND ")
        )
    }

    /// The query of [`Inbox::counts`](super::Inbox::counts): kind, state shown, entries, and
    /// the age of the oldest in milliseconds.
    pub(super) fn counts(&self) -> String {
        format!(
            "SELECT kind, shown, count(*) AS entries, max(age_ms) AS oldest_ms
             FROM (SELECT kind, {} AS shown, {} AS age_ms FROM cregis_inbox) AS entries
             GROUP BY kind, shown",
            self.shown_state(),
            (self.ms_since)(self.accepted),
        )
    }
}

/// The cursor as bound: every id is above it when there is none.
pub(super) fn after(listing: &Listing) -> i64 {
    listing.after.map_or(i64::MIN, |id| id.0)
}

/// The page size as bound.
pub(super) fn limit(listing: &Listing) -> i64 {
    i64::try_from(listing.limit.clamp(1, Listing::MAX_LIMIT)).unwrap_or(1)
}

/// The state of an entry stored as `stored` (`pending`, `done` or `dead`), whose lease is live
/// (`running`) or whose retry is due later (`waiting`).
fn state(stored: &str, running: bool, waiting: bool) -> EntryState {
    match stored {
        "done" => EntryState::Done,
        "dead" => EntryState::Dead,
        "running" => EntryState::Running,
        "waiting" => EntryState::Waiting,
        _ if running => EntryState::Running,
        _ if waiting => EntryState::Waiting,
        _ => EntryState::Pending,
    }
}

/// What accepting an entry with `fingerprint` is when entry `id`, with `stored`, already holds
/// its key.
pub(super) fn existing(id: EntryId, stored: &[u8], fingerprint: &Fingerprint) -> Accepted {
    if stored == fingerprint.as_bytes() {
        Accepted::Duplicate(id)
    } else {
        Accepted::Conflict(id)
    }
}

/// What accepting is when the key's payout holds another final status: a row of `id` and
/// `status` (as a `bigint`).
pub(super) fn other_final(row: &impl EntryRow) -> Result<Accepted, BoxError> {
    let code = row.int("status")?;
    let recorded = i32::try_from(code)
        .ok()
        .and_then(|code| crate::CallbackStatus::try_from(code).ok())
        .ok_or_else(|| format!("the inbox holds an unknown status {code}"))?;
    Ok(Accepted::OtherFinal {
        id: EntryId(row.int("id")?),
        recorded,
    })
}

/// Whether `key` reports one of the final statuses, which exclude each other.
#[cfg(feature = "postgres")]
pub(super) fn is_final(key: &DeliveryKey) -> bool {
    key.fact
        .status()
        .is_some_and(crate::CallbackStatus::is_final)
}

/// The schema step shared by both backends (version 3): each entry says who made its
/// delivery (`origin`), and a payout holds at most one final status. `id` is the column type
/// of entry ids, `lease` and `finished` the backend's time columns, `now` the current time in
/// their unit. Payouts that already held two are kept: the later ones point to the first
/// (`conflicts_with`), outside the index, and those still pending are made dead so that no
/// handler acts on them before a person has looked.
macro_rules! version_3 {
    (id: $id:literal, lease: $lease:literal, finished: $finished:literal, now: $now:literal) => {
        &[
            "ALTER TABLE cregis_inbox ADD COLUMN origin text NOT NULL DEFAULT 'cregis'",
            concat!("ALTER TABLE cregis_inbox ADD COLUMN conflicts_with ", $id),
            concat!(
                "UPDATE cregis_inbox SET conflicts_with = (
                     SELECT min(f.id) FROM cregis_inbox AS f
                     WHERE f.kind = cregis_inbox.kind AND f.pid = cregis_inbox.pid
                       AND f.cid = cregis_inbox.cid AND f.status IN (",
                crate::schema::final_statuses!(),
                "))
                 WHERE status IN (",
                crate::schema::final_statuses!(),
                ")
                   AND id > (
                     SELECT min(f.id) FROM cregis_inbox AS f
                     WHERE f.kind = cregis_inbox.kind AND f.pid = cregis_inbox.pid
                       AND f.cid = cregis_inbox.cid AND f.status IN (",
                crate::schema::final_statuses!(),
                "))"
            ),
            concat!(
                "UPDATE cregis_inbox SET state = 'dead', ",
                $lease,
                " = NULL, ",
                $finished,
                " = ",
                $now,
                ",
                     last_error = 'another final status of this payout was recorded first, \
                                   as entry ' || conflicts_with
                 WHERE conflicts_with IS NOT NULL AND state = 'pending'"
            ),
            concat!(
                "CREATE UNIQUE INDEX cregis_inbox_final ON cregis_inbox (kind, pid, cid)
                 WHERE status IN (",
                crate::schema::final_statuses!(),
                ") AND conflicts_with IS NULL"
            ),
        ]
    };
}
pub(super) use version_3;

/// Whole milliseconds back to a duration (negative ones as zero).
pub(super) fn duration_ms(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// What a backend's rows decode: the columns of an entry, read the same way on every backend.
pub(super) trait EntryRow: Row {
    fn int(&self, column: &str) -> Result<i64, BoxError>;
    fn text(&self, column: &str) -> Result<String, BoxError>;
}

impl<R> EntryRow for R
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    fn int(&self, column: &str) -> Result<i64, BoxError> {
        Ok(self.try_get::<i64, _>(column)?)
    }

    fn text(&self, column: &str) -> Result<String, BoxError> {
        Ok(self.try_get::<String, _>(column)?)
    }
}

/// The fact of a row (`kind`, `pid`, `cid`, `status`).
pub(super) fn key_of(row: &impl EntryRow) -> Result<DeliveryKey, BoxError> {
    DeliveryKey::from_columns(
        &row.text("kind")?,
        row.int("pid")?,
        row.int("cid")?,
        row.int("status")?,
    )
}

fn count_of(row: &impl EntryRow, column: &str) -> Result<u32, BoxError> {
    Ok(u32::try_from(row.int(column)?)?)
}

/// A row of `take`'s `RETURNING` (`id`, the key, `body`, `attempts`, `interrupted`, `origin`, `age_ms`,
/// the integers as `bigint`), with its body.
pub(super) fn taken_of<R>(row: &R) -> Result<Taken, BoxError>
where
    R: EntryRow,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Taken {
        id: EntryId(row.int("id")?),
        key: key_of(row)?,
        body: row.try_get("body")?,
        attempt: count_of(row, "attempts")?,
        age: duration_ms(row.int("age_ms")?),
        interrupted_runs: count_of(row, "interrupted")?,
        origin: crate::Origin::from_name(&row.text("origin")?),
    })
}

/// The rows of a `take`, oldest first (`RETURNING` keeps no order).
pub(super) fn taken_all<R>(rows: &[R]) -> Result<Vec<Taken>, BoxError>
where
    R: EntryRow,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    let mut taken = rows.iter().map(taken_of).collect::<Result<Vec<_>, _>>()?;
    taken.sort_by_key(|taken| taken.id);
    Ok(taken)
}

/// The rows of a `bodies` query: each entry's id and its stored body.
pub(super) fn bodies_of<R>(rows: &[R]) -> Result<Vec<(EntryId, Vec<u8>)>, BoxError>
where
    R: EntryRow,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    rows.iter()
        .map(|row| Ok((EntryId(row.int("id")?), row.try_get("body")?)))
        .collect()
}

/// A row of [`Dialect::page`].
pub(super) fn summary_of<R>(row: &R) -> Result<EntrySummary, BoxError>
where
    R: EntryRow,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
{
    let due_in_ms = row.int("due_in_ms")?;
    let state = state(&row.text("state")?, row.try_get("running")?, due_in_ms > 0);
    Ok(EntrySummary {
        id: EntryId(row.int("id")?),
        key: key_of(row)?,
        state,
        attempts: count_of(row, "attempts")?,
        last_error: row.try_get("last_error")?,
        age: duration_ms(row.int("age_ms")?),
        due_in: (state == EntryState::Waiting).then(|| duration_ms(due_in_ms)),
        origin: crate::Origin::from_name(&row.text("origin")?),
    })
}

/// A row of [`Dialect::counts`].
pub(super) fn count_row(row: &impl EntryRow) -> Result<Count, BoxError> {
    let kind: CallbackKind = row.text("kind")?.parse()?;
    Ok(Count {
        kind,
        state: state(&row.text("shown")?, false, false),
        entries: u64::try_from(row.int("entries")?)?,
        oldest: duration_ms(row.int("oldest_ms")?),
    })
}

/// The page's cursor: the last id, if the page is full.
pub(super) fn next_cursor(entries: &[EntrySummary], listing: &Listing) -> Option<EntryId> {
    let full = i64::try_from(entries.len()).ok() == Some(limit(listing));
    entries.last().filter(|_| full).map(|entry| entry.id)
}

/// Whether an operator's `discard` or `release` found the entry (the `RETURNING` row of its
/// key), reported with `report` if it did.
pub(super) fn operated(
    row: Option<&impl EntryRow>,
    id: EntryId,
    reason: &str,
    report: fn(EntryId, DeliveryKey, &str),
) -> Result<bool, BoxError> {
    match row {
        Some(row) => {
            report(id, key_of(row)?, reason);
            Ok(true)
        }
        None => Ok(false),
    }
}
