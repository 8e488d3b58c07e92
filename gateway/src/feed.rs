//! From due timeline items to what each connection gets
//!
//! The socket layer's loop: for every item the [`Timeline`](crate::script::Timeline) hands
//! out, [`Market::step`] applies it to the market state and returns a [`Step`]; for every live
//! connection, [`Step::push_for`] gives the push to send it, and [`Step::targets`] says whether a
//! close, drop or shutdown applies to it.
//!
//! ```
//! # use std::time::Duration;
//! # use longport_gateway::{feed::Step, market::Market, script::{Script, SocketKind, UnixTime}, session::ConnState};
//! # let script = Script::parse(include_str!("../scripts/trading-day.jsonl")).unwrap();
//! let mut timeline = script.timeline(UnixTime(0));
//! let mut market = Market::new(&script, timeline.start());
//! let conns = vec![ConnState::new(SocketKind::Quote, script.accounts[0].clone())];
//! while let Some(due) = timeline.poll(Duration::from_secs(60)) {
//!     let step = market.step(&due);
//!     for conn in &conns {
//!         if let Some(push) = step.push_for(conn) {
//!             // send push.cmd / push.body on this connection
//! #           let _ = push;
//!         } else if step.targets(conn) {
//!             // Step::Close: push Close{code, reason} and close; Step::Drop: drop the socket
//! #           assert!(matches!(step, Step::Close { .. }));
//!         }
//!     }
//! }
//! ```

use crate::market::{Market, QuoteUpdate};
use crate::reply::Push;
use crate::script::{Due, Item, OrderPush, Target};
use crate::session::ConnState;

/// What one due timeline item means for the connections
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Step {
    /// A quote changed: push it to the connections subscribed to it
    Quote(QuoteUpdate),
    /// An order changed: push it to its account's subscribed trade connections
    Order {
        /// The order
        order: Box<OrderPush>,
        /// Market time of the item (default for the order's timestamps)
        market_time: i64,
    },
    /// Push `Close { code, reason }` to the targeted connections and close them (their
    /// sessions stay valid)
    Close {
        /// Connections
        target: Target,
        /// `Close.Code`
        code: u8,
        /// Reason
        reason: String,
    },
    /// Drop the targeted connections' sockets without any Close
    Drop {
        /// Connections
        target: Target,
    },
    /// Close every connection with `ServerShutdown` and stop
    Shutdown {
        /// Reason
        reason: String,
    },
    /// Nothing to do (a quote push for a symbol the market does not know)
    Nothing,
}

impl Step {
    /// The push `conn` gets from this step, if any
    pub fn push_for(&self, conn: &ConnState) -> Option<Push> {
        match self {
            Step::Quote(u) => conn.quote_push(u),
            Step::Order { order, market_time } => conn.order_push(order, *market_time),
            _ => None,
        }
    }

    /// Whether this step's close, drop or shutdown applies to `conn` (false for pushes)
    pub fn targets(&self, conn: &ConnState) -> bool {
        match self {
            Step::Close { target, .. } | Step::Drop { target } => {
                target.matches(conn.kind(), &conn.account().app_key)
            }
            Step::Shutdown { .. } => true,
            Step::Quote(_) | Step::Order { .. } | Step::Nothing => false,
        }
    }
}

