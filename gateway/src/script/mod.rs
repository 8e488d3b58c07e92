//! The market-data script: accounts, securities, trading days and a timeline of pushes and
//! gateway events
//!
//! # Format
//!
//! A script is a text file of **JSON Lines**: one JSON object per line, blank lines and lines
//! starting with `#` ignored. Each object has exactly one key, the record kind, whose value holds
//! the record's fields. Unknown kinds and unknown fields are errors; every error names the line,
//! the column and the field (see [`ScriptError`]). gateway/README.md documents every field, and
//! gateway/scripts/trading-day.jsonl is a complete example.
//!
//! | kind | what |
//! |---|---|
//! | `clock` | market time at the start of the timeline and its speed (at most one) |
//! | `account` | app key and secret, member id, quote level, packages, balances |
//! | `security` | a symbol's static info and its quote at the start |
//! | `trade_days` | trading days and half days of one market |
//! | `push_quote` | at an offset: new quote values for a symbol, pushed to its subscribers |
//! | `push_order` | at an offset: an order change pushed to an account's trade connections |
//! | `close` | at an offset: close sessions with a Close code and reason |
//! | `drop` | at an offset: drop connections without a Close |
//! | `shutdown` | at an offset: close everything with `ServerShutdown` and stop |
//!
//! [`Script::parse`] reads a script; [`Timeline`] hands out the timed records as time passes
//! (the caller passes the elapsed time in; nothing here reads a clock).

mod timeline;
mod value;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

pub use timeline::{Due, Timeline};
pub use value::{Day, Dec, Offset, UnixTime};

/// Which socket(s) a gateway event applies to
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SocketKind {
    /// The quote WebSocket (`QuoteContext`)
    Quote,
    /// The trade WebSocket (`TradeContext`)
    Trade,
}

/// Market time: where the timeline starts and how fast it runs
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Clock {
    /// Market time at offset 0 (`None`: the caller's wall clock when the timeline starts)
    pub start: Option<UnixTime>,
    /// Market seconds per elapsed second (1 = real time; 60 = a minute per second)
    pub speed: f64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            start: None,
            speed: 1.0,
        }
    }
}

impl Clock {
    /// Market time (Unix seconds) at `offset` when the timeline started at `start` market time
    pub fn market_time(&self, start: UnixTime, offset: Duration) -> i64 {
        let secs = (offset.as_secs_f64() * self.speed).floor();
        start.0.saturating_add(secs as i64).min(value::MAX_UNIX)
    }
}

/// A quote package of an account (shown by the SDK's `quote_package_details`)
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    /// Package key
    pub key: String,
    /// Package name
    pub name: String,
    /// Description
    #[serde(default)]
    pub description: String,
    /// Market the package covers (`HK`, `US`, `CN`, `USOption`), for the SDK's per-market table
    #[serde(default)]
    pub market: String,
    /// Start of validity (default 1970-01-01)
    #[serde(default = "epoch")]
    pub start: UnixTime,
    /// End of validity (default 2100-01-01)
    #[serde(default = "year_2100")]
    pub end: UnixTime,
}

fn epoch() -> UnixTime {
    UnixTime(0)
}

fn year_2100() -> UnixTime {
    UnixTime(4_102_444_800)
}

/// Cash detail of one currency in a balance
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CashInfo {
    /// Currency
    pub currency: String,
    /// Withdrawable cash
    #[serde(default = "Dec::zero")]
    pub withdraw_cash: Dec,
    /// Available cash
    #[serde(default = "Dec::zero")]
    pub available_cash: Dec,
    /// Frozen cash
    #[serde(default = "Dec::zero")]
    pub frozen_cash: Dec,
    /// Cash to be settled
    #[serde(default = "Dec::zero")]
    pub settling_cash: Dec,
}

/// Frozen transaction fee of one currency
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrozenFee {
    /// Currency
    pub currency: String,
    /// Amount
    #[serde(default = "Dec::zero")]
    pub frozen_transaction_fee: Dec,
}

