//! The console's pages, written with `maud`: every value is escaped unless marked otherwise,
//! and nothing here is marked otherwise but the style sheet below.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::Visit;
use crate::error::BoxError;
use crate::inbox::{Count, EntryId, EntryState, EntrySummary, Page};
use crate::wire::{Params, Scalar};

const STYLE: &str = "
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1b1b1b; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; }
th, td { border-bottom: 1px solid #ddd; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.error { color: #8a1f11; max-width: 40rem; white-space: pre-wrap; overflow-wrap: anywhere; }
.state { font-weight: 600; }
.dead { color: #8a1f11; } .running { color: #0b5cad; } .waiting { color: #8a5a00; } .done { color: #1e6b2e; }
form { margin: .5rem 0; } input[type=text] { width: 24rem; }
header { display: flex; justify-content: space-between; align-items: baseline; }
.note { color: #555; }
";

/// The console's name, and its list page's title.
const INBOX: &str = "Cregis inbox";

/// A page of the console: a title, the operator, and its content.
fn layout(title: &str, operator: Option<&str>, reload: bool, content: &Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                @if reload { meta http-equiv="refresh" content="2"; }
                title { @if title == INBOX { (INBOX) } @else { (title) " · " (INBOX) } }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { (title) }
                    @if let Some(operator) = operator { span.note { "Signed in as " (operator) } }
                }
                (content)
            }
        }
    }
}

fn respond(status: StatusCode, page: &Markup) -> Response {
    (status, Html(page.clone().into_string())).into_response()
}

/// A page saying why nothing was done.
pub(super) fn refusal(status: StatusCode, why: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Refused");
    respond(status, &layout(title, None, false, &html! { p { (why) } }))
}

/// The inbox failed: 500, with its error.
pub(super) fn failed(error: &BoxError) -> Response {
    let content = html! { p { "The inbox failed: " (error.to_string()) } };
    respond(
        StatusCode::INTERNAL_SERVER_ERROR,
        &layout("The inbox failed", None, false, &content),
    )
}

/// The state a query names.
pub(super) fn state_named(name: &str) -> Option<EntryState> {
    EntryState::ALL
        .into_iter()
        .find(|state| state.name() == name)
}

/// How long ago, or how long until, roughly.
pub(super) fn span(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86_400 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d {} h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// A body's value as the console shows it.
fn shown(value: Scalar<'_>) -> String {
    match value {
        Scalar::Null => "null".to_owned(),
        Scalar::Bool(value) => value.to_string(),
        Scalar::Number(text) | Scalar::Str(text) => text.to_owned(),
        Scalar::Compound => "(nested)".to_owned(),
    }
}

/// Every field of a stored body but `sign`, in the order sent, each value as text.
fn fields(body: &[u8]) -> Vec<(String, String)> {
    let Ok(params) = Params::from_body(body) else {
        return Vec::new();
    };
    params
        .iter()
        .filter(|(key, _)| *key != "sign")
        .map(|(key, value)| (key.to_owned(), shown(value)))
        .collect()
}

/// The fact's fields a list shows beyond its key.
struct Fact {
    third_party_id: String,
    amount: String,
}

impl Fact {
    fn of(body: Option<&[u8]>) -> Fact {
        let params = body.and_then(|body| Params::from_body(body).ok());
        let get = |name: &str| {
            params
                .as_ref()
                .and_then(|params| params.get(name))
                .map(shown)
                .unwrap_or_default()
        };
        let currency = get("currency");
        let amount = get("amount");
        Fact {
            third_party_id: get("third_party_id"),
            amount: if currency.is_empty() {
                amount
            } else {
                format!("{amount} {currency}")
            },
        }
    }
}

/// One state's entries on the list page.
pub(super) struct Section {
    pub(super) state: EntryState,
    pub(super) page: Page,
    pub(super) bodies: Vec<(EntryId, Vec<u8>)>,
}

/// What the list page shows.
pub(super) struct ListPage<'a> {
    pub(super) visit: &'a Visit,
    pub(super) counts: &'a [Count],
    pub(super) sections: &'a [Section],
    pub(super) one_state: bool,
    #[cfg(feature = "reconcile")]
    pub(super) flags: Option<Vec<super::flags::Row>>,
}

