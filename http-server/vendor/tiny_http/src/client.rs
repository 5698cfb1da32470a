use ascii::AsciiString;

use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{HTTPVersion, Method};
use crate::util::RefinedTcpStream;
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::Request;

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: IoResult<Option<SocketAddr>>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    /// gatehouse patch: how long a body read on the connection's thread (up to
    /// `PRE_READ_LIMIT`) may take to arrive in full; the socket's read timeout, which bounds
    /// each read only.
    pub(crate) body_deadline: Option<Duration>,

    /// gatehouse patch: set when the application ends the connection with a request's answer
    /// (`Request::end_connection`): no further request is read.
    end: Arc<AtomicBool>,
}

/// Error that can happen when reading a request.
// gatehouse patch: the request head had no size limit; a client could grow one line, or the
// list of headers, without end. Past these bounds the client gets 431 and the connection closes.
const MAX_HEAD_LINE: usize = 8 * 1024;
const MAX_HEADERS: usize = 100;

#[derive(Debug)]
enum ReadError {
    WrongRequestLine,
    HeadTooLarge,
    VersionNotSupported,
    WrongHeader(HTTPVersion),
    /// the client sent an unrecognized `Expect` header
    ExpectationFailed(HTTPVersion),
    ReadIoError(IoError),
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
    ) -> ClientConnection {
        let remote_addr = read_socket.peer_addr();

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            body_deadline: None,
            end: Arc::new(AtomicBool::new(false)),
        }
    }

    /// gatehouse patch: after an answer that ended the connection, sends the FIN (the client
    /// learns the answer is all there is), then reads and throws away what the client still
    /// sends (the rest of a body nobody read) for a moment, so that closing does not reset the
    /// connection before the client has read the answer.
    fn linger(&mut self) {
        const MAX_LINGER_BYTES: usize = 1024 * 1024;
        const MAX_LINGER_TIME: Duration = Duration::from_secs(2);
        {
            let mut writer = self.sink.lock();
            let _ = writer.flush();
            writer.get_mut().shutdown_write();
        }
        let until = Instant::now() + MAX_LINGER_TIME;
        let mut buf = [0u8; 4096];
        let mut discarded = 0;
        while discarded < MAX_LINGER_BYTES && Instant::now() < until {
            match self.next_header_source.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(read) => discarded += read,
            }
        }
    }

    /// Reads the next line from self.next_header_source.
    ///
    /// Reads until `CRLF` is reached. The next read will start
    ///  at the first byte of the new line.
    fn read_next_line(&mut self) -> Result<AsciiString, ReadError> {
        let mut buf = Vec::new();
        let mut prev_byte_was_cr = false;

        loop {
            let mut byte = [0u8; 1];
            let byte = match self.next_header_source.read(&mut byte) {
                Ok(0) => {
                    return Err(ReadError::ReadIoError(IoError::new(
                        ErrorKind::ConnectionAborted,
                        "Unexpected EOF",
                    )))
                }
                Ok(_) => byte[0],
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(ReadError::ReadIoError(e)),
            };

            if byte == b'\n' && prev_byte_was_cr {
                buf.pop(); // removing the '\r'
                return AsciiString::from_ascii(buf).map_err(|_| {
                    ReadError::ReadIoError(IoError::new(
                        ErrorKind::InvalidInput,
                        "Header is not in ASCII",
                    ))
                });
            }

            prev_byte_was_cr = byte == b'\r';

            if buf.len() >= MAX_HEAD_LINE {
                return Err(ReadError::HeadTooLarge);
            }
            buf.push(byte);
        }
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        // gatehouse patch: the previous request's answer may have ended the connection; that
        // is known once its body reader is done, before anything more is read.
        self.next_header_source.wait_turn();
        if self.end.load(Ordering::Relaxed) {
            self.linger();
            return Err(ReadError::ReadIoError(IoError::new(
                ErrorKind::ConnectionAborted,
                "the connection was ended with the last answer",
            )));
        }
        let (method, path, version, headers) = {
            // reading the request line
            let (method, path, version) = {
                let line = self.read_next_line()?;

                parse_request_line(
                    line.as_str().trim(), // TODO: remove this conversion
                )?
            };
            // gatehouse patch: this was checked after the request was built, and the 505 then
            // waited for the writer the live request held: a deadlock that leaked the thread.
            if version > (1, 1) {
                return Err(ReadError::VersionNotSupported);
            }

            // getting all headers
            let headers = {
                let mut headers = Vec::new();
                loop {
                    let line = self.read_next_line()?;

                    if line.is_empty() {
                        break;
                    };
                    if headers.len() >= MAX_HEADERS {
                        return Err(ReadError::HeadTooLarge);
                    }
                    // gatehouse patch: a folded line (obs-fold, starting with a space or tab)
                    // was trimmed and read as a header of its own, where a proxy that unfolds
                    // it reads it as part of the previous one (RFC 9112 section 5.2: reject).
                    if line.as_str().starts_with([' ', '\t']) {
                        return Err(ReadError::WrongHeader(version));
                    }
                    headers.push(match FromStr::from_str(line.as_str().trim()) {
                        // TODO: remove this conversion
                        Ok(h) => h,
                        _ => return Err(ReadError::WrongHeader(version)),
                    });
                }

                headers
            };

            (method, path, version, headers)
        };

        // building the writer for the request
        let writer = self.sink.next().unwrap();

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // building the next reader
        let request = crate::request::new_request(
            false, // gatehouse patch: no TLS in this fork
            method,
            path,
            version.clone(),
            headers,
            // gatehouse patch: was `*self.remote_addr.as_ref().unwrap()`, a panic when the
            // peer reset the connection before its address was read.
            self.remote_addr.as_ref().ok().copied().flatten(),
            data_source,
            writer,
            self.body_deadline,
            Some(Arc::clone(&self.end)),
        )
        .map_err(|e| {
            use crate::request;
            match e {
                request::RequestCreationError::CreationIoError(e) => ReadError::ReadIoError(e),
                request::RequestCreationError::ExpectationFailed => {
                    ReadError::ExpectationFailed(version)
                }
                request::RequestCreationError::BadFraming => ReadError::WrongHeader(version),
            }
        })?;

        // return the request
        Ok(request)
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            return None;
        }

        let rq = match self.read() {
            Err(ReadError::WrongRequestLine) => {
                let writer = self.sink.next().unwrap();
                let response =
                    error_response(400, "bad_request", "the request line is not valid HTTP/1.x");
                response
                    .raw_print(writer, HTTPVersion(1, 1), &[], false, None)
                    .ok();
                return None; // we don't know where the next request would start,
                             // se we have to close
            }

            Err(ReadError::VersionNotSupported) => {
                let writer = self.sink.next().unwrap();
                let response = error_response(
                    505,
                    "http_version_not_supported",
                    "only HTTP/1.0 and HTTP/1.1 are supported",
                );
                response
                    .raw_print(writer, HTTPVersion(1, 1), &[], false, None)
                    .ok();
                return None; // the rest of the head is unread
            }

            Err(ReadError::HeadTooLarge) => {
                let writer = self.sink.next().unwrap();
                let response = error_response(
                    431,
                    "request_header_fields_too_large",
                    "a request head line is over 8 KiB, or there are over 100 headers",
                );
                response
                    .raw_print(writer, HTTPVersion(1, 1), &[], false, None)
                    .ok();
                return None; // the rest of the head is unread, so the connection closes
            }

            Err(ReadError::WrongHeader(ver)) => {
                let writer = self.sink.next().unwrap();
                let response = error_response(400, "bad_request", "a request header is not valid");
                response.raw_print(writer, ver, &[], false, None).ok();
                return None; // we don't know where the next request would start,
                             // se we have to close
            }

            Err(ReadError::ReadIoError(ref err)) if err.kind() == ErrorKind::TimedOut => {
                // request timeout
                let writer = self.sink.next().unwrap();
                let response = error_response(
                    408,
                    "request_timeout",
                    "the request head did not arrive in time",
                );
                response
                    .raw_print(writer, HTTPVersion(1, 1), &[], false, None)
                    .ok();
                return None; // closing the connection
            }

            Err(ReadError::ExpectationFailed(ver)) => {
                let writer = self.sink.next().unwrap();
                let response = error_response(
                    417,
                    "expectation_failed",
                    "only Expect: 100-continue is supported",
                );
                response.raw_print(writer, ver, &[], true, None).ok();
                return None; // TODO: should be recoverable, but needs handling in case of body
            }

            Err(ReadError::ReadIoError(_)) => return None,

            Ok(rq) => rq,
        };

        // updating the status of the connection
        let connection_header = rq
            .headers()
            .iter()
            .find(|h| h.field.equiv("Connection"))
            .map(|h| h.value.as_str());

        let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

        match lowercase {
            Some(ref val) if val.contains("close") => self.no_more_requests = true,
            Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
            Some(ref val)
                if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
            {
                self.no_more_requests = true
            }
            None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
            _ => (),
        };

        Some(rq)
    }
}

