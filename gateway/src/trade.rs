//! Trade socket business commands and order pushes (what `TradeContext` uses over its socket)
//!
//! | cmd | request | answer |
//! |---|---|---|
//! | 16 | `Sub { topics }` | `SubResponse { success, fail, current }` |
//! | 17 | `Unsub { topics }` | `UnsubResponse { current }` |
//! | other | | status 3, `Error{301600}` naming the command |
//!
//! The only topic is `private` (the SDK's `TopicType::Private`); other topics are listed in
//! `fail` with a reason. Order pushes are cmd 18 `Notification { topic: "private",
//! content_type: JSON, data }`, `data` being the JSON the SDK decodes as
//! `longport::trade::PushEvent::OrderChanged` ([`order_push`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use longport_proto::trade as pb;
use prost::Message as _;
use serde_json::json;

use crate::market::Market;
use crate::reply::{Push, Reply};
use crate::script::{Account, Dec, OrderPush, UnixTime};

/// `CMD_SUB`
pub const CMD_SUB: u8 = 16;
/// `CMD_UNSUB`
pub const CMD_UNSUB: u8 = 17;
/// `CMD_NOTIFY` (push)
pub const CMD_NOTIFY: u8 = 18;

/// The private-notification topic (order changes)
pub const TOPIC_PRIVATE: &str = "private";

/// Topics a connection may subscribe to
pub const TOPICS: &[&str] = &[TOPIC_PRIVATE];

/// A trade connection's business state: its account and subscribed topics
///
/// Like [`QuoteConn`](crate::quote::QuoteConn), park it across a reconnect with a
/// [`SessionStore`](crate::session::SessionStore).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TradeConn {
    account: Arc<Account>,
    topics: BTreeSet<String>,
}

impl TradeConn {
    /// A fresh connection of `account` with no topics
    pub fn new(account: Arc<Account>) -> Self {
        TradeConn {
            account,
            topics: BTreeSet::new(),
        }
    }

    /// The account the connection authenticated as
    pub fn account(&self) -> &Arc<Account> {
        &self.account
    }

    /// Subscribed topics, sorted
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.topics.iter().map(String::as_str)
    }

    /// The push of `order` for this connection: `Some` when the order is this connection's
    /// account's and the connection subscribed to `private`
    pub fn wants_order(&self, order: &OrderPush, market_time: i64) -> Option<Push> {
        (order.account == self.account.app_key && self.topics.contains(TOPIC_PRIVATE))
            .then(|| order_push(order, market_time))
    }
}

/// Answer one trade business request
pub fn handle(cmd: u8, body: &[u8], conn: &mut TradeConn, _market: &Market) -> Reply {
    match cmd {
        CMD_SUB => match pb::Sub::decode(body) {
            Ok(req) => sub(req, conn),
            Err(e) => Reply::invalid_request(format!("cmd {cmd}: bad request body: {e}")),
        },
        CMD_UNSUB => match pb::Unsub::decode(body) {
            Ok(req) => {
                for t in &req.topics {
                    conn.topics.remove(t.as_str());
                }
                Reply::ok(&pb::UnsubResponse {
                    current: conn.topics.iter().cloned().collect(),
                })
            }
            Err(e) => Reply::invalid_request(format!("cmd {cmd}: bad request body: {e}")),
        },
        _ => Reply::unsupported(cmd),
    }
}

fn sub(req: pb::Sub, conn: &mut TradeConn) -> Reply {
    let mut resp = pb::SubResponse::default();
    for t in req.topics {
        if TOPICS.contains(&t.as_str()) {
            conn.topics.insert(t.clone());
            resp.success.push(t);
        } else {
            resp.fail.push(pb::sub_response::Fail {
                reason: format!("unknown topic {t:?} (known: {})", TOPICS.join(", ")),
                topic: t,
            });
        }
    }
    resp.current = conn.topics.iter().cloned().collect();
    Reply::ok(&resp)
}

