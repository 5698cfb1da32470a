use std::io::Error as IoError;
use std::io::{self, Cursor, ErrorKind, Read, Write};

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::mpsc::Sender;

use crate::util::{ChunkedDecoder, EqualReader, FusedReader};
use crate::{HTTPVersion, Header, Method, Response, StatusCode};

/// Represents an HTTP request made by a client.
///
/// A `Request` object is what is produced by the server, and is your what
/// your code must analyse and answer.
///
/// This object implements the `Send` trait, therefore you can dispatch your requests to
/// worker threads.
///
/// # Pipelining
///
/// gatehouse patch: a connection has one request in flight. If a client sends multiple
/// requests in a row (without waiting for the response), the next `Request` is returned by the
/// server only once the previous one has been answered, so one client cannot hold more than
/// one worker.
///
/// # Automatic cleanup
///
/// If a `Request` object is destroyed without `into_writer` or `respond` being called,
/// an empty response with a 500 status code (internal server error) will automatically be
/// sent back to the client.
/// This means that if your code fails during the handling of a request, this "internal server
/// error" response will automatically be sent during the stack unwinding.
///
/// # Testing
///
/// If you want to build fake requests to test your server, use [`TestRequest`](crate::test::TestRequest).
pub struct Request {
    // where to read the body from
    data_reader: Option<Box<dyn Read + Send + 'static>>,

    // if this writer is empty, then the request has been answered
    response_writer: Option<Box<dyn Write + Send + 'static>>,

    remote_addr: Option<SocketAddr>,

    // true if HTTPS, false if HTTP
    secure: bool,

    method: Method,

    path: String,

    http_version: HTTPVersion,

    headers: Vec<Header>,

    body_length: Option<usize>,

    // true if a `100 Continue` response must be sent when `as_reader()` is called
    must_send_continue: bool,

    // If Some, a message must be sent after responding
    notify_when_responded: Option<Sender<()>>,

    // gatehouse patch: the server is closing and this is the connection's last request; the
    // response says `Connection: close`.
    connection_close: bool,

    // gatehouse patch: when the request was complete (its head read, and a small body with
    // it), so the application can tell how long it waited for a worker.
    received_at: Instant,

    // gatehouse patch: whether some of the body was still on the socket when the request was
    // handed over (it was longer than `PRE_READ_LIMIT`, or behind `Expect: 100-continue`).
    body_on_socket: bool,

    // gatehouse patch: set by `end_connection`: the connection's thread reads no further
    // request, and lingers briefly instead (see `ClientConnection::read`).
    connection_end: Option<Arc<AtomicBool>>,

    // gatehouse patch: cleared by `end_connection`: dropping the body reader does not drain
    // what is left of the body on the thread that drops it.
    drain_on_drop: Arc<AtomicBool>,
}

/// gatehouse patch: bodies up to this many bytes (fixed-length or chunked) are read on the
/// connection's own thread before the request is handed over, so a client trickling one never
/// holds a worker; a longer body is left on the socket for the worker to read
/// ([`Request::body_on_socket`]).
pub const PRE_READ_LIMIT: usize = 16 * 1024;

struct NotifyOnDrop<R> {
    sender: Sender<()>,
    inner: R,
}

impl<R: Read> Read for NotifyOnDrop<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}
impl<R: Write> Write for NotifyOnDrop<R> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
impl<R> Drop for NotifyOnDrop<R> {
    fn drop(&mut self) {
        let _ = self.sender.send(()); // gatehouse patch: was unwrap()
    }
}

/// gatehouse patch: fails reads with `TimedOut` past `deadline` while `armed`.
struct Deadline<R> {
    inner: R,
    deadline: Option<Instant>,
    armed: Arc<AtomicBool>,
}

impl<R: Read> Read for Deadline<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.armed.load(Ordering::Relaxed)
            && self
                .deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
        {
            return Err(IoError::new(
                ErrorKind::TimedOut,
                "the request body did not arrive in time",
            ));
        }
        self.inner.read(buf)
    }
}

/// Error that can happen when building a `Request` object.
#[derive(Debug)]
pub enum RequestCreationError {
    /// The client sent an `Expect` header that was not recognized by tiny-http.
    ExpectationFailed,

