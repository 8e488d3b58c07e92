//! Who may hold a connection: the caller's [`Source`] key of a connection, the [`AccountId`]
//! of a login, the [`Grant`] that accepts one and the [`Admission`] the quota decides

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::longport::server::session::SessionId;

/// Where a connection comes from, as the caller knows it (e.g. the peer's IP address)
///
/// [`Server::handle_connected`](crate::longport::Server::handle_connected) takes one for every
/// connection and limits how many unauthenticated connections one source may hold
/// ([`ServerConfig::with_max_unauthenticated_per_source`](crate::longport::ServerConfig::with_max_unauthenticated_per_source)),
/// so a few hosts cannot fill the unauthenticated slots that everybody's logins need. A caller
/// without such a notion passes [`Source::UNKNOWN`]: those connections count only against the
/// global cap.
///
/// [`Source::from_ip`] (also `From<IpAddr>`) keys IPv4 addresses (and IPv4-mapped IPv6
/// addresses) by the whole address and other IPv6 addresses by their /64 prefix, the block one
/// end site usually holds. [`Source::from_bytes`] takes any 16-byte key of the caller's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Source(Option<[u8; 16]>);

impl Source {
    /// No source known: only the global unauthenticated cap applies
    pub const UNKNOWN: Source = Source(None);

    /// A source keyed by 16 bytes of the caller's choice
    #[must_use]
    pub const fn from_bytes(key: [u8; 16]) -> Self {
        Source(Some(key))
    }

    /// A source keyed by an IP address: IPv4 (and IPv4-mapped IPv6) by the address, other IPv6
    /// by the /64 prefix
    #[must_use]
    pub fn from_ip(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Source(Some(v4.to_ipv6_mapped().octets())),
            IpAddr::V6(v6) => {
                let mut key = [0u8; 16];
                let octets = v6.octets();
                key[..8].copy_from_slice(&octets[..8]);
                Source(Some(key))
            }
        }
    }

    /// True unless this is [`Source::UNKNOWN`]
    #[must_use]
    pub const fn is_known(&self) -> bool {
        self.0.is_some()
    }

    /// The 16-byte key, unless unknown
    #[must_use]
    pub const fn key(&self) -> Option<[u8; 16]> {
        self.0
    }
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Self {
        Source::from_ip(ip)
    }
}

impl From<Ipv4Addr> for Source {
    fn from(ip: Ipv4Addr) -> Self {
        Source::from_ip(IpAddr::V4(ip))
    }
}

impl From<Ipv6Addr> for Source {
    fn from(ip: Ipv6Addr) -> Self {
        Source::from_ip(IpAddr::V6(ip))
    }
}

/// The account a login belongs to, as the application identifies it (e.g. the member id)
///
/// Given in [`Grant::with_account`]; connections of one account count against the per-account
/// quota ([`ServerConfig::with_account_quota`](crate::longport::ServerConfig::with_account_quota)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AccountId(pub u64);

/// What [`Server::accept_auth`](crate::longport::Server::accept_auth) and
/// [`Server::accept_reconnect`](crate::longport::Server::accept_reconnect) grant: a session, its
/// expiry, and optionally the account and the quota numbers to report
///
/// ```
/// use tether_net::longport::{AccountId, Grant, SessionId};
///
/// // 16 bytes from the OS random source in real code (e.g. `getrandom::fill`)
/// let random = [7u8; 16];
/// let grant = Grant::new(SessionId::from_random(random), 1_700_086_400_000)
///     .with_account(AccountId(42));
/// assert_eq!(grant.session_id().as_str().len(), 32);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Grant {
    pub(super) session_id: SessionId,
    pub(super) expires: i64,
    pub(super) account: Option<AccountId>,
    pub(super) limit: u32,
    pub(super) online: u32,
}

impl Grant {
    /// Grant `session_id`, valid until `expires` (absolute Unix milliseconds, as the official
    /// clients read it); no account, quota numbers 0
    #[must_use]
    pub const fn new(session_id: SessionId, expires: i64) -> Self {
        Grant {
            session_id,
            expires,
            account: None,
            limit: 0,
            online: 0,
        }
    }

    /// The account of the login (counted against the account quota; a Reconnect without one
    /// keeps the account of the session it resumes)
    #[must_use]
    pub const fn with_account(mut self, account: AccountId) -> Self {
        self.account = Some(account);
        self
    }

    /// `limit` and `online` to put in the response when the server has no account quota or the
    /// login no account (otherwise the machine reports the quota and the account's connections)
    #[must_use]
    pub const fn with_limit_online(mut self, limit: u32, online: u32) -> Self {
        self.limit = limit;
        self.online = online;
        self
    }

    /// See [`Grant::new`]
    #[must_use]
    pub const fn session_id(&self) -> &SessionId {
        &self.session_id
    }

    /// See [`Grant::new`]
    #[must_use]
    pub const fn expires(&self) -> i64 {
        self.expires
    }

    /// See [`Grant::with_account`]
    #[must_use]
    pub const fn account(&self) -> Option<AccountId> {
        self.account
    }

    /// See [`Grant::with_limit_online`]
    #[must_use]
    pub const fn limit(&self) -> u32 {
        self.limit
    }

    /// See [`Grant::with_limit_online`]
    #[must_use]
    pub const fn online(&self) -> u32 {
        self.online
    }
}

/// How an `accept_*` call ended
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Admission {
    /// The login is accepted: the response is queued, [`ServerEvent::Connected`](crate::longport::ServerEvent::Connected)
    /// follows
    Granted {
        /// The account's connection quota reported in the response (0 without one)
        limit: u32,
        /// The account's live connections, this one included (as reported)
        online: u32,
    },
    /// The account already holds its quota of connections: the machine refused the login
    /// instead (status 6, `Error{403, "connections limitation is hit"}`, `Close{AuthError}`);
    /// [`ServerEvent::Closed`](crate::longport::ServerEvent::Closed) with
    /// [`CloseCause::LoginRejected`](crate::longport::CloseCause::LoginRejected)`(PermissionDenied)`
    /// follows and no session was stored
    OverQuota {
        /// The quota
        limit: u32,
        /// The account's live connections
        online: u32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_from_ips() {
        let v4 = Source::from(Ipv4Addr::new(192, 0, 2, 7));
        let mapped = Source::from(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped());
        assert_eq!(v4, mapped, "IPv4 and IPv4-mapped IPv6 are one source");
        assert_ne!(v4, Source::from(Ipv4Addr::new(192, 0, 2, 8)));
        let a: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::from(a), Source::from(b), "one /64");
        assert_ne!(Source::from(a), Source::from(c));
        assert!(!Source::UNKNOWN.is_known() && Source::from(a).is_known());
        assert_eq!(Source::default(), Source::UNKNOWN);
        assert_eq!(Source::from_bytes([1; 16]).key(), Some([1; 16]));
        assert_eq!(Source::from_bytes([2; 16]).key(), Some([2; 16]));
        assert_eq!(Source::UNKNOWN.key(), None);
        // the key of an address: IPv4 as its IPv4-mapped form, IPv6 as its /64 prefix
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
        assert_eq!(
            Source::from(ip).key(),
            Some(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped().octets())
        );
        let mut prefix = [0u8; 16];
        prefix[..8].copy_from_slice(&a.octets()[..8]);
        assert_eq!(Source::from(IpAddr::V6(a)).key(), Some(prefix));
    }
}