/// One entry of `TradeContext::account_balance`
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Balance {
    /// Currency of the totals
    pub currency: String,
    /// Total cash
    #[serde(default = "Dec::zero")]
    pub total_cash: Dec,
    /// Maximum financing amount
    #[serde(default = "Dec::zero")]
    pub max_finance_amount: Dec,
    /// Remaining financing amount
    #[serde(default = "Dec::zero")]
    pub remaining_finance_amount: Dec,
    /// Risk level
    #[serde(default)]
    pub risk_level: i32,
    /// Margin call
    #[serde(default = "Dec::zero")]
    pub margin_call: Dec,
    /// Net assets
    #[serde(default = "Dec::zero")]
    pub net_assets: Dec,
    /// Initial margin
    #[serde(default = "Dec::zero")]
    pub init_margin: Dec,
    /// Maintenance margin
    #[serde(default = "Dec::zero")]
    pub maintenance_margin: Dec,
    /// Buying power
    #[serde(default = "Dec::zero")]
    pub buy_power: Dec,
    /// Cash details
    #[serde(default)]
    pub cash_infos: Vec<CashInfo>,
    /// Frozen transaction fees
    #[serde(default)]
    pub frozen_transaction_fees: Vec<FrozenFee>,
}

/// A per-command rate limit announced in the user quote profile (cmd 4)
///
/// The SDK builds a client-side leaky bucket from it (`limit` per second, `burst`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Quote command the limit applies to
    pub command: u8,
    /// Requests per second
    pub limit: i32,
    /// Burst
    pub burst: i32,
}

/// An account: what the token endpoint checks and what the sockets answer about the user
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// App key (`X-Api-Key`)
    pub app_key: String,
    /// App secret (the HMAC key of `X-Api-Signature`)
    pub app_secret: String,
    /// Access token the `Authorization` header must carry (`None`: any)
    #[serde(default)]
    pub access_token: Option<String>,
    /// Member id (`QuoteContext::member_id`)
    pub member_id: i64,
    /// Quote level (`QuoteContext::quote_level`)
    pub quote_level: String,
    /// Most symbols one quote connection may subscribe to (default 500)
    #[serde(default = "default_subscribe_limit")]
    pub subscribe_limit: i32,
    /// History candlestick limit reported in the profile
    #[serde(default)]
    pub history_candlestick_limit: i32,
    /// Per-command rate limits reported in the profile
    #[serde(default)]
    pub rate_limits: Vec<RateLimit>,
    /// Quote packages
    #[serde(default)]
    pub packages: Vec<Package>,
    /// Balances (`TradeContext::account_balance`)
    #[serde(default)]
    pub balances: Vec<Balance>,
}

fn default_subscribe_limit() -> i32 {
    500
}

/// A quote's values (the start values of a security; what cmd 11 answers)
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuoteValues {
    /// Last price
    #[serde(default = "Dec::zero")]
    pub last_done: Dec,
    /// Previous close
    #[serde(default = "Dec::zero")]
    pub prev_close: Dec,
    /// Open
    #[serde(default = "Dec::zero")]
    pub open: Dec,
    /// High
    #[serde(default = "Dec::zero")]
    pub high: Dec,
    /// Low
    #[serde(default = "Dec::zero")]
    pub low: Dec,
    /// Time of the quote (default: market time at the start)
    #[serde(default)]
    pub timestamp: Option<UnixTime>,
    /// Volume
    #[serde(default)]
    pub volume: i64,
    /// Turnover
    #[serde(default = "Dec::zero")]
    pub turnover: Dec,
    /// Trade status (`longport-proto` `TradeStatus` name, default `NORMAL`)
    #[serde(default)]
    pub trade_status: TradeStatus,
}

impl Default for QuoteValues {
    fn default() -> Self {
        QuoteValues {
            last_done: Dec::zero(),
            prev_close: Dec::zero(),
            open: Dec::zero(),
            high: Dec::zero(),
            low: Dec::zero(),
            timestamp: None,
            volume: 0,
            turnover: Dec::zero(),
            trade_status: TradeStatus::default(),
        }
    }
}

