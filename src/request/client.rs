//! The host's HTTP client, behind a small trait, and the calls made through it.

use std::fmt::Display;
use std::future::Future;

use super::{CreatePayout, CreateWithdrawal, Created, PayoutState, QueryPayout, QueryWithdrawal};
use super::{Request, RequestError, Signer};
use crate::CallbackKind;
use crate::error::{BoxError, Cause};

/// An HTTP answer, as the host's client read it.
///
/// # Example
///
/// See [`Created`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    /// The HTTP status.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

/// What sends a request: `POST` a JSON `body` to the project's base URL followed by `path`,
/// and return the answer. Implement it with your own HTTP client (`examples/reconcile.rs`
/// does with `reqwest`: timeouts on connect and on the whole request, and no redirects, which
/// would send a signed body somewhere else), or pass a closure
/// `|path: &'static str, body: String| async move { .. }`.
///
/// # Example
///
/// ```
/// use cregis_payout_callback::request::{RawResponse, Transport};
///
/// // A transport that answers every request with the same error, as a test double.
/// let down = |_path: &'static str, _body: String| async {
///     Ok::<_, std::io::Error>(RawResponse { status: 503, body: String::new() })
/// };
/// # fn is_transport(_: &impl Transport) {}
/// is_transport(&down);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a transport",
    note = "a transport is a type implementing `Transport`, or a closure \
            `|path: &'static str, body: String| async move {{ .. }}` returning \
            `Result<RawResponse, E>` whose future is `Send`"
)]
pub trait Transport: Send + Sync {
    /// Why the request could not be sent or its answer read.
    type Error: Display + Into<BoxError>;

    /// POSTs `body` to `path`.
    fn post(
        &self,
        path: &'static str,
        body: String,
    ) -> impl Future<Output = Result<RawResponse, Self::Error>> + Send;
}

/// A transport's error that happened before any of the request was sent (a name that did
/// not resolve, a connection refused, a failed TLS handshake): wrapped in it, the error comes
/// back as [`RequestError::Transport`], safe to send again. Any other transport error is
/// [`RequestError::MaybeSent`]: the request may have reached Cregis.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// use cregis_payout_callback::ApiKey;
/// use cregis_payout_callback::request::{Client, CreatePayout, NotSent, RequestError, Signer, RawResponse};
///
/// let requests = Signer::new(ApiKey::new("fake-api-key-for-docs")?, 1382528827416576);
/// let refused = Client::new(requests.clone(), |_: &'static str, _: String| async {
///     Err::<RawResponse, _>(NotSent::new("connection refused"))
/// });
/// let timed_out = Client::new(requests, |_: &'static str, _: String| async {
///     Err::<RawResponse, _>(std::io::Error::from(std::io::ErrorKind::TimedOut))
/// });
/// let order = CreatePayout::new("195@195", "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS", "1.1", "order-42");
/// let error = refused.create_payout(&order).await.unwrap_err();
/// assert!(matches!(error, RequestError::Transport { .. }));
/// let error = timed_out.create_payout(&order).await.unwrap_err();
/// assert!(matches!(error, RequestError::MaybeSent { .. }));
/// assert!(error.may_have_reached_cregis());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct NotSent(BoxError);

impl NotSent {
    /// Marks `error` as having happened before the request was sent.
    ///
    /// # Example
    ///
    /// See [`NotSent`].
    pub fn new(error: impl Into<BoxError>) -> NotSent {
        NotSent(error.into())
    }
}

impl Display for NotSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Display::fmt(&self.0, f)
    }
}

