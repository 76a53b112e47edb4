//! Socket addresses as users write them: `IP:PORT`, `[IPv6]:PORT`,
//! `host:PORT`, and `unix:/path/to.sock` for UNIX domain sockets.
//!
//! The command line only checks the shape; names are resolved once, when the
//! command starts, so a slow resolver never sits inside the poll loop.

use std::fmt;
use std::net::ToSocketAddrs;
use std::path::PathBuf;

use super::net::NetError;
use crate::engine::net::Address;

/// Prefix of a UNIX domain socket address.
const UNIX: &str = "unix:";

/// An address as given on the command line, checked for shape but not resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    text: String,
}

impl Endpoint {
    /// Checks the shape `HOST:PORT` or `unix:PATH`; returns the reason
    /// when it is wrong.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        if let Some(path) = text.strip_prefix(UNIX) {
            if path.is_empty() {
                return Err(format!(
                    "'{text}' is not an address: the socket path is empty"
                ));
            }
            return Ok(Endpoint {
                text: text.to_string(),
            });
        }
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("'{text}' is not an address: expected HOST:PORT"))?;
        if host.is_empty() {
            return Err(format!("'{text}' is not an address: the host is empty"));
        }
        let bracketed = host.starts_with('[') && host.ends_with(']');
        if host.contains(':') && !bracketed {
            return Err(format!(
                "'{text}' is not an address: write IPv6 addresses as [ADDR]:PORT"
            ));
        }
        port.parse::<u16>()
            .map_err(|_| format!("'{text}' is not an address: '{port}' is not a port number"))?;
        Ok(Endpoint {
            text: text.to_string(),
        })
    }

    /// Resolves the address; the first result wins, as for `connect` in std.
    pub fn resolve(&self) -> Result<Address, NetError> {
        if let Some(path) = self.text.strip_prefix(UNIX) {
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        let resolve_error = |source| NetError {
            action: "resolve",
            source,
        };
        let mut addrs = self.text.to_socket_addrs().map_err(resolve_error)?;
        addrs.next().map(Address::Tcp).ok_or_else(|| {
            resolve_error(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no addresses found",
            ))
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ipv4_ipv6_and_names() {
        for text in ["127.0.0.1:80", "[::1]:0", "localhost:65535"] {
            assert!(Endpoint::parse(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn rejects_bad_shapes_with_reason() {
        let err = Endpoint::parse("localhost").unwrap_err();
        assert!(err.contains("expected HOST:PORT"), "{err}");
        let err = Endpoint::parse("::1:80").unwrap_err();
        assert!(err.contains("[ADDR]:PORT"), "{err}");
        let err = Endpoint::parse("host:http").unwrap_err();
        assert!(err.contains("'http' is not a port number"), "{err}");
        let err = Endpoint::parse("host:70000").unwrap_err();
        assert!(err.contains("'70000'"), "{err}");
        let err = Endpoint::parse(":80").unwrap_err();
        assert!(err.contains("host is empty"), "{err}");
    }

    #[test]
    fn resolves_literal_addresses() {
        let v4 = Endpoint::parse("127.0.0.1:8080")
            .unwrap()
            .resolve()
            .unwrap();
        assert_eq!(v4, Address::Tcp("127.0.0.1:8080".parse().unwrap()));
        let v6 = Endpoint::parse("[::1]:9").unwrap().resolve().unwrap();
        assert_eq!(v6, Address::Tcp("[::1]:9".parse().unwrap()));
        let unix = Endpoint::parse("unix:/run/pg.sock")
            .unwrap()
            .resolve()
            .unwrap();
        assert_eq!(unix, Address::Unix("/run/pg.sock".into()));
        assert_eq!(unix.to_string(), "unix:/run/pg.sock");
        assert!(
            Endpoint::parse("unix:")
                .unwrap_err()
                .contains("path is empty")
        );
    }

    #[test]
    fn unresolvable_name_is_an_error_naming_it() {
        let err = Endpoint::parse("no-such-host.invalid:80")
            .unwrap()
            .resolve()
            .unwrap_err();
        assert_eq!(err.action, "resolve");
        assert!(!err.source.to_string().is_empty());
    }
}