/// A security: static info (cmd 10) and its quote at the start (cmd 11)
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Security {
    /// Symbol, e.g. `700.HK`
    pub symbol: String,
    /// Chinese (simplified) name
    #[serde(default)]
    pub name_cn: String,
    /// English name
    #[serde(default)]
    pub name_en: String,
    /// Chinese (traditional) name
    #[serde(default)]
    pub name_hk: String,
    /// Listing date
    #[serde(default)]
    pub listing_date: String,
    /// Exchange
    #[serde(default)]
    pub exchange: String,
    /// Trading currency
    #[serde(default)]
    pub currency: String,
    /// Lot size
    #[serde(default)]
    pub lot_size: i32,
    /// Total shares
    #[serde(default)]
    pub total_shares: i64,
    /// Circulating shares
    #[serde(default)]
    pub circulating_shares: i64,
    /// HK shares
    #[serde(default)]
    pub hk_shares: i64,
    /// Earnings per share
    #[serde(default)]
    pub eps: Option<Dec>,
    /// Earnings per share (TTM)
    #[serde(default)]
    pub eps_ttm: Option<Dec>,
    /// Net assets per share
    #[serde(default)]
    pub bps: Option<Dec>,
    /// Dividend yield
    #[serde(default)]
    pub dividend_yield: Option<Dec>,
    /// Derivative types (1 option, 2 warrant)
    #[serde(default)]
    pub stock_derivatives: Vec<i32>,
    /// Board (`HKEquity`, `USMain`, ...)
    #[serde(default)]
    pub board: String,
    /// Quote at the start
    #[serde(default)]
    pub quote: QuoteValues,
}

/// Trading days of one market (cmd 9)
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TradeDays {
    /// Full trading days, sorted, no duplicates
    pub days: Vec<Day>,
    /// Half trading days, sorted, no duplicates
    pub half_days: Vec<Day>,
}

/// New quote values for one symbol, pushed (cmd 101) to the connections subscribed to it
///
/// Fields left out keep the symbol's current values, except: `high`/`low` follow `last_done`
/// when not given, and `volume`/`turnover` grow by `current_volume`/`current_turnover` when not
/// given.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotePush {
    /// When
    pub at: Offset,
    /// Symbol (a `security` of the script)
    pub symbol: String,
    /// Last price
    #[serde(default)]
    pub last_done: Option<Dec>,
    /// Open
    #[serde(default)]
    pub open: Option<Dec>,
    /// High
    #[serde(default)]
    pub high: Option<Dec>,
    /// Low
    #[serde(default)]
    pub low: Option<Dec>,
    /// Cumulative volume
    #[serde(default)]
    pub volume: Option<i64>,
    /// Cumulative turnover
    #[serde(default)]
    pub turnover: Option<Dec>,
    /// Volume of this tick
    #[serde(default)]
    pub current_volume: Option<i64>,
    /// Turnover of this tick
    #[serde(default)]
    pub current_turnover: Option<Dec>,
    /// Time of the quote (default: market time of `at`)
    #[serde(default)]
    pub timestamp: Option<UnixTime>,
    /// Trade status (`TradeStatus` name)
    #[serde(default)]
    pub trade_status: Option<TradeStatus>,
    /// Trade session (`TradeSession` name, default `NORMAL_TRADE`)
    #[serde(default)]
    pub trade_session: TradeSession,
}

/// An order change pushed to an account's trade connections (cmd 18, topic `private`)
///
/// The JSON the SDK decodes as `PushOrderChanged` is built from these fields; see
/// gateway/README.md for their defaults.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderPush {
    /// When
    pub at: Offset,
    /// App key of the account (may be left out when the script has one account)
    #[serde(default)]
    pub account: String,
    /// Order id
    pub order_id: String,
    /// Symbol
    pub symbol: String,
    /// Stock name (default: the security's `name_en`)
    #[serde(default)]
    pub stock_name: Option<String>,
    /// `Buy` or `Sell`
    pub side: OrderSide,
    /// Order type (`LO`, `ELO`, `MO`, `AO`, `ALO`, `ODD`, `LIT`, `MIT`, `TSLPAMT`, `TSLPPCT`,
    /// `TSMAMT`, `TSMPCT`, `SLO`)
    pub order_type: OrderType,
    /// Order status (`NewStatus`, `FilledStatus`, `PartialFilledStatus`, `CanceledStatus`, ...)
    pub status: OrderStatus,
    /// Submitted quantity
    pub submitted_quantity: Dec,
    /// Submitted price
    #[serde(default = "Dec::zero")]
    pub submitted_price: Dec,
    /// Executed quantity
    #[serde(default = "Dec::zero")]
    pub executed_quantity: Dec,
    /// Executed price (0: none)
    #[serde(default = "Dec::zero")]
    pub executed_price: Dec,
    /// Currency (default: the security's currency)
    #[serde(default)]
    pub currency: Option<String>,
    /// Submission time (default: market time of `at`)
    #[serde(default)]
    pub submitted_at: Option<UnixTime>,
    /// Update time (default: market time of `at`)
    #[serde(default)]
    pub updated_at: Option<UnixTime>,
    /// Trigger price
    #[serde(default)]
    pub trigger_price: Option<Dec>,
    /// Rejection message or remark
    #[serde(default)]
    pub msg: String,
    /// Order tag (default `Normal`)
    #[serde(default = "default_tag")]
    pub tag: String,
    /// Trigger status (default `NOT_USED`)
    #[serde(default = "default_trigger_status")]
    pub trigger_status: String,
    /// Trigger time
    #[serde(default)]
    pub trigger_at: Option<UnixTime>,
    /// Trailing amount
    #[serde(default)]
    pub trailing_amount: Option<Dec>,
    /// Trailing percent
    #[serde(default)]
    pub trailing_percent: Option<Dec>,
    /// Limit offset
    #[serde(default)]
    pub limit_offset: Option<Dec>,
    /// Account number
    #[serde(default)]
    pub account_no: String,
    /// Last share
    #[serde(default)]
    pub last_share: Option<Dec>,
    /// Last price
    #[serde(default)]
    pub last_price: Option<Dec>,
    /// Remark
    #[serde(default)]
    pub remark: String,
}