    /// Error while reading data from the socket during the creation of the `Request`.
    CreationIoError(IoError),

    /// gatehouse patch: the body's framing is ambiguous or invalid (two different
    /// `Content-Length`s, one that is not a plain number, `Transfer-Encoding` other than
    /// `chunked` or together with `Content-Length`, a malformed chunk). Answered 400, then the
    /// connection closes: where the next request would start is unknown.
    BadFraming,
}

impl From<IoError> for RequestCreationError {
    fn from(err: IoError) -> RequestCreationError {
        RequestCreationError::CreationIoError(err)
    }
}

/// Builds a new request.
///
/// After the request line and headers have been read from the socket, a new `Request` object
/// is built.
///
/// You must pass a `Read` that will allow the `Request` object to read from the incoming data.
/// It is the responsibility of the `Request` to read only the data of the request and not further.
///
/// The `Write` object will be used by the `Request` to write the response.
#[allow(clippy::too_many_arguments)]
pub fn new_request<R, W>(
    secure: bool,
    method: Method,
    path: String,
    version: HTTPVersion,
    headers: Vec<Header>,
    remote_addr: Option<SocketAddr>,
    source_data: R,
    mut writer: W,
    body_deadline: Option<Duration>,
    connection_end: Option<Arc<AtomicBool>>,
) -> Result<Request, RequestCreationError>
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    // gatehouse patch: the first Content-Length was taken, parsed leniently (`+70` was 70),
    // and a Transfer-Encoding other than chunked was decoded as chunked. Where a proxy in
    // front reads the framing another way, that lets a request be smuggled; so any framing
    // two readers could disagree on is refused (RFC 9112 sections 6.1 and 6.3).
    let transfer_encodings: Vec<&str> = headers
        .iter()
        .filter(|h| h.field.equiv("Transfer-Encoding"))
        .map(|h| h.value.as_str().trim())
        .collect();
    let lengths: Vec<&str> = headers
        .iter()
        .filter(|h| h.field.equiv("Content-Length"))
        .map(|h| h.value.as_str().trim())
        .collect();
    let chunked = match transfer_encodings[..] {
        [] => false,
        [coding] if coding.eq_ignore_ascii_case("chunked") && lengths.is_empty() => true,
        _ => return Err(RequestCreationError::BadFraming),
    };
    let content_length: Option<usize> = match lengths.first() {
        None => None,
        Some(first) => {
            if lengths.iter().any(|other| other != first)
                || first.is_empty()
                || !first.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(RequestCreationError::BadFraming);
            }
            Some(
                first
                    .parse()
                    .map_err(|_| RequestCreationError::BadFraming)?,
            )
        }
    };

    // true if the client sent a `Expect: 100-continue` header
    let expects_continue = {
        match headers
            .iter()
            .find(|h: &&Header| h.field.equiv("Expect"))
            .map(|h| h.value.as_str())
        {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("100-continue") => true,
            _ => return Err(RequestCreationError::ExpectationFailed),
        }
    };

    // we wrap `source_data` around a reading whose nature depends on the transfer-encoding and
    // content-length headers
    // gatehouse patch: a request with `Connection: upgrade` got the raw socket as its body,
    // so reading it ran past its Content-Length until the client's idle timeout. Nothing here
    // upgrades a connection; its body is read like any other.
    // gatehouse patch: the bodies read below on the connection's thread must arrive in full
    // within `body_deadline`, so a client trickling one (a byte every few seconds never trips
    // the per-read timeout) is answered 408; a longer body goes on to the worker unbounded.
    // gatehouse patch: with `Expect: 100-continue` the body was left to the worker, whatever
    // its size, so such a client could trickle it and hold the worker. A body read here gets
    // its `100 Continue` from here.
    let read_here = chunked || content_length.is_some_and(|len| len > 0 && len <= PRE_READ_LIMIT);
    if expects_continue && read_here {
        Response::new_empty(StatusCode(100)).raw_print(
            &mut writer,
            version.clone(),
            &headers,
            true,
            None,
        )?;
        writer.flush()?;
    }
    let expects_continue = expects_continue && !read_here;
    let armed = Arc::new(AtomicBool::new(true));
    let drain_on_drop = Arc::new(AtomicBool::new(true));
    let mut body_on_socket = false;
    let mut source_data = Deadline {
        inner: source_data,
        deadline: body_deadline.map(|limit| Instant::now() + limit),
        armed: Arc::clone(&armed),
    };
    let reader = if let Some(content_length) = content_length {
        if content_length == 0 {
            Box::new(io::empty()) as Box<dyn Read + Send + 'static>
        // gatehouse patch: the bound was 1024 bytes. Bodies up to `PRE_READ_LIMIT` (every JSON
        // body the service accepts) are now read here, on the connection's own thread, before
        // the request is queued, so a client trickling its body never holds a worker thread.
        } else if content_length <= PRE_READ_LIMIT && !expects_continue {
            // if the content-length is small enough, we just read everything into a buffer

            let mut buffer = vec![0; content_length];
            let mut offset = 0;

            while offset != content_length {
                let read = source_data.read(&mut buffer[offset..])?;
                if read == 0 {
                    // the socket returned EOF, but we were before the expected content-length
                    // aborting
                    let info = "Connection has been closed before we received enough data";
                    let err = IoError::new(ErrorKind::ConnectionAborted, info);
                    return Err(RequestCreationError::CreationIoError(err));
                }

                offset += read;
            }

            Box::new(Cursor::new(buffer)) as Box<dyn Read + Send + 'static>
        } else {
            body_on_socket = true;
            let (data_reader, _) =
                EqualReader::new(source_data, content_length, Arc::clone(&drain_on_drop));
            Box::new(FusedReader::new(data_reader)) as Box<dyn Read + Send + 'static>
        }
    } else if chunked && !expects_continue {
        // gatehouse patch: a chunked body was read by the worker, so a client trickling one
        // held a worker. Like a small fixed-length body, up to `PRE_READ_LIMIT` of it is now
        // read here, on the connection's own thread; a longer one (a picture) is handed on
        // with what was read so far.
        let mut decoder = ChunkedDecoder::new(source_data);
        let mut prefix = Vec::new();
        (&mut decoder)
            .take(PRE_READ_LIMIT as u64 + 1)
            .read_to_end(&mut prefix)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidInput | ErrorKind::InvalidData => {
                    RequestCreationError::BadFraming
                }
                _ => RequestCreationError::CreationIoError(e),
            })?;
        if prefix.len() <= PRE_READ_LIMIT {
            Box::new(Cursor::new(prefix)) as Box<dyn Read + Send + 'static>
        } else {
            body_on_socket = true;
            Box::new(Cursor::new(prefix).chain(FusedReader::new(decoder)))
                as Box<dyn Read + Send + 'static>
        }
    } else if chunked {
        body_on_socket = true;
        Box::new(FusedReader::new(ChunkedDecoder::new(source_data)))
            as Box<dyn Read + Send + 'static>
    } else {
        // if we have neither a Content-Length nor a Transfer-Encoding,
        // assuming that we have no data
        // TODO: could also be multipart/byteranges
        Box::new(io::empty()) as Box<dyn Read + Send + 'static>
    };

    // What the worker reads from here on has no deadline of its own.
    armed.store(false, Ordering::Relaxed);

    Ok(Request {
        data_reader: Some(reader),
        response_writer: Some(Box::new(writer) as Box<dyn Write + Send + 'static>),
        remote_addr,
        secure,
        method,
        path,
        http_version: version,
        headers,
        body_length: content_length,
        must_send_continue: expects_continue,
        notify_when_responded: None,
        connection_close: false,
        received_at: Instant::now(),
        body_on_socket: body_on_socket || expects_continue,
        connection_end,
        drain_on_drop,
    })
}

