//! One keep-alive HTTP/1.1 connection, as lean as a load generator needs: requests are written
//! from bytes prepared by the caller, and responses are parsed with httparse into a reused
//! buffer. Nothing is allocated per request once the buffers have grown.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

/// Why a request got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Failure {
    /// The connection could not be opened.
    Connect,
    /// No whole response arrived within the request timeout.
    Timeout,
    /// The connection failed or closed mid-exchange.
    Io,
    /// The bytes were not an HTTP/1.1 response we can read.
    Protocol,
}

impl Failure {
    pub fn name(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Timeout => "timeout",
            Failure::Io => "io",
            Failure::Protocol => "protocol",
        }
    }
}

/// A response: its status and its body (the body's bytes are valid until the next request).
pub struct Answer<'a> {
    pub status: u16,
    pub body: &'a [u8],
}

/// The largest response head or body read; anything bigger is a protocol failure.
const MAX_RESPONSE: usize = 1024 * 1024;

pub struct Connection {
    address: SocketAddr,
    timeout: Duration,
    /// The local address to connect from (the system's choice when `None`).
    source: Option<IpAddr>,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    /// The last answer's `Retry-After`, in whole seconds as the servers send it.
    retry_after: Option<Duration>,
}

impl Connection {
    /// A connection that opens lazily, and reopens after a failure.
    pub fn new(address: SocketAddr, timeout: Duration) -> Connection {
        Connection {
            address,
            timeout,
            source: None,
            stream: None,
            buf: Vec::with_capacity(4096),
            retry_after: None,
        }
    }

    /// The last answer's `Retry-After`, if it had one.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Connects from `source` from now on: the open socket (if any) is closed, and the next
    /// request opens one from there.
    pub fn move_to(&mut self, source: IpAddr) {
        self.source = Some(source);
        self.stream = None;
    }

    /// Opens the socket now if it is not open; true when it was just opened.
    pub fn connect(&mut self) -> Result<bool, Failure> {
        let opened = self.stream.is_none();
        if opened {
            let stream = self.open().map_err(|_| Failure::Connect)?;
            stream.set_nodelay(true).map_err(|_| Failure::Connect)?;
            stream
                .set_read_timeout(Some(self.timeout))
                .map_err(|_| Failure::Connect)?;
            stream
                .set_write_timeout(Some(self.timeout))
                .map_err(|_| Failure::Connect)?;
            self.stream = Some(stream);
        }
        Ok(opened)
    }

    fn open(&self) -> io::Result<TcpStream> {
        let Some(source) = self.source else {
            return TcpStream::connect_timeout(&self.address, self.timeout);
        };
        let socket = Socket::new(Domain::for_address(self.address), Type::STREAM, None)?;
        socket.bind(&SocketAddr::new(source, 0).into())?;
        socket.connect_timeout(&self.address.into(), self.timeout)?;
        Ok(socket.into())
    }

    /// Sends one whole request and reads its response. After a failure the connection is
    /// closed; the next request opens a new one.
    pub fn send(&mut self, request: &[u8]) -> Result<Answer<'_>, Failure> {
        self.retry_after = None;
        let opened = self.connect()?;
        let mut result = self.exchange(request);
        // A kept-alive socket the server closed while idle fails before any byte of an answer:
        // that is not the server failing this request, so it goes once more on a new socket.
        if !opened && result == Err(Failure::Io) && self.buf.is_empty() {
            self.stream = None;
            self.connect()?;
            result = self.exchange(request);
        }
        match result {
            Ok((status, start, end)) => Ok(Answer {
                status,
                body: &self.buf[start..end],
            }),
            Err(failure) => {
                self.stream = None;
                Err(failure)
            }
        }
    }

    fn exchange(&mut self, request: &[u8]) -> Result<(u16, usize, usize), Failure> {
        let stream = self.stream.as_mut().ok_or(Failure::Io)?;
        stream.write_all(request).map_err(io_failure)?;
        self.buf.clear();
        let (status, head_len, body_len, close) = loop {
            read_some(stream, &mut self.buf)?;
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&self.buf) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let status = response.code.ok_or(Failure::Protocol)?;
                    let mut body_len = None;
                    let mut close = false;
                    let mut retry_after = None;
                    for header in response.headers.iter() {
                        if header.name.eq_ignore_ascii_case("content-length") {
                            body_len = std::str::from_utf8(header.value)
                                .ok()
                                .and_then(|v| v.trim().parse::<usize>().ok());
                        } else if header.name.eq_ignore_ascii_case("connection") {
                            close = header.value.eq_ignore_ascii_case(b"close");
                        } else if header.name.eq_ignore_ascii_case("retry-after") {
                            retry_after = std::str::from_utf8(header.value)
                                .ok()
                                .and_then(|v| v.trim().parse::<u64>().ok())
                                .map(Duration::from_secs);
                        }
                    }
                    self.retry_after = retry_after;
                    // The servers under test always send Content-Length; a response without
                    // one could only be delimited by closing, which a keep-alive client cannot
                    // use.
                    let body_len = body_len.ok_or(Failure::Protocol)?;
                    if body_len > MAX_RESPONSE {
                        return Err(Failure::Protocol);
                    }
                    break (status, head_len, body_len, close);
                }
                Ok(httparse::Status::Partial) if self.buf.len() < MAX_RESPONSE => {}
                _ => return Err(Failure::Protocol),
            }
        };
        while self.buf.len() < head_len + body_len {
            read_some(stream, &mut self.buf)?;
        }
        if self.buf.len() > head_len + body_len {
            // Bytes nobody asked for: the connection is out of step.
            return Err(Failure::Protocol);
        }
        if close {
            self.stream = None;
        }
        Ok((status, head_len, head_len + body_len))
    }
}

fn read_some(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), Failure> {
    let start = buf.len();
    buf.resize(start + 4096, 0);
    let read = stream.read(&mut buf[start..]);
    match read {
        Ok(0) => {
            buf.truncate(start);
            Err(Failure::Io)
        }
        Ok(n) => {
            buf.truncate(start + n);
            Ok(())
        }
        Err(error) => {
            buf.truncate(start);
            Err(io_failure(error))
        }
    }
}

fn io_failure(error: io::Error) -> Failure {
    match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Failure::Timeout,
        _ => Failure::Io,
    }
}
