//! News of accepted entries, so that an idle worker runs a new entry at once instead of at its
//! next poll.

use tokio::sync::watch;

/// Says that an inbox accepted a new entry, to every [`Arrivals`] subscribed to it: an
/// [`Inbox`](super::Inbox) backend keeps one, calls [`announce`](Announcer::announce) after
/// each new entry is committed, and hands out [`subscribe`](Announcer::subscribe)rs from
/// [`Inbox::arrivals`](super::Inbox::arrivals).
///
/// # Example
///
/// ```
/// use cregis_payout_callback::inbox::backend::Announcer;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
/// let announcer = Announcer::new();
/// let mut arrivals = announcer.subscribe();
/// announcer.announce(); // an entry was committed
/// arrivals.next().await; // a worker wakes
/// # });
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Announcer {
    sender: std::sync::Arc<watch::Sender<()>>,
}

impl Announcer {
    /// An announcer no one listens to yet.
    ///
    /// # Example
    ///
    /// See [`Announcer`].
    pub fn new() -> Announcer {
        Announcer {
            sender: std::sync::Arc::new(watch::Sender::new(())),
        }
    }

    /// Wakes every subscriber (once, however many announcements it missed while busy).
    ///
    /// # Example
    ///
    /// See [`Announcer`].
    pub fn announce(&self) {
        self.sender.send_replace(());
    }

    /// News from now on.
    ///
    /// # Example
    ///
    /// See [`Announcer`].
    pub fn subscribe(&self) -> Arrivals {
        Arrivals {
            receiver: Some(self.sender.subscribe()),
        }
    }
}

impl Default for Announcer {
    fn default() -> Announcer {
        Announcer::new()
    }
}

/// News that an inbox accepted new entries, for a [`Worker`](super::Worker) waiting between
/// polls: from [`Inbox::arrivals`](super::Inbox::arrivals). An inbox that cannot tell gives
/// [`Arrivals::none`], and its workers find new entries at their next poll.
///
/// # Example
///
/// See [`Announcer`].
#[derive(Debug)]
pub struct Arrivals {
    receiver: Option<watch::Receiver<()>>,
}

impl Arrivals {
    /// No news ever: [`next`](Arrivals::next) never completes.
    ///
    /// # Example
    ///
    /// ```
    /// use cregis_payout_callback::inbox::backend::Arrivals;
    ///
    /// let arrivals = Arrivals::none();
    /// # drop(arrivals);
    /// ```
    pub fn none() -> Arrivals {
        Arrivals { receiver: None }
    }

    /// Completes once an entry was announced since the last call (or since this was
    /// subscribed); never, if the announcer is gone.
    ///
    /// # Example
    ///
    /// See [`Announcer`].
    pub async fn next(&mut self) {
        let Some(receiver) = &mut self.receiver else {
            return std::future::pending().await;
        };
        if receiver.changed().await.is_err() {
            self.receiver = None;
            std::future::pending::<()>().await;
        }
    }
}