impl Request {
    /// gatehouse patch: when the request was complete and ready for a worker (its head read,
    /// and a body of up to `PRE_READ_LIMIT` with it). Its age when a worker takes it is the time
    /// it waited in the queue.
    #[inline]
    pub fn received_at(&self) -> Instant {
        self.received_at
    }

    /// Returns true if the request was made through HTTPS.
    #[inline]
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Returns the method requested by the client (eg. `GET`, `POST`, etc.).
    #[inline]
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Returns the resource requested by the client.
    #[inline]
    pub fn url(&self) -> &str {
        &self.path
    }

    /// Returns a list of all headers sent by the client.
    #[inline]
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// Returns the HTTP version of the request.
    #[inline]
    pub fn http_version(&self) -> &HTTPVersion {
        &self.http_version
    }

    /// Returns the length of the body in bytes.
    ///
    /// Returns `None` if the length is unknown.
    #[inline]
    pub fn body_length(&self) -> Option<usize> {
        self.body_length
    }

    /// Returns the address of the client that sent this request.
    ///
    /// The address is always `Some` for TCP listeners, but always `None` for UNIX listeners
    /// (as the remote address of a UNIX client is almost always unnamed).
    ///
    /// Note that this is gathered from the socket. If you receive the request from a proxy,
    /// this function will return the address of the proxy and not the address of the actual
    /// user.
    #[inline]
    pub fn remote_addr(&self) -> Option<&SocketAddr> {
        self.remote_addr.as_ref()
    }