impl std::error::Error for NotSent {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// Every closure `Fn(&'static str, String) -> impl Future<Output = Result<RawResponse, E>>`
/// whose future is `Send` is a transport.
impl<F, Fut, E> Transport for F
where
    F: Fn(&'static str, String) -> Fut + Send + Sync,
    Fut: Future<Output = Result<RawResponse, E>> + Send,
    E: Display + Into<BoxError>,
{
    type Error = E;

    fn post(
        &self,
        path: &'static str,
        body: String,
    ) -> impl Future<Output = Result<RawResponse, E>> + Send {
        self(path, body)
    }
}

/// The Cregis API through the host's [`Transport`]: signs each request, sends it, reads the
/// answer.
///
/// # Example
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// use cregis_payout_callback::{ApiKey, CallbackKind, CallbackStatus};
/// use cregis_payout_callback::request::{Client, CreatePayout, Signer, RawResponse};
///
/// let requests = Signer::new(ApiKey::new("fake-api-key-for-docs")?, 1382528827416576);
/// // In production: your HTTP client POSTing to https://<your project's API host> + path.
/// let transport = |path: &'static str, _body: String| async move {
///     let body = match path {
///         "/api/v1/payout" => r#"{"code":"00000","msg":"ok","data":{"cid":1391751691788288}}"#,
///         _ => r#"{"code":"00000","msg":"ok","data":{"pid":1382528827416576,"chain_id":"195",
///               "token_id":"195","currency":"TRX","address":"TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS",
///               "amount":"1.1","status":6,"third_party_id":"order-42","txid":"6dd05b09",
///               "block_height":"34527604","block_time":1686814482000}}"#,
///     };
///     Ok::<_, std::io::Error>(RawResponse { status: 200, body: body.to_owned() })
/// };
/// let cregis = Client::new(requests, transport);
/// let order = CreatePayout::new("195@195", "TXsmKpEuW7qWnXzJLGP9eDLvWPR2GRn1FS", "1.1", "order-42");
/// let cid = cregis.create_payout(&order).await?.cid;
/// let state = cregis.query(CallbackKind::Payout, cid).await?;
/// assert_eq!(state.status, CallbackStatus::TransactionSuccessful);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Client<T> {
    requests: Signer,
    transport: T,
}

impl<T: Transport> Client<T> {
    /// Sends `requests`' requests through `transport`.
    ///
    /// # Example
    ///
    /// See [`Client`].
    pub fn new(requests: Signer, transport: T) -> Client<T> {
        Client {
            requests,
            transport,
        }
    }

    /// The signer.
    ///
    /// # Example
    ///
    /// See [`Signer::pid`].
    pub fn signer(&self) -> &Signer {
        &self.requests
    }

    /// Signs and sends `request`, and returns the answer as read.
    ///
    /// # Example
    ///
    /// See [`Client`].
    ///
    /// # Errors
    ///
    /// [`RequestError::Transport`]: the transport failed before sending ([`NotSent`]);
    /// [`RequestError::MaybeSent`]: it failed otherwise, and Cregis may have the request.
    pub async fn send(&self, request: &impl Request) -> Result<RawResponse, RequestError> {
        let signed = self.requests.sign(request);
        let path = signed.path();
        self.transport
            .post(path, signed.into_body())
            .await
            .map_err(|error| {
                let error: BoxError = error.into();
                if error.is::<NotSent>() {
                    RequestError::Transport {
                        cause: Cause::new(error),
                    }
                } else {
                    RequestError::MaybeSent {
                        cause: Cause::new(error),
                    }
                }
            })
    }

    /// Creates a wallet payout; its `cid` is in the answer.
    ///
    /// # Example
    ///
    /// See [`Client`].
    ///
    /// # Errors
    ///
    /// What [`send`](Self::send) and [`Created::from_response`] return.
    pub async fn create_payout(&self, order: &CreatePayout) -> Result<Created, RequestError> {
        Created::from_response(&self.send(order).await?)
    }

    /// Creates a sub-address payout; its `cid` is in the answer.
    ///
    /// # Example
    ///
    /// See [`Client`].
    ///
    /// # Errors
    ///
    /// What [`send`](Self::send) and [`Created::from_response`] return.
    pub async fn create_withdrawal(
        &self,
        order: &CreateWithdrawal,
    ) -> Result<Created, RequestError> {
        Created::from_response(&self.send(order).await?)
    }

    /// Asks what became of the payout `cid` of `kind` (a wallet payout or a sub-address one).
    ///
    /// # Example
    ///
    /// See [`Client`].
    ///
    /// # Errors
    ///
    /// What [`send`](Self::send) and [`PayoutState::from_response`] return;
    /// [`RequestError::NoQuery`] for [`CallbackKind::Approval`], which has no query (nothing
    /// is sent).
    pub async fn query(&self, kind: CallbackKind, cid: i64) -> Result<PayoutState, RequestError> {
        let response = match kind {
            CallbackKind::Payout => self.send(&QueryPayout { cid }).await?,
            CallbackKind::Withdrawal => self.send(&QueryWithdrawal { cid }).await?,
            _ => return Err(RequestError::NoQuery { kind }),
        };
        PayoutState::from_response(kind, cid, &response)
    }
}
