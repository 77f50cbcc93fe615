//! In-transaction runs that share a commit: SQLite's `Worker::in_transaction`.
//!
//! SQLite has one writer, so this process's in-transaction handlers run one at a time (see
//! `Gate`). Each in a transaction of its own would cost a commit (an fsync) per entry, and a
//! turn of the write lock per entry, between which the accepts' writer takes its own turn.
//! Instead, the runs that come while a transaction is open join it, each in a savepoint of its
//! own: a handler that fails, panics, is aborted or lost its lease is rolled back to its
//! savepoint and leaves the others' effects alone. The transaction commits once nobody waits to
//! join it, once it holds [`MOST_RUNS`], or [`WINDOW`] after it began (a task of its own sees to
//! that, whatever became of the runs); each run is answered only after that commit. So an accept
//! waits for at most one group: one handler's deadline plus [`WINDOW`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::{Sqlite, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard, watch};
use tokio::time::Instant;

use super::{SqliteHandler, SqliteInbox, mark_done};
use crate::error::BoxError;
use crate::inbox::{JobError, Ran, Taken};

/// How long runs may join an open transaction: past it, it commits.
const WINDOW: Duration = Duration::from_millis(5);
/// The most runs one transaction holds.
const MOST_RUNS: usize = 64;

/// This process's in-transaction runs: the transaction they share, if one is open.
#[derive(Debug, Default)]
pub(super) struct Runs {
    /// The open transaction and the runs in it; one run at a time holds the lock.
    open: Mutex<Open>,
    /// How many runs wait for the lock: the last of a burst commits.
    waiting: AtomicUsize,
}

#[derive(Debug, Default)]
struct Open {
    group: Option<Group>,
    /// Counts the groups, so that a group's closer never closes the next one.
    opened: u64,
}

/// One open transaction and what its runs wait for.
#[derive(Debug)]
struct Group {
    tx: Transaction<'static, Sqlite>,
    /// This process's turn to write (`Gate::write`), held until the commit.
    _turn: OwnedMutexGuard<()>,
    began: Instant,
    runs: usize,
    number: u64,
    /// A run's savepoint is open: its run was aborted or panicked in it.
    in_savepoint: bool,
    /// The commit's outcome, sent once.
    committed: watch::Sender<Option<Result<(), String>>>,
}

/// Counts a run waiting for the lock for as long as it waits (dropped with an aborted run).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How a run in the group ended, before the commit.
enum Ended {
    Applied,
    Lost,
    Failed(String),
    NotRecorded(BoxError),
}

/// Runs `handler` on `callback` in the shared transaction, in a savepoint of its own; the
/// entry marked done there if the run still holds its lease; answered after the commit.
pub(super) async fn run<C, H: SqliteHandler<C>>(
    inbox: &SqliteInbox,
    handler: &H,
    taken: &Taken,
    callback: &C,
) -> Result<Ran, JobError> {
    let runs = &inbox.gate.runs;
    let mut open = {
        let _waiting = Waiting::new(&runs.waiting);
        runs.open.lock().await
    };
    // A group past its window or full commits first: the accepts queued for the write lock
    // come before the next.
    if open
        .group
        .as_ref()
        .is_some_and(|group| group.began.elapsed() >= WINDOW || group.runs >= MOST_RUNS)
    {
        close(&mut open).await;
    }
    let group = match open.group.take() {
        Some(group) => group,
        None => begin(inbox, &mut open.opened)
            .await
            .map_err(JobError::Inbox)?,
    };
    let group = open.group.insert(group);
    if let Err(error) = group.enter().await {
        abandon(&mut open, &error);
        return Err(JobError::Inbox(error));
    }
    let ended = match handler.handle(callback, &mut group.tx).await {
        Err(error) => Ended::Failed(error.to_string()),
        Ok(()) => match mark_done(&mut group.tx, taken.id, taken.attempt, inbox.now_ms()).await {
            Ok(true) => Ended::Applied,
            Ok(false) => Ended::Lost,
            Err(error) => Ended::NotRecorded(error),
        },
    };
    if let Err(error) = group.leave(matches!(ended, Ended::Applied)).await {
        abandon(&mut open, &error);
        return Err(JobError::Inbox(error));
    }
    let mut committed = group.committed.subscribe();
    if runs.waiting.load(Ordering::SeqCst) == 0 {
        close(&mut open).await;
    }
    drop(open);
    match ended {
        Ended::Failed(error) => Err(JobError::Handler(error)),
        Ended::Lost => Ok(Ran::Lost),
        Ended::NotRecorded(error) => Err(JobError::Inbox(error)),
        Ended::Applied => {
            let outcome = match committed.wait_for(Option::is_some).await {
                Ok(outcome) => outcome.clone(),
                Err(_) => None,
            };
            match outcome {
                Some(Ok(())) => Ok(Ran::Recorded),
                Some(Err(error)) => Err(JobError::Inbox(error.into())),
                None => Err(JobError::Inbox(
                    "the transaction ended without a commit".into(),
                )),
            }
        }
    }
}