fn default_tag() -> String {
    "Normal".to_owned()
}

fn default_trigger_status() -> String {
    "NOT_USED".to_owned()
}

/// Which connections a gateway event applies to
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    /// The socket kind (`None`: quote and trade)
    pub socket: Option<SocketKind>,
    /// The account's app key (`None`: every account)
    pub account: Option<String>,
}

impl Target {
    /// Whether a connection of `kind` authenticated as `app_key` is targeted
    pub fn matches(&self, kind: SocketKind, app_key: &str) -> bool {
        self.socket.is_none_or(|s| s == kind)
            && self.account.as_deref().is_none_or(|a| a == app_key)
    }
}

/// What a timeline item does
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Item {
    /// Update a quote and push it to the symbol's subscribers
    Quote(QuotePush),
    /// Push an order change to an account's trade connections
    Order(Box<OrderPush>),
    /// Push `Close { code, reason }` to the targeted connections and close them; their sessions
    /// stay valid, so the SDK reconnects with its session and resubscribes
    Close {
        /// Connections
        target: Target,
        /// `Close.Code` (0 HeartbeatTimeout .. 6 ConnectDuplicate)
        code: u8,
        /// Reason text
        reason: String,
    },
    /// Drop the targeted connections' sockets without any Close
    Drop {
        /// Connections
        target: Target,
    },
    /// Close every connection with `ServerShutdown` and stop the gateway
    Shutdown {
        /// Reason text
        reason: String,
    },
}

/// One timed record of the script
#[derive(Clone, Debug, PartialEq)]
pub struct TimedItem {
    /// Offset from the start of the timeline
    pub at: Duration,
    /// Line of the script it came from (1-based)
    pub line: usize,
    /// What to do
    pub item: Item,
}

/// A parsed, checked script
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Script {
    /// Market clock
    pub clock: Clock,
    /// Accounts, in file order (app keys are unique)
    pub accounts: Vec<Arc<Account>>,
    /// Securities, in file order (symbols are unique)
    pub securities: Vec<Security>,
    /// Trading days per market (`HK`, `US`, `SH`, `SZ`, `SG`, ...)
    pub trade_days: BTreeMap<String, TradeDays>,
    /// Timed items sorted by offset (file order among equal offsets)
    pub timeline: Vec<TimedItem>,
}

/// A script error, with the place it was found
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScriptError {
    /// 1-based line (0: the script as a whole)
    pub line: usize,
    /// 1-based column inside the line, when known
    pub column: Option<usize>,
    /// Field path inside the record (`account.balances[0].total_cash`), when known
    pub field: Option<String>,
    /// What is wrong
    pub message: String,
}

