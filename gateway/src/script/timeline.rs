//! The script's timed items, handed out as time passes

use std::time::Duration;

use super::{Clock, Item, TimedItem, UnixTime};

/// One item that has come due
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Due<'a> {
    /// The item's offset from the start
    pub at: Duration,
    /// Market time (Unix seconds) at that offset: the default timestamp of what it pushes
    pub market_time: i64,
    /// Script line it came from
    pub line: usize,
    /// What to do
    pub item: &'a Item,
}

/// The timed items of a script in due order, with the market clock
///
/// Time is passed in: `elapsed` is how long the timeline has been running by the caller's
/// monotonic clock. Nothing here reads a clock. An `elapsed` smaller than an earlier one hands
/// out nothing new (items are never handed out twice).
///
/// ```
/// # use std::time::Duration;
/// # use longport_gateway::script::{Script, UnixTime};
/// let script = Script::parse(concat!(
///     r#"{"account": {"app_key": "k", "app_secret": "s", "member_id": 1, "quote_level": "LV1"}}"#, "\n",
///     r#"{"security": {"symbol": "700.HK"}}"#, "\n",
///     r#"{"push_quote": {"at": "1s", "symbol": "700.HK", "last_done": "388.4"}}"#, "\n",
/// )).unwrap();
/// let mut timeline = script.timeline(UnixTime(1_704_159_000));
/// assert!(timeline.poll(Duration::from_millis(999)).is_none());
/// assert_eq!(timeline.next_at(), Some(Duration::from_secs(1)));
/// let due = timeline.poll(Duration::from_secs(1)).unwrap();
/// assert_eq!(due.market_time, 1_704_159_001);
/// assert!(timeline.poll(Duration::from_secs(5)).is_none());
/// assert!(timeline.is_done());
/// ```
#[derive(Clone, Debug)]
pub struct Timeline {
    items: Vec<TimedItem>,
    next: usize,
    start: UnixTime,
    clock: Clock,
}

impl Timeline {
    /// A timeline over `items` (sorted here by offset, keeping the given order among equals)
    /// whose market time is `start` at offset 0 and runs at `clock.speed`
    pub fn new(mut items: Vec<TimedItem>, start: UnixTime, clock: Clock) -> Self {
        items.sort_by_key(|t| t.at);
        Timeline {
            items,
            next: 0,
            start,
            clock,
        }
    }

    /// The next item due at or before `elapsed`, or `None` when none is due yet
    ///
    /// Call it in a loop until `None` after each wake-up.
    pub fn poll(&mut self, elapsed: Duration) -> Option<Due<'_>> {
        let t = self.items.get(self.next)?;
        if t.at > elapsed {
            return None;
        }
        self.next += 1;
        Some(Due {
            at: t.at,
            market_time: self.clock.market_time(self.start, t.at),
            line: t.line,
            item: &t.item,
        })
    }

    /// Offset of the next item not yet handed out (when to wake up next)
    pub fn next_at(&self) -> Option<Duration> {
        self.items.get(self.next).map(|t| t.at)
    }

    /// Whether every item has been handed out
    pub fn is_done(&self) -> bool {
        self.next >= self.items.len()
    }

    /// Items not yet handed out
    pub fn remaining(&self) -> usize {
        self.items.len() - self.next
    }

    /// Market time (Unix seconds) at offset 0
    pub fn start(&self) -> UnixTime {
        self.start
    }

    /// Market time (Unix seconds) at `elapsed`
    pub fn market_time(&self, elapsed: Duration) -> i64 {
        self.clock.market_time(self.start, elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(at_ms: u64, line: usize) -> TimedItem {
        TimedItem {
            at: Duration::from_millis(at_ms),
            line,
            item: Item::Shutdown {
                reason: String::new(),
            },
        }
    }

    #[test]
    fn hands_out_items_in_order_once() {
        let mut t = Timeline::new(
            vec![item(2000, 1), item(500, 2), item(500, 3), item(1000, 4)],
            UnixTime(100),
            Clock::default(),
        );
        assert_eq!(t.next_at(), Some(Duration::from_millis(500)));
        assert!(t.poll(Duration::from_millis(499)).is_none());
        let lines: Vec<usize> =
            std::iter::from_fn(|| t.poll(Duration::from_millis(1000)).map(|d| d.line)).collect();
        assert_eq!(lines, [2, 3, 4], "equal offsets keep file order");
        assert_eq!(t.remaining(), 1);
        // time going backwards hands out nothing, and nothing twice
        assert!(t.poll(Duration::ZERO).is_none());
        let d = t.poll(Duration::from_secs(60)).unwrap();
        assert_eq!((d.line, d.market_time), (1, 102));
        assert!(t.poll(Duration::from_secs(60)).is_none());
        assert!(t.is_done());
        assert_eq!(t.next_at(), None);
    }

    #[test]
    fn market_time_follows_speed() {
        let clock = Clock {
            start: None,
            speed: 60.0,
        };
        let t = Timeline::new(Vec::new(), UnixTime(1_704_159_000), clock);
        assert_eq!(t.market_time(Duration::from_millis(1500)), 1_704_159_090);
        assert_eq!(t.start(), UnixTime(1_704_159_000));
        // never past the last time the SDK accepts
        let fast = Clock {
            start: None,
            speed: 1e6,
        };
        let t = Timeline::new(
            Vec::new(),
            UnixTime(super::super::value::MAX_UNIX - 10),
            fast,
        );
        assert_eq!(
            t.market_time(Duration::from_secs(3600)),
            super::super::value::MAX_UNIX
        );
    }
}
