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

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn items_beyond_the_channel_wait_in_order_and_the_backlog_has_a_bound() {
        let (tx, mut rx) = mpsc::channel(2);
        let mut o = Outlet::new(tx);
        o.push(1);
        o.push(2);
        assert!(!o.congested(), "the channel held both");
        o.push(3);
        assert!(o.congested());
        for i in 4..(3 + BACKLOG as i32 - 1) {
            o.push(i);
            assert!(!o.saturated(), "{i}");
        }
        o.push(100);
        assert!(o.saturated(), "{BACKLOG} items in the backlog");
        // the consumer reads: the backlog goes out in order, one item per delivery
        assert_eq!(rx.try_recv(), Ok(1));
        runtime().block_on(o.deliver());
        assert!(!o.saturated());
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Ok(3));
        assert_eq!(rx.try_recv().ok(), None);
        // an item pushed while others wait goes behind them, even with room in the channel
        o.push(200);
        runtime().block_on(o.deliver());
        assert_eq!(rx.try_recv(), Ok(4));
        let mut rest = Vec::new();
        while o.congested() {
            runtime().block_on(o.deliver());
            rest.push(rx.try_recv().unwrap());
        }
        let want: Vec<i32> = (5..(3 + BACKLOG as i32 - 1)).chain([100, 200]).collect();
        assert_eq!(rest, want);
        assert_eq!(o.dropped(), 0);
    }

    #[test]
    fn items_for_a_consumer_that_went_away_are_dropped_and_counted() {
        let (tx, rx) = mpsc::channel(1);
        let mut o = Outlet::new(tx);
        o.push(1);
        o.push(2);
        o.push(3);
        assert!(o.congested());
        drop(rx);
        // the delivery finds the consumer gone: the backlog is dropped
        runtime().block_on(o.deliver());
        assert!(!o.congested());
        assert_eq!(o.dropped(), 2);
        o.push(4);
        assert_eq!(o.dropped(), 3);
        assert!(!o.congested());
        // found by a push too
        let (tx, rx) = mpsc::channel(1);
        let mut o = Outlet::new(tx);
        drop(rx);
        o.push(1);
        o.push(2);
        assert_eq!(o.dropped(), 2);
        assert!(!o.congested());
    }
}