    /// Sends a response with a `Connection: upgrade` header, then turns the `Request` into a `Stream`.
    ///
    /// The main purpose of this function is to support websockets.
    /// If you detect that the request wants to use some kind of protocol upgrade, you can
    ///  call this function to obtain full control of the socket stream.
    ///
    /// If you call this on a non-websocket request, tiny-http will wait until this `Stream` object
    ///  is destroyed before continuing to read or write on the socket. Therefore you should always
    ///  destroy it as soon as possible.
    pub fn upgrade<R: Read>(
        mut self,
        protocol: &str,
        response: Response<R>,
    ) -> Box<dyn ReadWrite + Send> {
        use crate::util::CustomStream;

        response
            .raw_print(
                self.response_writer.as_mut().unwrap().by_ref(),
                self.http_version.clone(),
                &self.headers,
                false,
                Some(protocol),
            )
            .ok(); // TODO: unused result

        self.response_writer.as_mut().unwrap().flush().ok(); // TODO: unused result

        let stream = CustomStream::new(self.extract_reader_impl(), self.extract_writer_impl());
        if let Some(sender) = self.notify_when_responded.take() {
            let stream = NotifyOnDrop {
                sender,
                inner: stream,
            };
            Box::new(stream) as Box<dyn ReadWrite + Send>
        } else {
            Box::new(stream) as Box<dyn ReadWrite + Send>
        }
    }

    /// Allows to read the body of the request.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use std::io::Read;
    /// # fn get_content_type(_: &tiny_http::Request) -> &'static str { "" }
    /// # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
    /// let mut request = server.recv().unwrap();
    ///
    /// if get_content_type(&request) == "text/plain" {
    ///     let mut content = String::new();
    ///     request.as_reader().read_to_string(&mut content).unwrap();
    /// }
    /// ```
    ///
    /// If the client sent a `Expect: 100-continue` header with the request, calling this
    ///  function will send back a `100 Continue` response.
    #[inline]
    pub fn as_reader(&mut self) -> &mut dyn Read {
        if self.must_send_continue {
            let msg = Response::new_empty(StatusCode(100));
            msg.raw_print(
                self.response_writer.as_mut().unwrap().by_ref(),
                self.http_version.clone(),
                &self.headers,
                true,
                None,
            )
            .ok();
            self.response_writer.as_mut().unwrap().flush().ok();
            self.must_send_continue = false;
        }

        self.data_reader.as_mut().unwrap()
    }

