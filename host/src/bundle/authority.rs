//! Network authorities (`host:port`) as a bundle manifest names them, and as the
//! host compares them: parsed strictly (an explicit port, no user-info, nothing a
//! host name cannot hold) and normalised (lower-case host, IPv6 without brackets),
//! so that two spellings of one destination compare equal.
//!
//! It sits low in the tree because both sides of a destination check need it: the
//! manifest (`[egress].allow`, a sealed secret's `to`) and the request path's
//! egress guard.

use std::net::IpAddr;

/// A normalised `host:port` authority.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Authority {
    /// Lower-case; IPv6 addresses without brackets.
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Why an authority is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    #[error("user-info (`user@`) is not allowed in an authority")]
    UserInfo,
    #[error("the port must be a number from 1 to 65535")]
    Port,
    #[error("the host is empty or has characters a host name cannot have")]
    Host,
    #[error("an explicit port is required (host:port)")]
    MissingPort,
}

impl Authority {
    /// Parses `host:port` (as written in a manifest): a port is required.
    pub fn parse(text: &str) -> Result<Self, AuthorityError> {
        Self::parse_with_default(text, None)
    }

    /// Parses an authority, using `default_port` when none is written.
    pub fn parse_with_default(
        text: &str,
        default_port: Option<u16>,
    ) -> Result<Self, AuthorityError> {
        if text.contains('@') {
            return Err(AuthorityError::UserInfo);
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or(AuthorityError::Host)?;
            let port = match after.strip_prefix(':') {
                Some(port) => Some(port),
                None if after.is_empty() => None,
                None => return Err(AuthorityError::Host),
            };
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(AuthorityError::Host);
            }
            (host, port)
        } else {
            match text.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (text, None),
            }
        };
        let port = match port {
            Some(port) => parse_port(port)?,
            None => default_port.ok_or(AuthorityError::MissingPort)?,
        };
        let valid_host = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
        if !valid_host {
            return Err(AuthorityError::Host);
        }
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// The address, when the host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

fn parse_port(text: &str) -> Result<u16, AuthorityError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AuthorityError::Port);
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(AuthorityError::Port),
        Ok(port) => Ok(port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_are_normalised_and_strict() {
        let a = Authority::parse("API.Example.com:443").unwrap();
        assert_eq!(a.to_string(), "api.example.com:443");
        assert_eq!(
            Authority::parse("[::1]:8080").unwrap().to_string(),
            "[::1]:8080"
        );
        assert_eq!(
            Authority::parse_with_default("example.com", Some(80))
                .unwrap()
                .port,
            80
        );
        for (bad, why) in [
            ("user@example.com:443", AuthorityError::UserInfo),
            ("example.com:99999", AuthorityError::Port),
            ("example.com:0", AuthorityError::Port),
            ("example.com:+80", AuthorityError::Port),
            ("example.com:", AuthorityError::Port),
            ("example.com", AuthorityError::MissingPort),
            (":80", AuthorityError::Host),
            ("exa mple.com:80", AuthorityError::Host),
            ("[not-v6]:80", AuthorityError::Host),
        ] {
            assert_eq!(Authority::parse(bad), Err(why), "{bad}");
        }
    }
}