// gatehouse patch: the errors found while reading a request head were answered with empty
// bodies; they now carry the service's JSON error body, like every other error, and a request id
// (32 random hex digits, in the body and in `X-Request-Id`, as the service makes them): the head
// could not be read, so the client's own id cannot be trusted to be in it.
fn error_response(
    status: u16,
    code: &str,
    message: &str,
) -> crate::Response<std::io::Cursor<Vec<u8>>> {
    use crate::{Header, Response, StatusCode};
    let id = format!("{:032x}", fastrand::u128(..));
    log::debug!("answered {status} {code} to a request head (request_id {id})");
    let body = format!(
        r#"{{"error":{{"code":"{}","message":"{}","request_id":"{}"}}}}"#,
        code, message, id
    );
    Response::from_data(body.into_bytes())
        .with_status_code(StatusCode(status))
        .with_header(
            Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..])
                .expect("a valid header"),
        )
        .with_header(
            Header::from_bytes(&b"X-Request-Id"[..], id.as_bytes()).expect("a valid header"),
        )
}

/// Parses a "HTTP/1.1" string.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ReadError> {
    let (major, minor) = match version {
        "HTTP/0.9" => (0, 9),
        "HTTP/1.0" => (1, 0),
        "HTTP/1.1" => (1, 1),
        "HTTP/2.0" => (2, 0),
        "HTTP/3.0" => (3, 0),
        _ => return Err(ReadError::WrongRequestLine),
    };

    Ok(HTTPVersion(major, minor))
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ReadError> {
    let mut parts = line.split(' ');

    let method = parts.next().and_then(|w| w.parse().ok());
    let path = parts.next().map(ToOwned::to_owned);
    let version = parts.next().and_then(|w| parse_http_version(w).ok());

    method
        .and_then(|method| Some((method, path?, version?)))
        .ok_or(ReadError::WrongRequestLine)
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
    }
}