impl ScriptError {
    fn at(line: usize, field: impl Into<String>, message: impl Into<String>) -> Self {
        ScriptError {
            line,
            column: None,
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (0, _) => f.write_str("script")?,
            (l, Some(c)) => write!(f, "line {l}, column {c}")?,
            (l, None) => write!(f, "line {l}")?,
        }
        if let Some(field) = &self.field {
            write!(f, ", field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ScriptError {}

/// A script file that could not be loaded
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read
    Io(std::io::Error),
    /// The file is not a valid script
    Script(ScriptError),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io(e) => write!(f, "cannot read the script: {e}"),
            LoadError::Script(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Io(e) => Some(e),
            LoadError::Script(e) => Some(e),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Enumerated names

macro_rules! proto_enum_name {
    ($(#[$m:meta])* $name:ident, $proto:ty, $default:expr) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $name(pub i32);

        impl Default for $name {
            fn default() -> Self {
                $name($default as i32)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                match <$proto>::from_str_name(&s) {
                    Some(v) => Ok($name(v as i32)),
                    None => Err(de::Error::custom(format!(
                        "unknown {} {s:?} (use the upper-case names of longport-proto, e.g. {:?})",
                        stringify!($name),
                        ($default).as_str_name()
                    ))),
                }
            }
        }
    };
}

proto_enum_name!(
    /// A `longport_proto::quote::TradeStatus`, written by its proto name (`NORMAL`, `HALTED`, ...)
    TradeStatus,
    longport_proto::quote::TradeStatus,
    longport_proto::quote::TradeStatus::Normal
);

proto_enum_name!(
    /// A `longport_proto::quote::TradeSession`, written by its proto name (`NORMAL_TRADE`,
    /// `PRE_TRADE`, `POST_TRADE`, `OVERNIGHT_TRADE`)
    TradeSession,
    longport_proto::quote::TradeSession,
    longport_proto::quote::TradeSession::NormalTrade
);

macro_rules! name_list {
    ($(#[$m:meta])* $name:ident, [$($v:literal),+ $(,)?]) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub struct $name(pub String);

        impl $name {
            /// The accepted names
            pub const NAMES: &'static [&'static str] = &[$($v),+];
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                if Self::NAMES.contains(&s.as_str()) {
                    Ok($name(s))
                } else {
                    Err(de::Error::custom(format!(
                        "unknown {} {s:?} (one of: {})",
                        stringify!($name),
                        Self::NAMES.join(", ")
                    )))
                }
            }
        }
    };
}

name_list!(
    /// Order side as the SDK's JSON spells it
    OrderSide,
    ["Buy", "Sell"]
);

name_list!(
    /// Order type as the SDK's JSON spells it
    OrderType,
    [
        "LO", "ELO", "MO", "AO", "ALO", "ODD", "LIT", "MIT", "TSLPAMT", "TSLPPCT", "TSMAMT",
        "TSMPCT", "SLO"
    ]
);

name_list!(
    /// Order status as the SDK's JSON spells it
    OrderStatus,
    [
        "NotReported",
        "ReplacedNotReported",
        "ProtectedNotReported",
        "VarietiesNotReported",
        "FilledStatus",
        "WaitToNew",
        "NewStatus",
        "WaitToReplace",
        "PendingReplaceStatus",
        "ReplacedStatus",
        "PartialFilledStatus",
        "WaitToCancel",
        "PendingCancelStatus",
        "RejectedStatus",
        "CanceledStatus",
        "ExpiredStatus",
        "PartialWithdrawal",
    ]
);

/// `Close.Code` names in `control.proto`, by value
pub const CLOSE_CODE_NAMES: [&str; 7] = [
    "HeartbeatTimeout",
    "ServerError",
    "ServerShutdown",
    "UnpackError",
    "AuthError",
    "SessExpired",
    "ConnectDuplicate",
];

struct CloseCode(u8);

impl<'de> Deserialize<'de> for CloseCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        let bad = |what: String| {
            de::Error::custom(format!(
                "unknown close code {what} (0..=6 or one of: {})",
                CLOSE_CODE_NAMES.join(", ")
            ))
        };
        match Raw::deserialize(d)? {
            Raw::N(n) if n <= 6 => Ok(CloseCode(n as u8)),
            Raw::N(n) => Err(bad(n.to_string())),
            Raw::S(s) => CLOSE_CODE_NAMES
                .iter()
                .position(|n| *n == s)
                .map(|p| CloseCode(p as u8))
                .ok_or_else(|| bad(format!("{s:?}"))),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Records as written

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockRec {
    #[serde(default)]
    start: Option<UnixTime>,
    #[serde(default)]
    speed: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TradeDaysRec {
    market: String,
    #[serde(default)]
    days: Vec<Day>,
    #[serde(default)]
    half_days: Vec<Day>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetRec {
    at: Offset,
    #[serde(default)]
    socket: Option<SocketRec>,
    #[serde(default)]
    account: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum SocketRec {
    Quote,
    Trade,
    All,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseRec {
    at: Offset,
    #[serde(default)]
    socket: Option<SocketRec>,
    #[serde(default)]
    account: Option<String>,
    code: CloseCode,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShutdownRec {
    at: Offset,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Record {
    Clock(ClockRec),
    Account(Account),
    Security(Security),
    TradeDays(TradeDaysRec),
    PushQuote(QuotePush),
    PushOrder(OrderPush),
    Close(CloseRec),
    Drop(TargetRec),
    Shutdown(ShutdownRec),
}

fn socket_of(s: Option<SocketRec>) -> Option<SocketKind> {
    match s {
        Some(SocketRec::Quote) => Some(SocketKind::Quote),
        Some(SocketRec::Trade) => Some(SocketKind::Trade),
        Some(SocketRec::All) | None => None,
    }
}

/// serde_json's message without its " at line L column C" suffix (we report our own line)
fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    s.strip_suffix(&suffix).map(str::to_owned).unwrap_or(s)
}

fn parse_line(line_no: usize, text: &str) -> Result<Record, ScriptError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let rec: Record = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        // serde_path_to_error writes `?` for a segment it could not name (e.g. at EOF)
        let path = e.path().to_string();
        let path = path
            .split('.')
            .filter(|seg| *seg != "?")
            .collect::<Vec<_>>()
            .join(".");
        let inner = e.inner();
        ScriptError {
            line: line_no,
            column: Some(inner.column()),
            field: (path != "." && !path.is_empty()).then_some(path),
            message: strip_position(inner),
        }
    })?;
    de.end().map_err(|e| ScriptError {
        line: line_no,
        column: Some(e.column()),
        field: None,
        message: "one JSON object per line: unexpected text after the record".to_owned(),
    })?;
    Ok(rec)
}

impl Script {
    /// Read and check a script file
    pub fn load(path: impl AsRef<Path>) -> Result<Script, LoadError> {
        let text = std::fs::read_to_string(path).map_err(LoadError::Io)?;
        Script::parse(&text).map_err(LoadError::Script)
    }

    /// Parse and check a script
    ///
    /// Stops at the first error. Checks beyond the syntax: app keys and symbols are unique, at
    /// least one account exists, pushes name known symbols and accounts, at most one `clock`.
    pub fn parse(text: &str) -> Result<Script, ScriptError> {
        let mut script = Script::default();
        let mut clock_line = None;
        let mut account_lines: HashMap<String, usize> = HashMap::new();
        let mut security_lines: HashMap<String, usize> = HashMap::new();
        let mut timeline = Vec::new();

        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let t = raw.trim_start();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            match parse_line(line, raw)? {
                Record::Clock(c) => {
                    if let Some(first) = clock_line {
                        return Err(ScriptError::at(
                            line,
                            "clock",
                            format!("a second clock record (the first is on line {first})"),
                        ));
                    }
                    clock_line = Some(line);
                    let speed = c.speed.unwrap_or(1.0);
                    if !(speed.is_finite() && speed > 0.0 && speed <= 1e6) {
                        return Err(ScriptError::at(
                            line,
                            "clock.speed",
                            format!("speed must be above 0 and at most 1000000, got {speed}"),
                        ));
                    }
                    script.clock = Clock {
                        start: c.start,
                        speed,
                    };
                }
                Record::Account(a) => {
                    if a.app_key.is_empty() {
                        return Err(ScriptError::at(
                            line,
                            "account.app_key",
                            "must not be empty",
                        ));
                    }
                    if a.app_secret.is_empty() {
                        return Err(ScriptError::at(
                            line,
                            "account.app_secret",
                            "must not be empty (the SDK does not sign requests without a secret)",
                        ));
                    }
                    if let Some(first) = account_lines.insert(a.app_key.clone(), line) {
                        return Err(ScriptError::at(
                            line,
                            "account.app_key",
                            format!("app key {:?} is already defined on line {first}", a.app_key),
                        ));
                    }
                    script.accounts.push(Arc::new(a));
                }
                Record::Security(s) => {
                    if s.symbol.is_empty() {
                        return Err(ScriptError::at(
                            line,
                            "security.symbol",
                            "must not be empty",
                        ));
                    }
                    if let Some(first) = security_lines.insert(s.symbol.clone(), line) {
                        return Err(ScriptError::at(
                            line,
                            "security.symbol",
                            format!("symbol {:?} is already defined on line {first}", s.symbol),
                        ));
                    }
                    script.securities.push(s);
                }
                Record::TradeDays(d) => {
                    if d.market.is_empty() {
                        return Err(ScriptError::at(
                            line,
                            "trade_days.market",
                            "must not be empty",
                        ));
                    }
                    let e = script.trade_days.entry(d.market).or_default();
                    e.days.extend(d.days);
                    e.half_days.extend(d.half_days);
                }
                Record::PushQuote(q) => timeline.push(TimedItem {
                    at: q.at.0,
                    line,
                    item: Item::Quote(q),
                }),
                Record::PushOrder(o) => timeline.push(TimedItem {
                    at: o.at.0,
                    line,
                    item: Item::Order(Box::new(o)),
                }),
                Record::Close(c) => timeline.push(TimedItem {
                    at: c.at.0,
                    line,
                    item: Item::Close {
                        target: Target {
                            socket: socket_of(c.socket),
                            account: c.account,
                        },
                        code: c.code.0,
                        reason: c.reason,
                    },
                }),
                Record::Drop(d) => timeline.push(TimedItem {
                    at: d.at.0,
                    line,
                    item: Item::Drop {
                        target: Target {
                            socket: socket_of(d.socket),
                            account: d.account,
                        },
                    },
                }),
                Record::Shutdown(s) => timeline.push(TimedItem {
                    at: s.at.0,
                    line,
                    item: Item::Shutdown { reason: s.reason },
                }),
            }
        }

        if script.accounts.is_empty() {
            return Err(ScriptError {
                line: 0,
                column: None,
                field: None,
                message: "no account record: the token endpoint would refuse every app key"
                    .to_owned(),
            });
        }
        for d in script.trade_days.values_mut() {
            d.days.sort_unstable();
            d.days.dedup();
            d.half_days.sort_unstable();
            d.half_days.dedup();
        }

        let single_account =
            (script.accounts.len() == 1).then(|| script.accounts[0].app_key.clone());
        let securities: HashMap<&str, &Security> = script
            .securities
            .iter()
            .map(|s| (s.symbol.as_str(), s))
            .collect();
        for t in &mut timeline {
            let line = t.line;
            let check_account = |kind: &str, a: &Option<String>| match a {
                Some(a) if !account_lines.contains_key(a) => Err(ScriptError::at(
                    line,
                    format!("{kind}.account"),
                    format!("no account with app key {a:?}"),
                )),
                _ => Ok(()),
            };
            match &mut t.item {
                Item::Quote(q) => {
                    if !securities.contains_key(q.symbol.as_str()) {
                        return Err(ScriptError::at(
                            line,
                            "push_quote.symbol",
                            format!(
                                "no security {:?} (add a `security` record for it)",
                                q.symbol
                            ),
                        ));
                    }
                }
                Item::Order(o) => {
                    if o.account.is_empty() {
                        match &single_account {
                            Some(a) => o.account = a.clone(),
                            None => {
                                return Err(ScriptError::at(
                                    line,
                                    "push_order.account",
                                    "required when the script has more than one account",
                                ))
                            }
                        }
                    } else if !account_lines.contains_key(&o.account) {
                        return Err(ScriptError::at(
                            line,
                            "push_order.account",
                            format!("no account with app key {:?}", o.account),
                        ));
                    }
                    if let Some(s) = securities.get(o.symbol.as_str()) {
                        if o.currency.is_none() {
                            o.currency = Some(s.currency.clone());
                        }
                        if o.stock_name.is_none() {
                            o.stock_name = Some(s.name_en.clone());
                        }
                    }
                }
                Item::Close { target, .. } => check_account("close", &target.account)?,
                Item::Drop { target } => check_account("drop", &target.account)?,
                Item::Shutdown { .. } => {}
            }
        }
        timeline.sort_by_key(|t| t.at);
        script.timeline = timeline;
        Ok(script)
    }

    /// The account with `app_key`
    pub fn account(&self, app_key: &str) -> Option<&Arc<Account>> {
        self.accounts.iter().find(|a| a.app_key == app_key)
    }

    /// A timeline over this script's timed items, its market time starting at the script's
    /// `clock.start`, or at `wall_start` when the script gives none
    pub fn timeline(&self, wall_start: UnixTime) -> Timeline {
        Timeline::new(
            self.timeline.clone(),
            self.clock.start.unwrap_or(wall_start),
            self.clock,
        )
    }
}

#[cfg(test)]
mod tests;
