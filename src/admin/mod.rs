//! The operator console (feature `admin`): an axum [`Router`] the host mounts, showing what
//! the [inbox](crate::inbox) holds and letting an operator replay or discard an entry.
//!
//! Server-rendered HTML, with no script, no build step and nothing fetched from elsewhere: it
//! works on a machine with no internet. Its pages:
//!
//! - **The list** (`/`): entries by kind and state, with the oldest of each; the dead,
//!   running, waiting and pending entries with their fact (`pid`, `cid`, `status`,
//!   `third_party_id`, amount and currency), attempts, age and last error; and, when the
//!   console has [`Flags`] (feature `reconcile`), the payouts the reconciler flagged or held.
//!   `?state=done` (or any state) lists one state, page after page.
//! - **An entry** (`/entries/{id}`): the same, with every field of its body but `sign`, and
//!   the forms that replay it (when it is dead) or discard it for a reason (when it is not
//!   running). The page of a pending or running entry reloads itself every 2 seconds.
//!
//! # Safe by construction
//!
//! - [`Console::new`] takes the host's authorisation check, a closure over each request
//!   that answers an [`Access`]. There is no other way to build the console, so a forgotten
//!   middleware fails closed: every request, a mistyped path included, is refused 401 or 403
//!   unless the closure names an operator. Put the host's authentication in front as usual
//!   (it can leave the user in the request's extensions for the closure to read).
//! - A form post changes something only with the console's CSRF token (a random value made
//!   with the console, in each form, compared in constant time) *and* from the console's own
//!   origin (`Sec-Fetch-Site: same-origin`, or, from a browser that does not send it, an
//!   `Origin` whose host is the request's `Host`). Anything else is 403 and changes nothing.
//! - Every value shown is escaped: the last error, `remark` and `memo` come from outside,
//!   and a `<script>` in a memo shows as text. The pages also forbid scripts, frames and
//!   outside forms by `Content-Security-Policy`, and are never cached.
//! - Nothing secret is shown: the console has no key, and leaves out each body's `sign`.
//!
//! Replays and discards are counted (`cregis_inbox_operator_total`, feature `metrics`) and
//! logged (feature `tracing`) by the inbox, with the operator's name in the discard's reason.
//!
//! # Example
//!
//! ```no_run
//! # async fn doc() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use axum::Router;
//! use cregis_payout_callback::admin::{Access, Console};
//! use cregis_payout_callback::inbox::SqliteInbox;
//!
//! /// What the host's own authentication middleware leaves in each request it lets in.
//! #[derive(Clone)]
//! struct Staff {
//!     name: String,
//!     on_call: bool,
//! }
//!
//! let inbox = SqliteInbox::open("inbox.db").await?; // once per process
//! // A clone of the inbox the route and the worker use, not a second `open` of the file: its
//! // replays and discards then take their turn with the accepts.
//! let console = Console::new(inbox.clone(), |request| match request.extensions.get::<Staff>() {
//!     Some(staff) if staff.on_call => Access::operator(&staff.name),
//!     Some(_) => Access::forbidden(),
//!     None => Access::unauthenticated(), // the middleware is missing: nobody gets in
//! });
//! let app: Router = Router::new().nest("/ops/cregis", console.router());
//! // .layer(your_authentication_layer), then serve `app` as usual.
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "reconcile")]
mod flags;
mod pages;

use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, NestedPath, Path, Query, Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use subtle::ConstantTimeEq;

#[cfg(feature = "reconcile")]
pub use flags::Flags;

use crate::inbox::{EntryId, EntryState, Inbox, Listing};

/// What the host's authorisation check says of one request to the [`Console`].
///
/// # Example
///
/// ```
/// use axum::http::request::Parts;
/// use cregis_payout_callback::admin::Access;
///
/// fn check(request: &Parts) -> Access {
///     match request.headers.get("x-staff").and_then(|name| name.to_str().ok()) {
///         Some("alice") => Access::operator("alice"),
///         Some(_) => Access::forbidden(),
///         None => Access::unauthenticated(),
///     }
/// }
/// # let _ = check;
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Access(Decision);