/// Begins the next group: this process's turn to write, then `BEGIN IMMEDIATE`, and the task
/// that commits it at the end of its window.
async fn begin(inbox: &SqliteInbox, opened: &mut u64) -> Result<Group, BoxError> {
    let turn = Arc::clone(&inbox.gate.write).lock_owned().await;
    let tx = inbox.pool.begin_with("BEGIN IMMEDIATE").await?;
    *opened += 1;
    let number = *opened;
    let gate = Arc::clone(&inbox.gate);
    tokio::spawn(async move {
        tokio::time::sleep(WINDOW).await;
        let mut open = gate.runs.open.lock().await;
        if open
            .group
            .as_ref()
            .is_some_and(|group| group.number == number)
        {
            close(&mut open).await;
        }
    });
    Ok(Group {
        tx,
        _turn: turn,
        began: Instant::now(),
        runs: 0,
        number,
        in_savepoint: false,
        committed: watch::Sender::new(None),
    })
}

impl Group {
    /// Opens the run's savepoint (after rolling back one a run left open).
    async fn enter(&mut self) -> Result<(), BoxError> {
        self.forget_interrupted().await?;
        sqlx::raw_sql("SAVEPOINT run")
            .execute(&mut *self.tx)
            .await?;
        self.in_savepoint = true;
        self.runs += 1;
        Ok(())
    }

    /// Closes the run's savepoint: kept if `applied`, else rolled back.
    async fn leave(&mut self, applied: bool) -> Result<(), BoxError> {
        let statement = if applied {
            "RELEASE run"
        } else {
            "ROLLBACK TO run; RELEASE run"
        };
        sqlx::raw_sql(statement).execute(&mut *self.tx).await?;
        self.in_savepoint = false;
        Ok(())
    }

    /// Rolls back what a run aborted (or panicked) in its savepoint left.
    async fn forget_interrupted(&mut self) -> Result<(), BoxError> {
        if self.in_savepoint {
            self.leave(false).await?;
        }
        Ok(())
    }
}

/// Commits the open group, if any, and tells its runs. The commit runs in a task of its own:
/// the run that closes the group may be aborted meanwhile (its deadline), and must not roll
/// back the others' effects with it. The next group begins once it has ended (the write
/// turn is the group's until then).
async fn close(open: &mut Open) {
    let Some(mut group) = open.group.take() else {
        return;
    };
    let commit = tokio::spawn(async move {
        let committed = match group.forget_interrupted().await {
            Ok(()) => group.tx.commit().await.map_err(BoxError::from),
            Err(error) => Err(error),
        };
        group
            .committed
            .send_replace(Some(committed.map_err(|error| error.to_string())));
    });
    // Whoever closes waits for the commit (a panic in it is the runs' `Err`: the sender
    // is dropped unsent).
    let _ = commit.await;
}

/// Rolls back the open group (its transaction failed): each of its runs is told.
fn abandon(open: &mut Open, error: &BoxError) {
    if let Some(group) = open.group.take() {
        let error = format!("the transaction failed: {error}");
        group.committed.send_replace(Some(Err(error)));
        // Dropping the transaction rolls it back.
    }
}
