//! An offline LongPort OpenAPI gateway for testing code built on the official SDKs
//!
//! [`server::start`] runs the whole gateway (the `longport-gateway` binary is its command line):
//! HTTP, quote and trade listeners on `tether-net`'s LongPort server machine and the tokio
//! driver of `tether-net-drivers`. The other modules are the pieces that do not depend on the
//! socket protocol machine: the HTTP side, the market-data script, and the business handlers of
//! the quote and trade sockets. [`server`] plugs them in like this:
//!
//! | step | piece |
//! |---|---|
//! | load the script | [`script::Script::load`] → [`script::Script`] |
//! | market state | [`market::Market::new`]`(&script, timeline.start())` |
//! | timeline | [`script::Script::timeline`]`(wall_start)` → [`script::Timeline`]; [`script::Timeline::poll`]`(elapsed)` / [`script::Timeline::next_at`] |
//! | HTTP (`/v1/socket/token`, `/v1/asset/account`) | [`http::HttpGateway`]: [`http::HttpGateway::serve`], or [`http::HttpGateway::handle`] inside one's own hyper service |
//! | socket Auth | [`token::TokenStore::redeem`]`(token, now)` → the account, once |
//! | after Auth | [`session::ConnState::new`]`(SocketKind::Quote / Trade, account)` |
//! | business request (cmd ≥ 4) | [`session::ConnState::handle`]`(cmd, body, &market)` → [`reply::Reply`] (status, body, pushes) |
//! | due timeline item | [`market::Market::step`]`(&due)` → [`feed::Step`]; per connection [`feed::Step::push_for`] / [`feed::Step::targets`] |
//! | reconnect with a session | [`session::SessionStore`]: park the state when a connection ends, take it back on Reconnect |
//! | quota and rate-limit hooks | [`http::Quota`] (token endpoint's `limit`/`online`), [`market::Market::set_rate_limits`] (cmd 4's `rate_limit`) |
//!
//! Outside [`server`], nothing reads a clock except [`http::HttpGateway::handle`] (`Instant::now()` for the
//! token's issue time); everything else takes the time as an argument. Business bodies are the
//! official `longport-proto` 4.3.7 messages, the version the `longport` 4.3.7 SDK uses.

#![forbid(unsafe_code)]

pub mod feed;
pub mod http;
pub mod market;
pub mod quote;
pub mod reply;
pub mod script;
pub mod server;
pub mod session;
pub mod token;
pub mod trade;