#[derive(Clone, PartialEq, Eq)]
enum Decision {
    Operator(String),
    Unauthenticated(Option<HeaderValue>),
    Forbidden,
}

impl Access {
    /// Let in the operator called `name` (shown on each page, and kept in the reason of each
    /// discard they make).
    ///
    /// # Example
    ///
    /// See [`Access`].
    pub fn operator(name: impl Into<String>) -> Access {
        Access(Decision::Operator(name.into()))
    }

    /// 401: the request says who it is from not at all, or not convincingly.
    ///
    /// # Example
    ///
    /// See [`Access`].
    pub fn unauthenticated() -> Access {
        Access(Decision::Unauthenticated(None))
    }

    /// 401 with a `WWW-Authenticate` challenge (`Basic realm="ops"`, say), for a browser to
    /// ask for credentials.
    ///
    /// # Example
    ///
    /// ```
    /// use axum::http::HeaderValue;
    /// use cregis_payout_callback::admin::Access;
    ///
    /// let access = Access::challenge(HeaderValue::from_static(r#"Basic realm="ops""#));
    /// # let _ = access;
    /// ```
    pub fn challenge(www_authenticate: HeaderValue) -> Access {
        Access(Decision::Unauthenticated(Some(www_authenticate)))
    }

    /// 403: the request is from someone not allowed to operate the inbox.
    ///
    /// # Example
    ///
    /// See [`Access`].
    pub fn forbidden() -> Access {
        Access(Decision::Forbidden)
    }
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Decision::Operator(name) => f.debug_tuple("Operator").field(name).finish(),
            Decision::Unauthenticated(_) => f.write_str("Unauthenticated"),
            Decision::Forbidden => f.write_str("Forbidden"),
        }
    }
}

type Authorise = dyn Fn(&Parts) -> Access + Send + Sync;

/// The operator console of one inbox: build it with the host's authorisation check, then
/// mount its [`router`](Console::router). See the [module docs](self).
///
/// # Example
///
/// See the [module docs](self).
pub struct Console<I> {
    inbox: I,
    authorise: Arc<Authorise>,
    #[cfg(feature = "reconcile")]
    flags: Option<Flags>,
}

impl<I> fmt::Debug for Console<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

impl<I: Inbox> Console<I> {
    /// The console of `inbox`, letting in the requests `authorise` names an operator for
    /// (it sees each request's method, URI, headers and extensions, before anything else
    /// runs).
    ///
    /// # Example
    ///
    /// See the [module docs](self).
    pub fn new<F>(inbox: I, authorise: F) -> Console<I>
    where
        F: Fn(&Parts) -> Access + Send + Sync + 'static,
    {
        Console {
            inbox,
            authorise: Arc::new(authorise),
            #[cfg(feature = "reconcile")]
            flags: None,
        }
    }

    /// Also lists what the reconciler flagged or held, as `flags` records it.
    ///
    /// # Example
    ///
    /// See [`Flags`].
    #[cfg(feature = "reconcile")]
    #[must_use]
    pub fn flags(mut self, flags: Flags) -> Console<I> {
        self.flags = Some(flags);
        self
    }

    /// The console's routes, to [`nest`](Router::nest) where the host wants them (its links
    /// follow the mount point) or to serve alone.
    ///
    /// # Errors
    ///
    /// Never fails to build: every failure is a page (`404` for an entry that is not there,
    /// `409` for a replay of one that is not dead, `500` with the inbox's error).
    ///
    /// # Example
    ///
    /// See the [module docs](self).
    ///
    /// # Panics
    ///
    /// If the operating system has no random numbers for the CSRF token.
    pub fn router<S>(self) -> Router<S> {
        let mut token = [0_u8; 32];
        getrandom::fill(&mut token).expect("random numbers for the console's CSRF token");
        let shared = Arc::new(Shared {
            inbox: self.inbox,
            authorise: self.authorise,
            token: hex::encode(token),
            #[cfg(feature = "reconcile")]
            flags: self.flags,
        });
        Router::new()
            .route("/", get(list::<I>))
            .route("/entries/{id}", get(entry::<I>))
            .route("/entries/{id}/replay", post(replay::<I>))
            .route("/entries/{id}/discard", post(discard::<I>))
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(
                Arc::clone(&shared),
                guard::<I>,
            ))
            .with_state(shared)
    }
}

