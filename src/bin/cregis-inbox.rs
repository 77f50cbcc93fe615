//! `cregis-inbox`: an operator's command line for the durable inbox (feature `cli`), on a
//! SQLite file or a PostgreSQL URL.
//!
//! ```text
//! cregis-inbox <INBOX> stats
//! cregis-inbox <INBOX> list [--state S]... [--kind K]
//! cregis-inbox <INBOX> show ID
//! cregis-inbox <INBOX> replay (ID | --all-dead)
//! cregis-inbox <INBOX> discard ID --reason R
//! ```
//!
//! `<INBOX>` is a `postgres://` (or `postgresql://`) URL, or the path of an existing SQLite
//! file. `--json` prints one JSON document instead of text. Exit codes: 0 done; 1 the entry is
//! not there, or not in a state that allows it (nothing changed); 2 the command line is wrong;
//! 3 the inbox could not be opened or failed.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, Command};
use cregis_payout_callback::CallbackKind;
use cregis_payout_callback::error::BoxError;
use cregis_payout_callback::inbox::{
    EntryId, EntryState, EntrySummary, Inbox, Listing, PgInbox, SqliteInbox,
};
use serde_json::{Value, json};

/// Nothing found, or not in a state that allows it.
const NOT_DONE: u8 = 1;
/// The inbox could not be opened, or failed.
const FAILED: u8 = 3;

const STATES: [&str; 5] = ["pending", "waiting", "running", "done", "dead"];

fn command() -> Command {
    let id = || {
        Arg::new("id")
            .value_parser(clap::value_parser!(i64))
            .help("the entry's id")
    };
    Command::new("cregis-inbox")
        .about("Look at and settle the entries of a cregis-payout-callback inbox")
        .arg(
            Arg::new("inbox")
                .required(true)
                .help("a postgres:// URL, or the path of an existing SQLite file"),
        )
        .arg(
            Arg::new("json")
                .long("json")
                .global(true)
                .action(ArgAction::SetTrue)
                .help("print JSON"),
        )
        .subcommand_required(true)
        .subcommand(Command::new("stats").about("entries by kind and state, and the oldest"))
        .subcommand(
            Command::new("list")
                .about("entries, 1,000 at most, by id")
                .arg(
                    Arg::new("state")
                        .long("state")
                        .action(ArgAction::Append)
                        .value_parser(STATES)
                        .help("only entries in this state (repeatable)"),
                )
                .arg(
                    Arg::new("kind")
                        .long("kind")
                        .value_parser(["payout", "withdrawal", "approval"])
                        .help("only entries of this kind"),
                ),
        )
        .subcommand(
            Command::new("show")
                .about("one entry")
                .arg(id().required(true)),
        )
        .subcommand(
            Command::new("replay")
                .about("run a dead entry (or every dead entry) once more")
                .arg(id().required_unless_present("all-dead"))
                .arg(
                    Arg::new("all-dead")
                        .long("all-dead")
                        .action(ArgAction::SetTrue)
                        .conflicts_with("id"),
                ),
        )
        .subcommand(
            Command::new("discard")
                .about("remove an entry that must not run")
                .arg(id().required(true))
                .arg(
                    Arg::new("reason")
                        .long("reason")
                        .required(true)
                        .help("why, for the log"),
                ),
        )
}

fn state(name: &str) -> EntryState {
    match name {
        "pending" => EntryState::Pending,
        "waiting" => EntryState::Waiting,
        "running" => EntryState::Running,
        "done" => EntryState::Done,
        _ => EntryState::Dead,
    }
}

fn entry_json(entry: &EntrySummary) -> Value {
    json!({
        "id": entry.id.0,
        "kind": entry.key.kind.as_str(),
        "pid": entry.key.pid,
        "cid": entry.key.cid,
        "status": entry.key.fact.code(),
        "state": entry.state.to_string(),
        "attempts": entry.attempts,
        "last_error": entry.last_error,
        "age_seconds": entry.age.as_secs(),
        "due_in_seconds": entry.due_in.map(|due| due.as_secs()),
        "origin": entry.origin.as_str(),
    })
}

fn entry_line(entry: &EntrySummary) -> String {
    format!(
        "{:>8}  {:<10} {:<8} cid {} status {}  attempts {}  age {}  from {}{}",
        entry.id.0,
        entry.key.kind,
        entry.state,
        entry.key.cid,
        entry.key.fact.code(),
        entry.attempts,
        age(entry.age),
        entry.origin,
        entry
            .last_error
            .as_deref()
            .map(|error| format!("\n          last error: {}", error.escape_debug()))
            .unwrap_or_default()
    )
}

