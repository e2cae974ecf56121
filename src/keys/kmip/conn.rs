//! One TLS connection to a KMIP server, with mutual authentication and a deadline on everything.
//!
//! rustls does the TLS (1.3 or 1.2, ECDSA or RSA certificates on either side) with the ring provider;
//! the server must present a certificate for the address as configured (a name, or an IP address in
//! its SubjectAltName), signed by the configured CA, and the client presents its own. Every socket
//! operation runs against a deadline: the connect, the handshake and each request get the configured
//! timeout, and a server that accepts but never answers costs exactly that, never more.
//!
//! Failures keep what they are ([`ConnError`]): unreachable (nothing listens, no route), timed out,
//! the server's certificate not trusted, our certificate refused, or an answer that is not KMIP.

use super::messages::{self, Failure, Malformed, Operation};
use super::ttlv::{self, Item};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// The largest response accepted: far above any answer to the operations this client sends.
const MAX_RESPONSE: usize = 1 << 20;

/// Why talking to one server failed.
#[derive(Debug)]
pub(crate) enum ConnError {
    /// The address does not resolve, or nothing accepts connections there.
    Unreachable(io::Error),
    /// No answer before the deadline.
    TimedOut,
    /// The server's certificate is not one to trust (unknown CA, wrong name, expired).
    UntrustedServer(rustls::Error),
    /// The server refused our client certificate (it sent an alert, or closed the handshake).
    Rejected(String),
    /// Another TLS failure (no common protocol version or cipher suite).
    Tls(rustls::Error),
    /// The server closed the connection, or an I/O error after the handshake.
    Io(io::Error),
    /// An answer that is not a KMIP response to the request.
    Protocol(String),
}

impl core::fmt::Display for ConnError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConnError::Unreachable(err) => write!(f, "unreachable ({err})"),
            ConnError::TimedOut => f.write_str("no answer within the timeout"),
            ConnError::UntrustedServer(err) => {
                write!(f, "its TLS certificate is not trusted ({err}): check `ca` in the configuration")
            }
            ConnError::Rejected(why) => write!(
                f,
                "it refused the TLS client certificate ({why}): check `client_cert` and `client_key`"
            ),
            ConnError::Tls(err) => write!(f, "TLS failed ({err})"),
            ConnError::Io(err) => write!(f, "the connection failed ({err})"),
            ConnError::Protocol(why) => write!(f, "it does not answer as a KMIP server: {why}"),
        }
    }
}

/// A TCP stream whose every read and write gives up at a deadline.
struct DeadlineStream {
    sock: TcpStream,
    deadline: Instant,
}

impl DeadlineStream {
    fn left(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() { Err(io::ErrorKind::TimedOut.into()) } else { Ok(left) }
    }
}

/// A socket timeout shows as `WouldBlock` or `TimedOut` depending on the platform: both are the deadline.
fn deadline_error(err: io::Error) -> io::Error {
    match err.kind() {
        io::ErrorKind::WouldBlock => io::ErrorKind::TimedOut.into(),
        _ => err,
    }
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.set_read_timeout(Some(self.left()?))?;
        self.sock.read(buf).map_err(deadline_error)
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.set_write_timeout(Some(self.left()?))?;
        self.sock.write(buf).map_err(deadline_error)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

/// An open, authenticated connection to one server.
pub(crate) struct Session {
    stream: StreamOwned<ClientConnection, DeadlineStream>,
    timeout: Duration,
}

/// The host part of `host:port` or `[v6]:port`, as the server's certificate must name it.
fn host_of(server: &str) -> &str {
    let host = server.rsplit_once(':').map_or(server, |(host, _)| host);
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host)
}

/// Sorts an I/O error of the handshake or an exchange.
fn classify(err: io::Error, handshaking: bool) -> ConnError {
    if err.kind() == io::ErrorKind::TimedOut {
        return ConnError::TimedOut;
    }
    if let Some(tls) = err.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        return match tls {
            rustls::Error::InvalidCertificate(_) => ConnError::UntrustedServer(tls.clone()),
            rustls::Error::AlertReceived(alert) if handshaking => {
                ConnError::Rejected(format!("TLS alert {alert:?}"))
            }
            _ => ConnError::Tls(tls.clone()),
        };
    }
    match err.kind() {
        // With TLS 1.2 a server that does not accept our certificate may just close the connection.
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            if handshaking =>
        {
            ConnError::Rejected("it closed the connection during the handshake".into())
        }
        _ => ConnError::Io(err),
    }
}