struct Shared<I> {
    inbox: I,
    authorise: Arc<Authorise>,
    token: String,
    #[cfg(feature = "reconcile")]
    flags: Option<Flags>,
}

/// Who is asking, and where the console is mounted: what the guard leaves for the pages.
#[derive(Clone)]
struct Visit {
    operator: String,
    base: String,
}

impl Visit {
    /// The list page's address.
    fn home(&self) -> String {
        if self.base.is_empty() {
            "/".to_owned()
        } else {
            self.base.clone()
        }
    }

    /// An entry's page address.
    fn entry(&self, id: EntryId) -> String {
        format!("{}/entries/{}", self.base, id.0)
    }
}

/// Every request passes here first: the host's check, then (for a form post) the origin.
async fn guard<I>(State(shared): State<Arc<Shared<I>>>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let mut response = match (shared.authorise)(&parts).0 {
        Decision::Operator(operator) => {
            if parts.method != Method::GET
                && parts.method != Method::HEAD
                && !same_origin(&parts.headers)
            {
                pages::refusal(
                    StatusCode::FORBIDDEN,
                    "Refused: this form was not sent from the console's own page.",
                )
            } else {
                let base = parts
                    .extensions
                    .get::<NestedPath>()
                    .map(|path| path.as_str().trim_end_matches('/').to_owned())
                    .unwrap_or_default();
                parts.extensions.insert(Visit { operator, base });
                next.run(Request::from_parts(parts, body)).await
            }
        }
        Decision::Unauthenticated(challenge) => {
            let mut refused = pages::refusal(StatusCode::UNAUTHORIZED, "Sign in to see the inbox.");
            if let Some(challenge) = challenge {
                refused
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, challenge);
            }
            refused
        }
        Decision::Forbidden => pages::refusal(
            StatusCode::FORBIDDEN,
            "You are signed in, but not allowed to operate the inbox.",
        ),
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// Whether a request comes from a page of the console's own origin: the browser's
/// `Sec-Fetch-Site` says so, or (from a browser without it) `Origin` names the request's
/// `Host`. Neither header: refused.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return site == "same-origin";
    }
    let (Some(origin), Some(host)) = (headers.get(header::ORIGIN), headers.get(header::HOST))
    else {
        return false;
    };
    origin
        .to_str()
        .ok()
        .and_then(|origin| origin.split_once("://"))
        .is_some_and(|(_, authority)| authority.as_bytes() == host.as_bytes())
}

async fn not_found() -> Response {
    pages::refusal(
        StatusCode::NOT_FOUND,
        "There is no such page in the console.",
    )
}

/// The list page's query: one state, page after page.
#[derive(Debug, Deserialize)]
struct ListQuery {
    state: Option<String>,
    after: Option<i64>,
}

/// The states the list page shows when it is not asked for one: those a person acts on.
const OPEN: [EntryState; 4] = [
    EntryState::Dead,
    EntryState::Running,
    EntryState::Waiting,
    EntryState::Pending,
];

/// The entries shown per state on the list page.
const PER_STATE: usize = 100;

