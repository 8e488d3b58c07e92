//! The bounded way items leave a driver task: a bounded channel plus a small backlog
//!
//! A task never waits on the consumer while it has other work: an item that does not fit the
//! channel goes to the backlog, and while the backlog is not empty the task stops reading its
//! sockets (so no more application data arrives) but keeps running timers and commands. When the
//! backlog reaches its own bound the task waits for the consumer before doing anything else.
//! Memory stays bounded by the channel capacity plus the backlog bound.

use std::collections::VecDeque;

use tokio::sync::mpsc;

/// Items a backlog holds at most, beyond the channel
pub(crate) const BACKLOG: usize = 64;

pub(crate) struct Outlet<T> {
    tx: mpsc::Sender<T>,
    backlog: VecDeque<T>,
    gone: bool,
    dropped: u64,
}

impl<T> Outlet<T> {
    pub(crate) fn new(tx: mpsc::Sender<T>) -> Self {
        Outlet {
            tx,
            backlog: VecDeque::new(),
            gone: false,
            dropped: 0,
        }
    }

    /// Hand an item out, or keep it in the backlog
    pub(crate) fn push(&mut self, item: T) {
        if self.gone {
            self.dropped += 1;
            return;
        }
        if self.backlog.is_empty() {
            match self.tx.try_send(item) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(item)) => self.backlog.push_back(item),
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    // nobody listens: items are dropped from now on
                    self.gone = true;
                    self.dropped += 1;
                }
            }
        } else {
            self.backlog.push_back(item);
        }
    }

    /// The consumer is behind: stop reading sockets
    pub(crate) fn congested(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// The backlog is full: wait for the consumer before anything else
    pub(crate) fn saturated(&self) -> bool {
        self.backlog.len() >= BACKLOG
    }

    /// Items dropped because the consumer went away
    #[allow(dead_code)]
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Wait until the channel takes the oldest backlog item (cancel-safe: nothing is lost when
    /// the future is dropped); call only while [`Outlet::congested`]
    pub(crate) async fn deliver(&mut self) {
        match self.tx.reserve().await {
            Ok(permit) => {
                if let Some(item) = self.backlog.pop_front() {
                    permit.send(item);
                }
            }
            Err(_) => {
                self.gone = true;
                self.dropped += self.backlog.len() as u64;
                self.backlog.clear();
            }
        }
    }
}