    /// Turns the `Request` into a writer.
    ///
    /// The writer has a raw access to the stream to the user.
    /// This function is useful for things like CGI.
    ///
    /// Note that the destruction of the `Writer` object may trigger
    /// some events. For exemple if a client has sent multiple requests and the requests
    /// have been processed in parallel, the destruction of a writer will trigger
    /// the writing of the next response.
    /// Therefore you should always destroy the `Writer` as soon as possible.
    #[inline]
    pub fn into_writer(mut self) -> Box<dyn Write + Send + 'static> {
        let writer = self.extract_writer_impl();
        if let Some(sender) = self.notify_when_responded.take() {
            let writer = NotifyOnDrop {
                sender,
                inner: writer,
            };
            Box::new(writer) as Box<dyn Write + Send + 'static>
        } else {
            writer
        }
    }

    /// Extract the response `Writer` object from the Request, dropping this `Writer` has the same side effects
    /// as the object returned by `into_writer` above.
    ///
    /// This may only be called once on a single request.
    fn extract_writer_impl(&mut self) -> Box<dyn Write + Send + 'static> {
        use std::mem;

        assert!(self.response_writer.is_some());

        let mut writer = None;
        mem::swap(&mut self.response_writer, &mut writer);
        writer.unwrap()
    }

    /// Extract the body `Reader` object from the Request.
    ///
    /// This may only be called once on a single request.
    fn extract_reader_impl(&mut self) -> Box<dyn Read + Send + 'static> {
        use std::mem;

        assert!(self.data_reader.is_some());

        let mut reader = None;
        mem::swap(&mut self.data_reader, &mut reader);
        reader.unwrap()
    }

    /// Sends a response to this request.
    #[inline]
    pub fn respond<R>(mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        let res = self.respond_impl(response);
        if let Some(sender) = self.notify_when_responded.take() {
            let _ = sender.send(()); // gatehouse patch: was unwrap()
        }
        res
    }

    fn respond_impl<R>(&mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        let mut writer = self.extract_writer_impl();

        let do_not_send_body = self.method == Method::Head;
        let response = if self.connection_close {
            response.with_connection_close()
        } else {
            response
        };

        Self::ignore_client_closing_errors(response.raw_print(
            writer.by_ref(),
            self.http_version.clone(),
            &self.headers,
            do_not_send_body,
            None,
        ))?;

        Self::ignore_client_closing_errors(writer.flush())
    }

    fn ignore_client_closing_errors(result: io::Result<()>) -> io::Result<()> {
        result.or_else(|err| match err.kind() {
            ErrorKind::BrokenPipe => Ok(()),
            ErrorKind::ConnectionAborted => Ok(()),
            ErrorKind::ConnectionRefused => Ok(()),
            ErrorKind::ConnectionReset => Ok(()),
            _ => Err(err),
        })
    }

    pub(crate) fn with_notify_sender(mut self, sender: Sender<()>) -> Self {
        self.notify_when_responded = Some(sender);
        self
    }

    /// gatehouse patch: the response will carry `Connection: close`.
    pub(crate) fn with_connection_close(mut self) -> Self {
        self.connection_close = true;
        self
    }

    /// gatehouse patch: whether part of the body was still unread on the socket when the
    /// request was handed over: it was longer than [`PRE_READ_LIMIT`](crate::PRE_READ_LIMIT),
    /// or it waited behind `Expect: 100-continue`. Reading it is then up to the caller, at the
    /// client's pace.
    pub fn body_on_socket(&self) -> bool {
        self.body_on_socket
    }

    /// gatehouse patch: makes this request the connection's last. The response says
    /// `Connection: close`; whatever is left of the body is not read on the thread that drops
    /// the request: the connection's own thread reads and discards it for a moment (up to
    /// 1 MiB, about two seconds), so the client can read the response before the connection
    /// closes. Use it to answer a request without reading its body.
    pub fn end_connection(&mut self) {
        self.connection_close = true;
        self.drain_on_drop.store(false, Ordering::Relaxed);
        if let Some(end) = &self.connection_end {
            end.store(true, Ordering::Relaxed);
        }
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> Result<(), fmt::Error> {
        write!(
            formatter,
            "Request({} {} from {:?})",
            self.method, self.path, self.remote_addr
        )
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if self.response_writer.is_some() {
            let response = Response::empty(500);
            let _ = self.respond_impl(response); // ignoring any potential error
            if let Some(sender) = self.notify_when_responded.take() {
                let _ = sender.send(()); // gatehouse patch: was unwrap()
            }
        }
    }
}

/// Dummy trait that regroups the `Read` and `Write` traits.
///
/// Automatically implemented on all types that implement both `Read` and `Write`.
pub trait ReadWrite: Read + Write {}
impl<T> ReadWrite for T where T: Read + Write {}

#[cfg(test)]
mod tests {
    use super::Request;

    #[test]
    fn must_be_send() {
        fn is_send<T: Send>() {}
        is_send::<Request>();
    }
}