async fn list<I: Inbox>(
    State(shared): State<Arc<Shared<I>>>,
    axum::Extension(visit): axum::Extension<Visit>,
    Query(query): Query<ListQuery>,
) -> Response {
    let asked = match query.state.as_deref().map(pages::state_named) {
        None => None,
        Some(Some(state)) => Some(state),
        Some(None) => {
            return pages::refusal(
                StatusCode::BAD_REQUEST,
                "No such state: pick pending, running, waiting, done or dead.",
            );
        }
    };
    let result = async {
        let counts = shared.inbox.counts().await?;
        let mut sections = Vec::new();
        let states = asked.map_or(OPEN.to_vec(), |state| vec![state]);
        for state in states {
            let mut listing = Listing::new(&[state]).limit(PER_STATE);
            if let (Some(after), Some(_)) = (query.after, asked) {
                listing = listing.after(EntryId(after));
            }
            let page = shared.inbox.page(&listing).await?;
            let ids: Vec<EntryId> = page.entries.iter().map(|entry| entry.id).collect();
            let bodies = shared.inbox.bodies(&ids).await?;
            sections.push(pages::Section {
                state,
                page,
                bodies,
            });
        }
        Ok::<_, crate::error::BoxError>((counts, sections))
    }
    .await;
    match result {
        Ok((counts, sections)) => pages::list(&pages::ListPage {
            visit: &visit,
            counts: &counts,
            sections: &sections,
            one_state: asked.is_some(),
            #[cfg(feature = "reconcile")]
            flags: shared.flags.as_ref().map(Flags::rows),
        }),
        Err(error) => pages::failed(&error),
    }
}

async fn entry<I: Inbox>(
    State(shared): State<Arc<Shared<I>>>,
    axum::Extension(visit): axum::Extension<Visit>,
    Path(id): Path<i64>,
) -> Response {
    let id = EntryId(id);
    let found = async {
        let Some(summary) = shared.inbox.entry(id).await? else {
            return Ok(None);
        };
        let body = shared
            .inbox
            .bodies(&[id])
            .await?
            .into_iter()
            .next()
            .map(|(_, body)| body);
        Ok::<_, crate::error::BoxError>(Some((summary, body)))
    }
    .await;
    match found {
        Ok(Some((summary, body))) => pages::entry(&visit, &summary, body.as_deref(), &shared.token),
        Ok(None) => pages::refusal(
            StatusCode::NOT_FOUND,
            &format!("There is no {id}: it was discarded, or pruned once done."),
        ),
        Err(error) => pages::failed(&error),
    }
}

/// What the console's forms post.
#[derive(Deserialize)]
struct Action {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

impl<I> Shared<I> {
    /// Whether `action` carries this console's CSRF token.
    fn carries_token(&self, action: &Action) -> bool {
        bool::from(action.csrf.as_bytes().ct_eq(self.token.as_bytes()))
    }
}

fn no_token() -> Response {
    pages::refusal(
        StatusCode::FORBIDDEN,
        "Refused: the form did not carry the console's token. Reload the page and try again.",
    )
}

async fn replay<I: Inbox>(
    State(shared): State<Arc<Shared<I>>>,
    axum::Extension(visit): axum::Extension<Visit>,
    Path(id): Path<i64>,
    Form(action): Form<Action>,
) -> Response {
    if !shared.carries_token(&action) {
        return no_token();
    }
    let id = EntryId(id);
    match shared.inbox.replay(id).await {
        Ok(true) => Redirect::to(&visit.entry(id)).into_response(),
        Ok(false) => pages::refusal(
            StatusCode::CONFLICT,
            &format!("Nothing replayed: {id} is not dead (or not there)."),
        ),
        Err(error) => pages::failed(&error),
    }
}

async fn discard<I: Inbox>(
    State(shared): State<Arc<Shared<I>>>,
    axum::Extension(visit): axum::Extension<Visit>,
    Path(id): Path<i64>,
    Form(action): Form<Action>,
) -> Response {
    if !shared.carries_token(&action) {
        return no_token();
    }
    let reason = action.reason.trim();
    if reason.is_empty() {
        return pages::refusal(StatusCode::BAD_REQUEST, "Nothing discarded: say why.");
    }
    let id = EntryId(id);
    let reason = format!("{reason} (by {} in the console)", visit.operator);
    match shared.inbox.discard(id, &reason).await {
        Ok(true) => Redirect::to(&visit.home()).into_response(),
        Ok(false) => pages::refusal(
            StatusCode::CONFLICT,
            &format!("Nothing discarded: {id} is running (or not there)."),
        ),
        Err(error) => pages::failed(&error),
    }
}