impl Session {
    /// Connects to `server` (`host:port`) and completes the TLS handshake, all within `timeout`.
    pub(crate) fn connect(
        tls: &Arc<ClientConfig>,
        server: &str,
        timeout: Duration,
    ) -> Result<Session, ConnError> {
        let deadline = Instant::now() + timeout;
        let name = ServerName::try_from(host_of(server).to_owned()).map_err(|_| {
            ConnError::Unreachable(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a host name or IP address",
            ))
        })?;
        let addrs: Vec<SocketAddr> = server.to_socket_addrs().map_err(ConnError::Unreachable)?.collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the name resolves to no address");
        let mut sock = None;
        for addr in addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ConnError::TimedOut);
            }
            match TcpStream::connect_timeout(&addr, left) {
                Ok(s) => {
                    sock = Some(s);
                    break;
                }
                Err(err) if matches!(err.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {
                    return Err(ConnError::TimedOut);
                }
                Err(err) => last = err,
            }
        }
        let sock = sock.ok_or(ConnError::Unreachable(last))?;
        sock.set_nodelay(true).map_err(ConnError::Io)?;
        let conn = ClientConnection::new(Arc::clone(tls), name).map_err(ConnError::Tls)?;
        let mut stream = StreamOwned::new(conn, DeadlineStream { sock, deadline });
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).map_err(|err| classify(err, true))?;
        }
        Ok(Session { stream, timeout })
    }

    /// Sends one request and reads its answer, within the timeout; returns the payload or the
    /// server's failure.
    pub(crate) fn call(
        &mut self,
        request: &Item,
        operation: Operation,
    ) -> Result<Result<Item, Failure>, ConnError> {
        self.stream.sock.deadline = Instant::now() + self.timeout;
        // TLS 1.3 servers may still refuse our certificate after the handshake looks complete, which
        // shows only at the first exchange: an alert here is that refusal too.
        let first = |err| classify(err, true);
        self.stream.write_all(&request.to_bytes()).map_err(first)?;
        self.stream.flush().map_err(first)?;
        let mut head = [0u8; ttlv::HEADER_LEN];
        self.stream.read_exact(&mut head).map_err(first)?;
        let (tag, ty, len) = ttlv::header(&head).map_err(|e| ConnError::Protocol(e.to_string()))?;
        if tag != messages::tag::RESPONSE_MESSAGE || ty != 0x01 {
            return Err(ConnError::Protocol("the answer is not a KMIP response message".into()));
        }
        let len = len as usize;
        if len > MAX_RESPONSE || !len.is_multiple_of(8) {
            return Err(ConnError::Protocol(format!("a response of {len} bytes")));
        }
        // The response may carry key material: its buffer zeroizes when dropped.
        let mut message = Zeroizing::new(vec![0u8; ttlv::HEADER_LEN + len]);
        message[..ttlv::HEADER_LEN].copy_from_slice(&head);
        self.stream.read_exact(&mut message[ttlv::HEADER_LEN..]).map_err(|err| classify(err, false))?;
        let response = Item::from_bytes(&message).map_err(|e| ConnError::Protocol(e.to_string()))?;
        messages::response_payload(&response, operation)
            .map_err(|why: Malformed| ConnError::Protocol(why.into()))
    }

    /// The TLS version negotiated, for `keys kmip check`.
    pub(crate) fn tls_version(&self) -> String {
        self.stream.conn.protocol_version().map_or_else(|| "unknown".into(), |v| format!("{v:?}"))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // A clean close lets the server end its session at once; failing to send it costs nothing.
        self.stream.conn.send_close_notify();
        self.stream.sock.deadline = Instant::now() + Duration::from_millis(100);
        while self.stream.conn.wants_write() {
            if self.stream.conn.write_tls(&mut self.stream.sock).is_err() {
                break;
            }
        }
    }
}