impl Market {
    /// Apply one due item to the market and say what it means for the connections
    pub fn step(&mut self, due: &Due<'_>) -> Step {
        match due.item {
            Item::Quote(q) => self
                .apply_quote(q, due.market_time)
                .map_or(Step::Nothing, Step::Quote),
            Item::Order(o) => Step::Order {
                order: o.clone(),
                market_time: due.market_time,
            },
            Item::Close {
                target,
                code,
                reason,
            } => Step::Close {
                target: target.clone(),
                code: *code,
                reason: reason.clone(),
            },
            Item::Drop { target } => Step::Drop {
                target: target.clone(),
            },
            Item::Shutdown { reason } => Step::Shutdown {
                reason: reason.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use longport_proto::quote::{PushQuote, SubType, SubscribeRequest};
    use longport_proto::trade::{Notification, Sub};
    use prost::Message as _;

    use super::*;
    use crate::quote::CMD_SUBSCRIBE;
    use crate::script::{Script, SocketKind, UnixTime};
    use crate::trade::CMD_SUB;

    /// The example trading day, run through with a quote and a trade connection
    #[test]
    fn the_example_day_per_connection() {
        let script = Script::parse(include_str!("../scripts/trading-day.jsonl")).unwrap();
        let mut timeline = script.timeline(UnixTime(0));
        let mut market = Market::new(&script, timeline.start());
        let account = Arc::clone(&script.accounts[0]);
        let mut quote = ConnState::new(SocketKind::Quote, Arc::clone(&account));
        let mut trade = ConnState::new(SocketKind::Trade, Arc::clone(&account));
        let sub = SubscribeRequest {
            symbol: vec!["700.HK".into()],
            sub_type: vec![SubType::Quote as i32],
            is_first_push: true,
        };
        assert_eq!(
            quote
                .handle(CMD_SUBSCRIBE, &sub.encode_to_vec(), &market)
                .status,
            0
        );
        let topics = Sub {
            topics: vec!["private".into()],
        };
        assert_eq!(
            trade
                .handle(CMD_SUB, &topics.encode_to_vec(), &market)
                .status,
            0
        );

        let mut quotes = Vec::new();
        let mut orders = Vec::new();
        let mut events = Vec::new();
        // wake up once a (wall) second, as a driver would
        for s in 0..=400u64 {
            while let Some(due) = timeline.poll(Duration::from_secs(s)) {
                let at = due.at.as_secs();
                let step = market.step(&due);
                if let Some(p) = step.push_for(&quote) {
                    let q = PushQuote::decode(p.body.as_slice()).unwrap();
                    quotes.push((at, q.last_done, q.timestamp, q.sequence));
                }
                if let Some(p) = step.push_for(&trade) {
                    let n = Notification::decode(p.body.as_slice()).unwrap();
                    let v: serde_json::Value = serde_json::from_slice(&n.data).unwrap();
                    orders.push((at, v["data"]["status"].as_str().unwrap().to_owned()));
                }
                for (name, conn) in [("quote", &quote), ("trade", &trade)] {
                    if step.targets(conn) {
                        let kind = match step {
                            Step::Close { code, .. } => format!("close {code}"),
                            Step::Drop { .. } => "drop".to_owned(),
                            Step::Shutdown { .. } => "shutdown".to_owned(),
                            _ => unreachable!(),
                        };
                        events.push((at, name, kind));
                    }
                }
            }
        }
        assert!(timeline.is_done());
        // only 700.HK (subscribed), in order, stamped with market time (60x from 09:30 HKT)
        let open = 1_704_159_000;
        assert_eq!(
            quotes
                .iter()
                .map(|q| (q.0, q.1.as_str()))
                .collect::<Vec<_>>(),
            [
                (0, "306.2"),
                (5, "307.0"),
                (10, "306.4"),
                (25, "306.4"),
                (70, "308.8"),
                (215, "309.6"),
                (300, "303.2"),
                (390, "304.0")
            ]
        );
        assert_eq!(quotes[1].2, open + 5 * 60);
        assert!(quotes.windows(2).all(|w| w[0].3 < w[1].3), "sequence grows");
        assert_eq!(
            orders,
            [
                (15, "NewStatus".to_owned()),
                (20, "PartialFilledStatus".to_owned()),
                (30, "FilledStatus".to_owned())
            ]
        );
        assert_eq!(
            events,
            [
                (60, "quote", "close 1".to_owned()),
                (150, "trade", "drop".to_owned()),
                (400, "quote", "shutdown".to_owned()),
                (400, "trade", "shutdown".to_owned()),
            ]
        );
        // cmd 11 at the end answers the last pushed values
        let last = market.security("700.HK").unwrap().security_quote();
        assert_eq!(last.last_done, "304.0");
        assert_eq!((last.high.as_str(), last.low.as_str()), ("309.6", "303.2"));
        let halted = market.security("9988.HK").unwrap();
        assert_eq!(
            halted.quote.trade_status, 0,
            "halted at 90s, trading again at 210s"
        );
    }
}