fn counts_table(visit: &Visit, counts: &[Count]) -> Markup {
    let mut kinds: Vec<_> = counts.iter().map(|count| count.kind).collect();
    kinds.sort();
    kinds.dedup();
    // The open states as the list page orders them, then the finished ones.
    let states: Vec<EntryState> = super::OPEN.into_iter().chain([EntryState::Done]).collect();
    html! {
        @if counts.is_empty() {
            p.note { "The inbox is empty." }
        } @else {
            table id="counts" {
                tr {
                    th { "kind" }
                    @for state in &states {
                        th { a href={ (visit.home()) "?state=" (state.name()) } { (state.name()) } }
                    }
                }
                @for kind in &kinds {
                    tr {
                        td { (kind.as_str()) }
                        @for &state in &states {
                            @let count = counts.iter().find(|count| count.kind == *kind && count.state == state);
                            td class=(state.name()) {
                                @match count {
                                    Some(count) => {
                                        (count.entries)
                                        span.note { " (oldest " (span(count.oldest)) ")" }
                                    }
                                    None => { "0" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn entries_table(visit: &Visit, section: &Section) -> Markup {
    let bodies: HashMap<EntryId, &[u8]> = section
        .bodies
        .iter()
        .map(|(id, body)| (*id, body.as_slice()))
        .collect();
    html! {
        table.entries id={ "entries-" (section.state.name()) } {
            tr {
                th { "entry" } th { "kind" } th { "pid" } th { "cid" } th { "status" }
                th { "third_party_id" } th { "amount" } th { "attempts" } th { "age" }
                th { "due in" } th { "from" } th { "last error" }
            }
            @for entry in &section.page.entries {
                @let fact = Fact::of(bodies.get(&entry.id).copied());
                tr id={ "entry-" (entry.id.0) } {
                    td { a href=(visit.entry(entry.id)) { (entry.id.0) } }
                    td { (entry.key.kind.as_str()) }
                    td { (entry.key.pid) }
                    td { (entry.key.cid) }
                    td { (entry.key.fact.code()) }
                    td { (fact.third_party_id) }
                    td { (fact.amount) }
                    td { (entry.attempts) }
                    td { (span(entry.age)) }
                    td { @if let Some(due_in) = entry.due_in { (span(due_in)) } }
                    td { (entry.origin.as_str()) }
                    td.error { (entry.last_error.as_deref().unwrap_or("")) }
                }
            }
        }
    }
}

/// The list page.
pub(super) fn list(page: &ListPage<'_>) -> Response {
    let visit = page.visit;
    let content = html! {
        h2 { "Entries by state" }
        (counts_table(visit, page.counts))
        @if page.one_state { p { a href=(visit.home()) { "Back to the open entries" } } }
        @for section in page.sections {
            h2 class=(section.state.name()) { (section.state.name()) " (" (section.page.entries.len()) ")" }
            @if section.page.entries.is_empty() {
                p.note { "None." }
            } @else {
                (entries_table(visit, section))
                @if let Some(next) = section.page.next {
                    p { a href={ (visit.home()) "?state=" (section.state.name()) "&after=" (next.0) } { "More " (section.state.name()) " entries" } }
                }
            }
        }
        @if let Some(rows) = reconciler_flags(page) {
            h2 { "Payouts the reconciler flagged" }
            (rows)
        }
    };
    respond(
        StatusCode::OK,
        &layout(INBOX, Some(&visit.operator), false, &content),
    )
}

#[cfg(feature = "reconcile")]
fn reconciler_flags(page: &ListPage<'_>) -> Option<Markup> {
    page.flags.as_ref().map(|rows| super::flags::table(rows))
}

#[cfg(not(feature = "reconcile"))]
fn reconciler_flags(_: &ListPage<'_>) -> Option<Markup> {
    None
}

/// One entry's page, with its forms.
pub(super) fn entry(
    visit: &Visit,
    entry: &EntrySummary,
    body: Option<&[u8]>,
    token: &str,
) -> Response {
    let state = entry.state;
    let content = html! {
        p { a href=(visit.home()) { "Back to the inbox" } }
        table id="summary" {
            tr { th { "state" } td.state class=(state.name()) id="state" { (state.name()) } }
            tr { th { "kind" } td { (entry.key.kind.as_str()) } }
            tr { th { "fact" } td { (entry.key.to_string()) } }
            tr { th { "attempts" } td { (entry.attempts) } }
            tr { th { "accepted" } td { (span(entry.age)) " ago" } }
            @if let Some(due_in) = entry.due_in { tr { th { "due in" } td { (span(due_in)) } } }
            tr { th { "from" } td { (entry.origin.as_str()) } }
            tr { th { "last error" } td.error id="last-error" { (entry.last_error.as_deref().unwrap_or("")) } }
        }
        h2 { "The callback" }
        @match body {
            Some(body) => {
                table id="body" {
                    @for (key, value) in fields(body) {
                        tr { th { (key) } td { (value) } }
                    }
                }
            }
            None => p.note { "This inbox does not keep the body readable." }
        }
        @if state == EntryState::Dead {
            form method="post" action={ (visit.entry(entry.id)) "/replay" } {
                input type="hidden" name="csrf" value=(token);
                button type="submit" id="replay" { "Replay: run the handler once more" }
            }
        }
        @if state != EntryState::Running {
            form method="post" action={ (visit.entry(entry.id)) "/discard" } {
                input type="hidden" name="csrf" value=(token);
                label { "Reason " input type="text" name="reason" id="reason" required; }
                " "
                button type="submit" id="discard" { "Discard" }
            }
        }
    };
    let title = format!("{} ({})", entry.id, state);
    let reload = matches!(state, EntryState::Pending | EntryState::Running);
    respond(
        StatusCode::OK,
        &layout(&title, Some(&visit.operator), reload, &content),
    )
}
