//! A small blocking HTTP/1.1 client for the scenarios' single requests: one fresh connection
//! per request (`Connection: close`), optionally from a chosen loopback source address (the
//! service limits registrations per client address), one deadline for the whole exchange, and
//! a failure named by what went wrong rather than an error, because the scenarios count them.

use std::fmt;
use std::io::{self, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

/// The largest answer read; the service's answers here are a few hundred bytes.
const MAX_ANSWER: usize = 1024 * 1024;

/// How a request ended: an HTTP status, or the name of a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    Status(u16),
    /// `refused`, `timeout`, `reset`, `closed` (before a whole answer), `protocol` (not HTTP)
    /// or `io`.
    Failed(&'static str),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Status(status) => write!(f, "{status}"),
            Outcome::Failed(name) => f.write_str(name),
        }
    }
}

/// One finished request.
#[derive(Debug)]
pub struct Answer {
    pub outcome: Outcome,
    /// From before the connect to the end of the answer or the failure.
    pub took: Duration,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON, if it is.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A request to be sent to 127.0.0.1.
pub struct Call {
    method: &'static str,
    port: u16,
    path: String,
    body: Option<String>,
    headers: Vec<(&'static str, String)>,
    source: Option<Ipv4Addr>,
    timeout: Duration,
}

impl Call {
    fn new(method: &'static str, port: u16, path: &str) -> Call {
        Call {
            method,
            port,
            path: path.to_owned(),
            body: None,
            headers: Vec::new(),
            source: None,
            timeout: Duration::from_secs(3),
        }
    }

    pub fn get(port: u16, path: &str) -> Call {
        Call::new("GET", port, path)
    }

    pub fn post(port: u16, path: &str) -> Call {
        Call::new("POST", port, path)
    }

    /// A JSON body (and its Content-Type).
    pub fn json(mut self, body: &serde_json::Value) -> Call {
        self.body = Some(body.to_string());
        self
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Call {
        self.headers.push((name, value.to_owned()));
        self
    }

    /// Connect from this loopback address.
    pub fn from(mut self, source: Ipv4Addr) -> Call {
        self.source = Some(source);
        self
    }

    /// The longest the whole exchange may take (3 s unless set).
    pub fn timeout(mut self, timeout: Duration) -> Call {
        self.timeout = timeout;
        self
    }

    pub fn send(&self) -> Answer {
        let started = Instant::now();
        let (outcome, body) = match self.exchange() {
            Ok((status, body)) => (Outcome::Status(status), body),
            Err(error) => (Outcome::Failed(failure_name(&error)), Vec::new()),
        };
        Answer {
            outcome,
            took: started.elapsed(),
            body,
        }
    }

    fn exchange(&self) -> io::Result<(u16, Vec<u8>)> {
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        if let Some(source) = self.source {
            socket.bind(&SocketAddr::from((source, 0)).into())?;
        }
        socket.connect_timeout(&address.into(), self.timeout)?;
        let mut link = service::link::Link::plain(socket.into());
        // One deadline for the whole exchange, as the servers themselves use.
        let mut io = service::link::Deadline::after(&mut link, self.timeout);
        io.write_all(self.head().as_bytes())?;
        if let Some(body) = &self.body {
            io.write_all(body.as_bytes())?;
        }
        read_answer(&mut io)
    }

    fn head(&self) -> String {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n",
            self.method, self.path, self.port
        );
        if let Some(body) = &self.body {
            head += &format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            );
        }
        for (name, value) in &self.headers {
            head += &format!("{name}: {value}\r\n");
        }
        head + "\r\n"
    }
}

fn failure_name(error: &io::Error) -> &'static str {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => "refused",
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timeout",
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => "reset",
        io::ErrorKind::UnexpectedEof => "closed",
        io::ErrorKind::InvalidData => "protocol",
        _ => "io",
    }
}

/// Reads one answer: its status and body (by Content-Length, else up to the close).
fn read_answer(reader: &mut impl io::Read) -> io::Result<(u16, Vec<u8>)> {
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = reader.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        data.extend_from_slice(&chunk[..n]);
        if let Some((status, head_len, length)) = parse_head(&data)? {
            let mut body = data.split_off(head_len);
            match length {
                Some(length) => {
                    if length > MAX_ANSWER {
                        return Err(io::ErrorKind::InvalidData.into());
                    }
                    while body.len() < length {
                        let n = reader.read(&mut chunk)?;
                        if n == 0 {
                            return Err(io::ErrorKind::UnexpectedEof.into());
                        }
                        body.extend_from_slice(&chunk[..n]);
                    }
                    body.truncate(length);
                }
                None => {
                    reader
                        .by_ref()
                        .take(MAX_ANSWER as u64)
                        .read_to_end(&mut body)?;
                }
            }
            return Ok((status, body));
        }
        if data.len() > MAX_ANSWER {
            return Err(io::ErrorKind::InvalidData.into());
        }
    }
}

/// A whole response head in `data`: (status, its length, Content-Length); `None` while it is
/// incomplete.
pub fn parse_head(data: &[u8]) -> io::Result<Option<(u16, usize, Option<usize>)>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let invalid = |_| io::Error::from(io::ErrorKind::InvalidData);
    let httparse::Status::Complete(head_len) = response.parse(data).map_err(invalid)? else {
        return Ok(None);
    };
    let status = response.code.ok_or(io::ErrorKind::InvalidData)?;
    let length = response
        .headers
        .iter()
        .find(|header| header.name.eq_ignore_ascii_case("content-length"))
        .map(|header| {
            std::str::from_utf8(header.value)
                .ok()
                .and_then(|value| value.trim().parse::<usize>().ok())
                .ok_or(io::ErrorKind::InvalidData)
        })
        .transpose()?;
    Ok(Some((status, head_len, length)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_read_by_its_content_length() {
        let mut wire: &[u8] =
            b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX: y\r\n\r\nhello and then some";
        let (status, body) = read_answer(&mut wire).unwrap();
        assert_eq!((status, body.as_slice()), (201, &b"hello"[..]));
    }

    #[test]
    fn an_answer_without_a_length_runs_to_the_close() {
        let mut wire: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\r\n{\"error\":{}}";
        let (status, body) = read_answer(&mut wire).unwrap();
        assert_eq!((status, body.as_slice()), (503, &b"{\"error\":{}}"[..]));
    }

    #[test]
    fn a_cut_answer_is_closed_and_garbage_is_protocol() {
        let error = read_answer(&mut &b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"[..])
            .unwrap_err();
        assert_eq!(failure_name(&error), "closed");
        let error = read_answer(&mut &b"SSH-2.0-OpenSSH\r\n\r\n"[..]).unwrap_err();
        assert_eq!(failure_name(&error), "protocol");
    }

    #[test]
    fn a_head_is_incomplete_until_its_blank_line() {
        assert_eq!(
            parse_head(b"HTTP/1.1 408 Request Timeout\r\n").unwrap(),
            None
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 408 Request Timeout\r\n\r\n").unwrap(),
            Some((408, 32, None))
        );
    }

    #[test]
    fn the_head_carries_the_body_length_and_extra_headers() {
        let call = Call::post(8080, "/api/v1/sessions")
            .json(&serde_json::json!({"username": "user1"}))
            .header("Device-Token", "abc");
        assert_eq!(
            call.head(),
            "POST /api/v1/sessions HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: 20\r\nDevice-Token: abc\r\n\r\n"
        );
    }
}