/// The JSON `data` of an order push: `{"event": "order_changed_lb", "data": {..}}`
///
/// Field forms follow what the SDK's `PushOrderChanged` deserializer reads: decimals and
/// timestamps as strings, an empty string for an absent optional decimal, `"0"` for no trigger
/// time.
pub fn order_json(o: &OrderPush, market_time: i64) -> serde_json::Value {
    let opt = |d: &Option<Dec>| d.as_ref().map(ToString::to_string).unwrap_or_default();
    let time = |t: Option<UnixTime>| t.map_or(market_time, |t| t.0).to_string();
    json!({
        "event": "order_changed_lb",
        "data": {
            "side": o.side.0,
            "stock_name": o.stock_name.clone().unwrap_or_default(),
            "submitted_quantity": o.submitted_quantity.to_string(),
            "symbol": o.symbol,
            "order_type": o.order_type.0,
            "submitted_price": o.submitted_price.to_string(),
            "executed_quantity": o.executed_quantity.to_string(),
            "executed_price": o.executed_price.to_string(),
            "order_id": o.order_id,
            "currency": o.currency.clone().unwrap_or_default(),
            "status": o.status.0,
            "submitted_at": time(o.submitted_at),
            "updated_at": time(o.updated_at),
            "trigger_price": opt(&o.trigger_price),
            "msg": o.msg,
            "tag": o.tag,
            "trigger_status": o.trigger_status,
            "trigger_at": o.trigger_at.map_or(0, |t| t.0).to_string(),
            "trailing_amount": opt(&o.trailing_amount),
            "trailing_percent": opt(&o.trailing_percent),
            "limit_offset": opt(&o.limit_offset),
            "account_no": o.account_no,
            "last_share": opt(&o.last_share),
            "last_price": opt(&o.last_price),
            "remark": o.remark,
        }
    })
}