fn age(age: Duration) -> String {
    let secs = age.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// What a command printed, and whether it did what it was asked.
struct Printed {
    json: Value,
    text: String,
    ok: bool,
}

/// Entries by kind and state, and the oldest of each.
async fn stats(inbox: &impl Inbox) -> Result<Printed, BoxError> {
    let counts = inbox.counts().await?;
    let text = counts
        .iter()
        .map(|count| {
            format!(
                "{:<10} {:<8} {:>8}  oldest {}",
                count.kind,
                count.state,
                count.entries,
                age(count.oldest)
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let json = counts
        .iter()
        .map(|count| {
            json!({
                "kind": count.kind.as_str(),
                "state": count.state.to_string(),
                "entries": count.entries,
                "oldest_seconds": count.oldest.as_secs(),
            })
        })
        .collect();
    Ok(Printed {
        json: Value::Array(json),
        text,
        ok: true,
    })
}

/// The entries in `args`' states and kind.
async fn list(inbox: &impl Inbox, args: &ArgMatches) -> Result<Printed, BoxError> {
    let states: Vec<EntryState> = args
        .get_many::<String>("state")
        .into_iter()
        .flatten()
        .map(|name| state(name))
        .collect();
    let mut listing = Listing::new(&states).limit(Listing::MAX_LIMIT);
    if let Some(kind) = args.get_one::<String>("kind") {
        listing = listing.kind(kind.parse::<CallbackKind>()?);
    }
    let page = inbox.page(&listing).await?;
    Ok(Printed {
        json: json!({
            "entries": page.entries.iter().map(entry_json).collect::<Vec<_>>(),
            "more": page.next.is_some(),
        }),
        text: page
            .entries
            .iter()
            .map(entry_line)
            .collect::<Vec<_>>()
            .join("\n"),
        ok: true,
    })
}

async fn run(inbox: impl Inbox, matches: &ArgMatches) -> Result<Printed, BoxError> {
    let (name, args) = matches.subcommand().ok_or("no command")?;
    let id = || args.get_one::<i64>("id").copied().unwrap_or(0);
    Ok(match name {
        "stats" => stats(&inbox).await?,
        "list" => list(&inbox, args).await?,
        "show" => match inbox.entry(EntryId(id())).await? {
            Some(entry) => Printed {
                json: entry_json(&entry),
                text: entry_line(&entry),
                ok: true,
            },
            None => Printed {
                json: Value::Null,
                text: format!("no entry {}", id()),
                ok: false,
            },
        },
        "replay" if args.get_flag("all-dead") => {
            let replayed = inbox.replay_dead().await?;
            Printed {
                json: json!({ "replayed": replayed }),
                text: format!("{replayed} dead entries replayed"),
                ok: true,
            }
        }
        "replay" => {
            let replayed = inbox.replay(EntryId(id())).await?;
            Printed {
                json: json!({ "replayed": usize::from(replayed) }),
                text: if replayed {
                    format!("entry {} replayed", id())
                } else {
                    format!(
                        "entry {} is not dead (or not there): nothing replayed",
                        id()
                    )
                },
                ok: replayed,
            }
        }
        _ => {
            let reason = args.get_one::<String>("reason").ok_or("a reason")?;
            let discarded = inbox.discard(EntryId(id()), reason).await?;
            Printed {
                json: json!({ "discarded": usize::from(discarded) }),
                text: if discarded {
                    format!("entry {} discarded", id())
                } else {
                    format!(
                        "entry {} is running (or not there): nothing discarded",
                        id()
                    )
                },
                ok: discarded,
            }
        }
    })
}

async fn open_and_run(matches: &ArgMatches) -> Result<Printed, BoxError> {
    let target = matches.get_one::<String>("inbox").ok_or("an inbox")?;
    if target.starts_with("postgres://") || target.starts_with("postgresql://") {
        run(PgInbox::connect(target).await?, matches).await
    } else if std::path::Path::new(target).is_file() {
        run(SqliteInbox::open(target).await?, matches).await
    } else {
        Err(format!("{target}: not a postgres:// URL nor an existing SQLite file").into())
    }
}

fn main() -> ExitCode {
    let matches = match command().try_get_matches() {
        Ok(matches) => matches,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cregis-inbox: {error}");
            return ExitCode::from(FAILED);
        }
    };
    match runtime.block_on(open_and_run(&matches)) {
        Ok(printed) => {
            if matches.get_flag("json") {
                println!("{}", printed.json);
            } else if !printed.text.is_empty() {
                println!("{}", printed.text);
            }
            if printed.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(NOT_DONE)
            }
        }
        Err(error) => {
            eprintln!("cregis-inbox: {error}");
            ExitCode::from(FAILED)
        }
    }
}