/// The cmd 18 push of a scripted order change at `market_time` (default for its timestamps)
pub fn order_push(o: &OrderPush, market_time: i64) -> Push {
    let n = pb::Notification {
        topic: TOPIC_PRIVATE.to_owned(),
        content_type: pb::ContentType::ContentJson as i32,
        dispatch_type: pb::DispatchType::DispatchDirect as i32,
        data: order_json(o, market_time).to_string().into_bytes(),
    };
    Push {
        cmd: CMD_NOTIFY,
        body: n.encode_to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::{code, status};
    use crate::script::{Item, Script};

    const SCRIPT: &str = concat!(
        r#"{"account": {"app_key": "k", "app_secret": "s", "member_id": 7, "quote_level": "LV1"}}"#,
        "\n",
        r#"{"account": {"app_key": "k2", "app_secret": "s", "member_id": 8, "quote_level": "LV1"}}"#,
        "\n",
        r#"{"security": {"symbol": "700.HK", "currency": "HKD", "name_en": "TENCENT"}}"#,
        "\n",
        r#"{"push_order": {"at": "1s", "account": "k", "order_id": "42", "symbol": "700.HK", "side": "Buy", "order_type": "LO", "status": "PartialFilledStatus", "submitted_quantity": "200", "submitted_price": "306.4", "executed_quantity": "100", "executed_price": "306.4", "last_share": "100", "last_price": "306.4", "trigger_at": 1704159100}}"#,
        "\n",
        r#"{"push_order": {"at": "2s", "account": "k", "order_id": "43", "symbol": "GHOST.US", "side": "Sell", "order_type": "MO", "status": "NewStatus", "submitted_quantity": "1"}}"#,
    );

    fn setup() -> (Script, Market, TradeConn) {
        let script = Script::parse(SCRIPT).unwrap();
        let market = Market::new(&script, UnixTime(1_704_159_000));
        let conn = TradeConn::new(Arc::clone(market.account("k").unwrap()));
        (script, market, conn)
    }

    fn orders(script: &Script) -> Vec<OrderPush> {
        script
            .timeline
            .iter()
            .filter_map(|t| match &t.item {
                Item::Order(o) => Some((**o).clone()),
                _ => None,
            })
            .collect()
    }

    fn sub_req(topics: &[&str]) -> Vec<u8> {
        pb::Sub {
            topics: topics.iter().map(|t| t.to_string()).collect(),
        }
        .encode_to_vec()
    }

    #[test]
    fn subscribe_and_unsubscribe_private() {
        let (_, market, mut conn) = setup();
        let r = handle(
            CMD_SUB,
            &sub_req(&["private", "public"]),
            &mut conn,
            &market,
        );
        assert_eq!(r.status, status::SUCCESS);
        let resp = pb::SubResponse::decode(r.body.as_slice()).unwrap();
        assert_eq!(resp.success, ["private"]);
        assert_eq!(resp.fail.len(), 1);
        assert_eq!(resp.fail[0].topic, "public");
        assert!(resp.fail[0].reason.contains("unknown topic"));
        assert_eq!(resp.current, ["private"]);
        assert_eq!(conn.topics().collect::<Vec<_>>(), ["private"]);

        // subscribing again (the SDK's resubscribe) is idempotent
        let r = handle(CMD_SUB, &sub_req(&["private"]), &mut conn, &market);
        let resp = pb::SubResponse::decode(r.body.as_slice()).unwrap();
        assert_eq!(resp.current, ["private"]);

        let unsub = pb::Unsub {
            topics: vec!["private".into()],
        }
        .encode_to_vec();
        let r = handle(CMD_UNSUB, &unsub, &mut conn, &market);
        assert_eq!(r.status, status::SUCCESS);
        assert!(pb::UnsubResponse::decode(r.body.as_slice())
            .unwrap()
            .current
            .is_empty());
        assert_eq!(conn.topics().count(), 0);
    }

    #[test]
    fn bad_bodies_and_other_commands_are_errors() {
        let (_, market, mut conn) = setup();
        for cmd in [CMD_SUB, CMD_UNSUB] {
            let r = handle(cmd, &[0x0a, 0x05, b'x'], &mut conn, &market);
            assert_eq!(r.status, status::BAD_REQUEST);
            assert_eq!(r.error_detail().unwrap().code, code::INVALID_REQUEST);
        }
        for cmd in [0, 1, 2, 3, 4, 11, 18, 255] {
            let r = handle(cmd, &[], &mut conn, &market);
            assert_eq!(r.status, status::BAD_REQUEST, "cmd {cmd}");
            assert!(r
                .error_detail()
                .unwrap()
                .msg
                .contains(&format!("command {cmd}")));
        }
        assert_eq!(conn.topics().count(), 0);
    }

    #[test]
    fn order_pushes_go_to_the_accounts_subscribed_connections() {
        let (script, market, mut conn) = setup();
        let o = &orders(&script)[0];
        assert!(conn.wants_order(o, 1).is_none(), "not subscribed yet");
        handle(CMD_SUB, &sub_req(&["private"]), &mut conn, &market);
        let push = conn.wants_order(o, 1_704_159_060).unwrap();
        assert_eq!(push.cmd, CMD_NOTIFY);
        let n = pb::Notification::decode(push.body.as_slice()).unwrap();
        assert_eq!(n.topic, "private");
        assert_eq!(n.content_type, pb::ContentType::ContentJson as i32);
        let v: serde_json::Value = serde_json::from_slice(&n.data).unwrap();
        assert_eq!(v["event"], "order_changed_lb");
        let d = &v["data"];
        assert_eq!(d["order_id"], "42");
        assert_eq!(d["status"], "PartialFilledStatus");
        assert_eq!(d["currency"], "HKD", "from the security");
        assert_eq!(d["stock_name"], "TENCENT", "from the security");
        assert_eq!(d["submitted_at"], "1704159060", "market time by default");
        assert_eq!(d["trigger_at"], "1704159100");
        assert_eq!(d["trigger_price"], "", "absent optional decimal");

        let mut other = TradeConn::new(Arc::clone(market.account("k2").unwrap()));
        handle(CMD_SUB, &sub_req(&["private"]), &mut other, &market);
        assert!(other.wants_order(o, 1).is_none(), "another account's order");
    }

    /// The SDK's own serde types accept what we push
    #[test]
    fn the_sdk_decodes_our_order_json() {
        use longport::trade::{OrderSide, OrderStatus, OrderType, PushEvent};
        let (script, _, _) = setup();
        let os = orders(&script);
        let data = order_json(&os[0], 1_704_159_060).to_string();
        let PushEvent::OrderChanged(o) = serde_json::from_str::<PushEvent>(&data).unwrap();
        assert_eq!(o.order_id, "42");
        assert_eq!(o.side, OrderSide::Buy);
        assert_eq!(o.order_type, OrderType::LO);
        assert_eq!(o.status, OrderStatus::PartialFilled);
        assert_eq!(o.submitted_quantity.to_string(), "200");
        assert_eq!(o.executed_price.unwrap().to_string(), "306.4");
        assert_eq!(o.submitted_at.unix_timestamp(), 1_704_159_060);
        assert_eq!(o.trigger_at.unwrap().unix_timestamp(), 1_704_159_100);
        assert!(o.trigger_price.is_none());
        assert!(o.trigger_status.is_none(), "NOT_USED");
        assert_eq!(o.last_share.unwrap().to_string(), "100");
        assert_eq!(o.currency, "HKD");

        // all defaults, unknown symbol: still decodes
        let data = order_json(&os[1], 1_704_159_000).to_string();
        let PushEvent::OrderChanged(o) = serde_json::from_str::<PushEvent>(&data).unwrap();
        assert_eq!((o.side, o.status), (OrderSide::Sell, OrderStatus::New));
        assert!(o.executed_price.is_none(), "0 means none");
        assert!(o.trigger_at.is_none());
        assert_eq!(o.currency, "");
    }
}
